//! The docker-compose stack and its configs are valid (no Docker engine is needed:
//! `docker-compose config -q` and `promtool check config` only parse).
use crate::common;

use std::process::{Command, Stdio};

fn run(program: &str, args: &[&str]) -> Option<(bool, String)> {
    if !common::external(program) {
        return None;
    }
    let o = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    Some((
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    ))
}

#[test]
fn compose_file_is_valid_and_its_mounts_exist() {
    let compose = std::fs::read_to_string("docker-compose.yml").unwrap();
    // Every bind-mounted file or folder is in the repository.
    let mounts: Vec<&str> = compose
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- ./"))
        .map(|m| m.split(':').next().unwrap_or(m))
        .collect();
    assert!(mounts.len() >= 6, "{mounts:?}");
    for m in mounts {
        assert!(
            std::path::Path::new(m).exists(),
            "docker-compose.yml mounts missing ./{m}"
        );
    }
    for service in [
        "sim:",
        "perfscope:",
        "prometheus:",
        "alertmanager:",
        "grafana:",
        "otel-collector:",
        "tempo:",
    ] {
        assert!(
            compose.contains(&format!("  {service}\n")),
            "service {service} missing"
        );
    }
    // The soak is bounded and paced.
    assert!(compose.contains("--duration") && compose.contains("--rate"));
    let dockerfile = std::fs::read_to_string("Dockerfile").unwrap();
    for copied in ["Cargo.toml", "Cargo.lock", "build.rs", "src", "benches"] {
        assert!(
            dockerfile.contains(copied) && std::path::Path::new(copied).exists(),
            "{copied}"
        );
    }
    if let Some((ok, text)) = run(
        "docker-compose",
        &["-f", "docker-compose.yml", "config", "-q"],
    ) {
        assert!(ok, "docker-compose config: {text}");
    }
}

#[test]
fn prometheus_config_is_valid() {
    // The compose stack's, and the one for a Prometheus on the host.
    for config in [
        "dashboards/prometheus/prometheus.yml",
        "dashboards/prometheus/local.yml",
    ] {
        if let Some((ok, text)) = run("promtool", &["check", "config", config]) {
            assert!(ok, "{config}: {text}");
            assert!(text.contains("10 rules found"), "{config}: {text}");
        }
    }
    // Both scrape a run on the default --metrics-addr.
    let local = std::fs::read_to_string("dashboards/prometheus/local.yml").unwrap();
    assert!(local.contains(&format!("\"{}\"", perfscope::cli::DEFAULT_METRICS_ADDR)));
    let compose = std::fs::read_to_string("dashboards/prometheus/prometheus.yml").unwrap();
    assert!(compose.contains("host.docker.internal:9464"));
}
