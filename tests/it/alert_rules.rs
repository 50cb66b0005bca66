//! The bundled alert rules are valid and their unit tests pass (`promtool`).
use crate::common;

use std::process::{Command, Stdio};

fn promtool(args: &[&str]) -> (bool, String) {
    let o = Command::new("promtool")
        .args(args)
        .current_dir("dashboards/prometheus")
        .stdin(Stdio::null())
        .output()
        .expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

#[test]
fn alert_rules_check_and_unit_tests_pass() {
    if !common::external("promtool") {
        return;
    }
    let (ok, text) = promtool(&["check", "rules", "alerts.yml"]);
    assert!(ok && text.contains("10 rules found"), "{text}");
    let (ok, text) = promtool(&["test", "rules", "alerts_test.yml"]);
    assert!(ok, "{text}");
}

/// The recording rules aggregate two shards of one run as one run (promtool unit
/// tests over two shards' series).
#[test]
fn recording_rules_sum_over_shards() {
    if !common::external("promtool") {
        return;
    }
    let (ok, text) = promtool(&["check", "rules", "recording.yml"]);
    assert!(ok && text.contains("22 rules found"), "{text}");
    let (ok, text) = promtool(&["test", "rules", "recording_test.yml"]);
    assert!(ok, "{text}");
}
