//! deploy/kubernetes: the manifests validate against the Kubernetes API schemas
//! (kubernetes-validate, strict, offline; there is no cluster here), and the
//! pieces agree with each other and with perfscope's flags.
use crate::common;

use std::process::{Command, Stdio};

const DIR: &str = "deploy/kubernetes";

fn read(f: &str) -> String {
    std::fs::read_to_string(format!("{DIR}/{f}")).unwrap()
}

/// The value after `key:` on the first line that has it (trimmed, unquoted).
fn value(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().trim_matches('"').to_string())
        .unwrap_or_else(|| panic!("no `{key}:` line"))
}

#[test]
fn manifests_validate_against_the_api_schemas() {
    if !common::external("kubernetes-validate") {
        return;
    }
    for version in ["1.30.0", "1.37.0"] {
        let o = Command::new("kubernetes-validate")
            .args(["--strict", "-k", version])
            .args(
                [
                    "configmap.yaml",
                    "pvc.yaml",
                    "service.yaml",
                    "job.yaml",
                    "merge-job.yaml",
                ]
                .map(|f| format!("{DIR}/{f}")),
            )
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.status.success(), "{version}: {text}");
        assert_eq!(text.matches(" passed for resource ").count(), 5, "{text}");
    }
}

#[test]
fn manifests_agree_with_each_other_and_with_perfscope() {
    let job = read("job.yaml");
    let cm = read("configmap.yaml");
    // An Indexed Job of N pods at once, and the ConfigMap says N.
    assert_eq!(value(&job, "completionMode"), "Indexed");
    let n = value(&job, "completions");
    assert_eq!(value(&job, "parallelism"), n);
    assert_eq!(value(&cm, "PERFSCOPE_SHARD_COUNT"), n);
    // The variables the pods get are the ones perfscope reads.
    assert!(job.contains(perfscope::config::ENV_SHARD_INDEX));
    assert!(job.contains(perfscope::config::ENV_RUN_ID));
    assert!(cm.contains(perfscope::config::ENV_SHARD_COUNT));
    assert!(cm.contains(perfscope::config::ENV_START_AT));
    // The Service and the PodMonitor select the shard pods, on the port /metrics
    // listens on.
    for f in ["service.yaml", "podmonitor.yaml"] {
        let t = read(f);
        assert!(t.contains("app.kubernetes.io/component: shard"), "{f}");
    }
    assert!(job.contains("app.kubernetes.io/component: shard"));
    assert!(job.contains("--metrics-addr 0.0.0.0:9464"));
    assert!(job.contains("containerPort: 9464") && job.contains("name: metrics"));
    let pm = read("podmonitor.yaml");
    assert_eq!(value(&pm, "apiVersion"), "monitoring.coreos.com/v1");
    assert!(pm.contains("podMetricsEndpoints:") && pm.contains("- port: metrics"));
    // Shards write where the merge step reads.
    let merge = read("merge-job.yaml");
    assert!(job.contains("/results/shard-$JOB_COMPLETION_INDEX"));
    assert!(merge.contains("perfscope merge /results/merged/bench /results/shard-*/bench"));
    // The kustomization lists every manifest, and each exists.
    let k = read("kustomization.yaml");
    let listed: Vec<&str> = k
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .collect();
    assert_eq!(listed.len(), 6, "{listed:?}");
    for f in listed {
        assert!(std::path::Path::new(DIR).join(f).is_file(), "{f}");
    }
    // The shard flags of the ConfigMap parse as perfscope perf flags.
    let args = value(&cm, "PERFSCOPE_ARGS");
    assert_eq!(args, ">-");
    let flags: Vec<String> = cm
        .lines()
        .skip_while(|l| !l.contains("PERFSCOPE_ARGS"))
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .flat_map(|l| l.split_whitespace().map(str::to_string))
        .collect();
    let mut argv = vec!["perfscope".to_string(), "perf".to_string()];
    argv.extend(flags);
    use clap::Parser;
    assert!(
        perfscope::cli::Cli::try_parse_from(&argv).is_ok(),
        "{argv:?}"
    );
}
