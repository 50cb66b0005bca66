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

/// `apply.sh` fills the start barrier in as it applies (the shell computes it; the
/// ConfigMap keeps `""`), run here against a stand-in `kubectl`.
#[test]
fn apply_sh_sets_the_start_barrier_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let applied = dir.path().join("applied.yaml");
    let kubectl = dir.path().join("kubectl");
    std::fs::write(
        &kubectl,
        format!(
            "#!/bin/sh\ncase \"$1\" in\n  kustomize) cat \"$2/configmap.yaml\" ;;\n  apply) cat > '{}' ;;\nesac\n",
            applied.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &kubectl,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap()
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let out = std::process::Command::new(format!("{DIR}/apply.sh"))
        .arg("300")
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = std::fs::read_to_string(&applied).unwrap();
    let at: u64 = yaml
        .lines()
        .find_map(|l| l.trim().strip_prefix("PERFSCOPE_START_AT: \""))
        .and_then(|v| v.trim_end_matches('"').parse().ok())
        .unwrap_or_else(|| panic!("no start time filled in:\n{yaml}"));
    assert!((now + 295..=now + 310).contains(&at), "{at} vs now {now}");
    // The manifest itself keeps no shell arithmetic.
    let cm = std::fs::read_to_string(format!("{DIR}/configmap.yaml")).unwrap();
    assert!(!cm.contains("$(("), "shell arithmetic in the ConfigMap");
    let bad = std::process::Command::new(format!("{DIR}/apply.sh"))
        .arg("soon")
        .env("PATH", &path)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
