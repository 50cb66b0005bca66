//! Scale-out settings: this invocation's shard of a distributed run, the start
//! barrier, the clock reference; and the parsing of `--source-addrs`.

use anyhow::{bail, Result};
use serde_json::{Map, Value};
use std::net::IpAddr;

use crate::cli::PerfArgs;
use crate::scheduler::{Shard, SweepPoint, SHARD_LOCAL_KEYS};

/// Environment variable a Kubernetes Indexed Job sets in each pod.
pub const ENV_SHARD_INDEX: &str = "JOB_COMPLETION_INDEX";
/// The shard count when --shard-count is not given.
pub const ENV_SHARD_COUNT: &str = "PERFSCOPE_SHARD_COUNT";
/// The run id when --run-id is not given.
pub const ENV_RUN_ID: &str = "PERFSCOPE_RUN_ID";
/// The start barrier when neither --start-at nor --start-in is given (empty: none).
pub const ENV_START_AT: &str = "PERFSCOPE_START_AT";

/// This invocation's place in a distributed run.
#[derive(Clone, Debug)]
pub struct ShardInfo {
    pub shard: Shard,
    pub run_id: String,
    pub host: String,
}

impl ShardInfo {
    /// The load this shard sends at a global sweep point.
    pub fn point(&self, p: &SweepPoint) -> SweepPoint {
        self.shard.point(p)
    }
}

/// Where the clock offset is measured against.
#[derive(Clone, Debug, PartialEq)]
pub enum ClockRef {
    Off,
    /// An HTTP server's `Date` header (the target's when `auto`).
    Http(String),
    /// An SNTP server, `host:port`.
    Ntp(String),
}

#[derive(Clone, Debug)]
pub struct ScaleConfig {
    /// None: a plain single-process run (one shard of one, no barrier).
    pub shard: Option<ShardInfo>,
    /// Unix time at which the measured load of the first sweep point starts.
    pub start_at: Option<f64>,
    pub clock_ref: ClockRef,
}

/// Reads the scale-out flags and their environment defaults; `env` is the process
/// environment (a parameter so tests need not mutate it).
pub(crate) fn resolve_scale(
    a: &PerfArgs,
    points: &[SweepPoint],
    url: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ScaleConfig> {
    let index = match (a.shard_index, env(ENV_SHARD_INDEX)) {
        (Some(i), _) => Some(i),
        (None, Some(v)) => Some(v.trim().parse::<u64>().map_err(|_| {
            anyhow::anyhow!("{ENV_SHARD_INDEX}: `{v}` is not a shard index (0, 1, …)")
        })?),
        (None, None) => None,
    };
    let count = match (a.shard_count, env(ENV_SHARD_COUNT)) {
        (Some(c), _) => Some(c),
        (None, Some(v)) => Some(v.trim().parse::<u64>().map_err(|_| {
            anyhow::anyhow!("{ENV_SHARD_COUNT}: `{v}` is not a shard count (1, 2, …)")
        })?),
        (None, None) => None,
    };
    let shard = match (index, count) {
        (None, None) | (Some(0), None) | (None, Some(1)) => None,
        (Some(_), None) => bail!(
            "--shard-index: give --shard-count (or {ENV_SHARD_COUNT}) too, the number of shards"
        ),
        (None, Some(_)) => bail!(
            "--shard-count: give --shard-index (or run as a Kubernetes Indexed Job, which sets {ENV_SHARD_INDEX})"
        ),
        (Some(_), Some(0)) => bail!("--shard-count: must be at least 1"),
        (Some(i), Some(n)) if i >= n => {
            bail!("--shard-index: {i} is not below --shard-count {n} (shards are 0..{n})")
        }
        (Some(i), Some(n)) => Some(Shard { index: i, count: n }),
    };
    let shard = match shard {
        Some(s) => Some(check_shard(a, points, s, env)?),
        None => None,
    };
    let now = crate::trackers::now_unix();
    let env_at =
        match env(ENV_START_AT).filter(|v| !v.trim().is_empty()) {
            Some(v) => Some(v.trim().parse::<f64>().map_err(|_| {
                anyhow::anyhow!("{ENV_START_AT}: `{v}` is not a unix time in seconds")
            })?),
            None => None,
        };
    let start_at = match (
        a.start_at.or(env_at.filter(|_| a.start_in.is_none())),
        a.start_in,
    ) {
        (Some(t), _) if !(t.is_finite() && t > 0.0) => {
            bail!("--start-at: {t} is not a unix time in seconds")
        }
        (Some(t), _) if t > now + 86_400.0 => {
            bail!("--start-at: {t} is more than a day from now ({now:.0}); check the value (seconds, not milliseconds)")
        }
        (Some(t), _) => Some(t),
        (None, Some(d)) if !(d.is_finite() && d >= 0.0) => {
            bail!("--start-in: {d} must be a number of seconds >= 0")
        }
        (None, Some(d)) => Some(now + d),
        (None, None) => None,
    };
    if start_at.is_some() && a.sla_auto_tune {
        bail!("--start-at/--start-in: not with --sla-auto-tune (its runs depend on each other's results)");
    }
    let clock_ref = match a.clock_ref.trim() {
        "off" => ClockRef::Off,
        // The in-process simulator (--api sim) runs on this machine's clock.
        "auto" if a.api == "sim" => ClockRef::Off,
        "auto" if shard.is_some() || start_at.is_some() => ClockRef::Http(url.to_string()),
        "auto" => ClockRef::Off,
        r if r.starts_with("http://") || r.starts_with("https://") => ClockRef::Http(r.into()),
        r => match r.strip_prefix("ntp://") {
            Some(h) if !h.is_empty() => ClockRef::Ntp(if h.contains(':') {
                h.trim_end_matches('/').to_string()
            } else {
                format!("{}:123", h.trim_end_matches('/'))
            }),
            _ => bail!("--clock-ref: `{r}` is not auto, off, an http(s) URL or ntp://HOST[:PORT]"),
        },
    };
    Ok(ScaleConfig {
        shard,
        start_at,
        clock_ref,
    })
}

/// The flags a sharded run cannot honour, and the shard's identity.
fn check_shard(
    a: &PerfArgs,
    points: &[SweepPoint],
    shard: Shard,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ShardInfo> {
    let n = shard.count;
    if a.sla_auto_tune {
        bail!("--shard-count: --sla-auto-tune cannot be sharded (each step depends on the whole run's result); run it in one process");
    }
    for p in points {
        if p.parallel > 0 && (p.parallel as u64) < n {
            bail!(
                "--parallel {}: fewer than --shard-count {n}; every shard needs at least one stream",
                p.parallel
            );
        }
        if p.number < n {
            bail!(
                "--number {}: fewer than --shard-count {n}; every shard needs at least one request",
                p.number
            );
        }
    }
    let mut args = super::args::masked_args(a);
    for k in SHARD_LOCAL_KEYS {
        args.shift_remove(*k);
    }
    // The count as resolved: from the flag or the environment alike.
    args.insert("shard_count".into(), n.into());
    let run_id = match a.run_id.clone().or_else(|| env(ENV_RUN_ID)) {
        Some(r) if r.trim().is_empty() => bail!("--run-id: must not be empty"),
        Some(r) => r.trim().to_string(),
        None => digest(&args),
    };
    Ok(ShardInfo {
        shard,
        run_id,
        host: hostname(),
    })
}

/// A short, stable digest of the shared flags (FNV-1a over their JSON).
fn digest(args: &Map<String, Value>) -> String {
    let text = Value::Object(args.clone()).to_string();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("run-{h:016x}")
}

/// The machine's host name (a pod's name in Kubernetes).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // within it or truncates.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        if let Ok(s) = std::str::from_utf8(&buf[..end]) {
            return s.to_string();
        }
    }
    std::env::var("HOSTNAME").unwrap_or_default()
}

/// `--source-addrs`: comma-separated addresses, each an address or an IPv4 range
/// `A-B` (inclusive, at most 256 addresses).
pub fn parse_source_addrs(s: &str) -> Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || {
            anyhow::anyhow!("--source-addrs: `{part}` is not an address or an IPv4 range such as 127.0.0.2-127.0.0.9")
        };
        match part.split_once('-') {
            None => out.push(part.parse::<IpAddr>().map_err(|_| bad())?),
            Some((a, b)) => {
                let a: std::net::Ipv4Addr = a.trim().parse().map_err(|_| bad())?;
                let b: std::net::Ipv4Addr = b.trim().parse().map_err(|_| bad())?;
                let (a, b) = (u32::from(a), u32::from(b));
                if b < a || b - a >= 256 {
                    bail!("--source-addrs: `{part}`: the range must go upwards and hold at most 256 addresses");
                }
                out.extend((a..=b).map(|x| IpAddr::V4(x.into())));
            }
        }
    }
    if out.is_empty() {
        bail!("--source-addrs: no address given");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> PerfArgs {
        use clap::Parser;
        let mut argv = vec!["perfscope", "perf", "--api", "sim", "--parallel", "8"];
        argv.extend(extra);
        match crate::cli::Cli::try_parse_from(argv).map(|c| c.command) {
            Ok(crate::cli::Command::Perf(a)) => *a,
            _ => panic!("not perf"),
        }
    }

    fn resolve(extra: &[&str], vars: &[(&str, &str)]) -> Result<ScaleConfig> {
        let a = args(extra);
        let points = [SweepPoint {
            parallel: 8,
            number: 100,
            rate: -1.0,
        }];
        let env = |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        resolve_scale(&a, &points, "http://127.0.0.1:1/v1/chat/completions", &env)
    }

    #[test]
    fn the_environment_of_an_indexed_job_gives_the_defaults() {
        let at = format!("{}", crate::trackers::now_unix() + 60.0);
        let s = resolve(
            &[],
            &[
                (ENV_SHARD_INDEX, "2"),
                (ENV_SHARD_COUNT, "3"),
                (ENV_RUN_ID, "job-uid"),
                (ENV_START_AT, &at),
            ],
        )
        .unwrap();
        let sh = s.shard.unwrap();
        assert_eq!((sh.shard.index, sh.shard.count), (2, 3));
        assert_eq!(sh.run_id, "job-uid");
        assert_eq!(s.start_at, Some(at.parse().unwrap()));
        // --api sim: the simulator shares this machine's clock.
        assert_eq!(s.clock_ref, ClockRef::Off);
        // Flags win over the environment; an empty start time is none.
        let s = resolve(
            &["--shard-index", "0", "--shard-count", "2"],
            &[(ENV_SHARD_INDEX, "5"), (ENV_START_AT, "")],
        )
        .unwrap();
        assert_eq!(s.shard.unwrap().shard.index, 0);
        assert_eq!(s.start_at, None);
        // The same flags give the same digest whether the count is a flag or a variable.
        let a = resolve(&["--shard-count", "2"], &[(ENV_SHARD_INDEX, "0")]).unwrap();
        let b = resolve(&[], &[(ENV_SHARD_INDEX, "1"), (ENV_SHARD_COUNT, "2")]).unwrap();
        assert_eq!(a.shard.unwrap().run_id, b.shard.unwrap().run_id);
        for (vars, needle) in [
            (
                vec![(ENV_SHARD_INDEX, "x"), (ENV_SHARD_COUNT, "2")],
                "JOB_COMPLETION_INDEX",
            ),
            (vec![(ENV_SHARD_INDEX, "1")], "--shard-count"),
            (vec![(ENV_START_AT, "soon")], "PERFSCOPE_START_AT"),
        ] {
            let e = resolve(&[], &vars).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn source_ranges() {
        let v = parse_source_addrs("127.0.0.2-127.0.0.4, ::1").unwrap();
        assert_eq!(v.len(), 4);
        assert_eq!(v[2].to_string(), "127.0.0.4");
        assert!(parse_source_addrs("127.0.0.9-127.0.0.2").is_err());
        assert!(parse_source_addrs("x").is_err());
    }
}
