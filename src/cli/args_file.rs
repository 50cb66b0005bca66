//! `perf --args-file FILE`: evalscope's arguments as a JSON object (what its
//! `run_perf_benchmark(dict | Namespace)` takes) turned into `perf`'s own flags, so
//! the JSON goes through exactly the parsing and checks the command line does.
//!
//! Like evalscope's `BaseArgument.from_args`, null values are left out (their
//! defaults apply) and `func` (argparse's sub-command hook) is ignored; an unknown
//! key is an error, as evalscope's `extra='forbid'` makes it.

use anyhow::{anyhow, bail, Context, Result};
use clap::{ArgAction, CommandFactory, Parser};
use serde_json::Value;

use super::commands::{Cli, Command};
use super::perf::PerfArgs;

/// The `perf` arguments a JSON file describes.
pub fn perf_args_from_file(path: &str) -> Result<PerfArgs> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--args-file: cannot read `{path}`; check the path"))?;
    let value: Value = serde_json::from_str(&text)
        .with_context(|| format!("--args-file: `{path}` is not valid JSON"))?;
    let Value::Object(map) = value else {
        bail!("--args-file: `{path}` must hold a JSON object of argument names and values");
    };
    let mut argv = vec!["perfscope".to_string(), "perf".to_string()];
    argv.extend(json_to_flags(&map).with_context(|| format!("--args-file `{path}`"))?);
    match Cli::try_parse_from(&argv) {
        Ok(Cli {
            command: Command::Perf(a),
        }) => Ok(*a),
        Ok(_) => bail!("--args-file: the arguments did not parse as `perf`"),
        // clap's first line names the flag and what is wrong with its value.
        Err(e) => {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or_default();
            bail!(
                "--args-file `{path}`: {}",
                first.trim_start_matches("error: ")
            )
        }
    }
}

/// `{"parallel": [1, 2], "stream": false, "headers": {"X": "1"}}` as
/// `--parallel=1 --parallel=2 --no-stream --headers=X=1`.
pub fn json_to_flags(map: &serde_json::Map<String, Value>) -> Result<Vec<String>> {
    let cmd = Cli::command();
    let perf = cmd
        .find_subcommand("perf")
        .ok_or_else(|| anyhow!("the perf command is missing"))?;
    let mut out = Vec::new();
    for (key, value) in map {
        if value.is_null() || key == "func" {
            continue;
        }
        let long = key.replace('_', "-");
        let arg = perf
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()))
            .filter(|a| a.get_id() != "args_file")
            .ok_or_else(|| {
                anyhow!("`{key}` is not a perf argument; see `perfscope perf --help`")
            })?;
        if matches!(arg.get_action(), ArgAction::SetTrue) {
            let Value::Bool(on) = value else {
                bail!("`{key}` is a switch: give true or false, not {value}");
            };
            if *on {
                out.push(format!("--{long}"));
            } else if perf
                .get_arguments()
                .any(|a| a.get_long() == Some(&format!("no-{long}")))
            {
                // evalscope's `stream: false` (its --no-stream).
                out.push(format!("--no-{long}"));
            }
            continue;
        }
        let values: Vec<String> = match value {
            // A multi-value flag takes a list's items (--parallel [1, 2]), or an
            // object's entries as KEY=VALUE (--headers); a single-value flag takes
            // either as JSON text (--sla-params [{"p99_ttft": "<=500"}]).
            Value::Array(items) if takes_many(arg) => items.iter().map(scalar).collect(),
            Value::Object(o) if takes_many(arg) => o
                .iter()
                .map(|(k, v)| format!("{k}={}", scalar(v)))
                .collect(),
            other => vec![scalar(other)],
        };
        // `--flag=value`: a value that starts with `-` stays a value.
        out.extend(values.into_iter().map(|v| format!("--{long}={v}")));
    }
    Ok(out)
}

fn takes_many(arg: &clap::Arg) -> bool {
    arg.get_num_args().is_some_and(|r| r.max_values() > 1)
}

/// A JSON value as one command-line value: strings as they are, anything else as
/// JSON text (`3`, `0.5`, `true`, `{"a": 1}`).
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
