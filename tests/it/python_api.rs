//! The Python module (`python/perfscope`) against the debug binary: evalscope's
//! `run_perf_benchmark` structure for a two-point sweep, an argparse Namespace, SLA
//! mode and errors. CI also runs the same script from a wheel built with `pip
//! install .` in a fresh virtualenv (.ci/run).

use std::process::Command;

#[test]
fn python_run_perf_benchmark_returns_evalscope_structure() {
    if !crate::common::external("python3") {
        return;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .arg(root.join("tests/python/test_api.py"))
        .env("PYTHONPATH", root.join("python"))
        .env("PERFSCOPE_BINARY", env!("CARGO_BIN_EXE_perfscope"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    for check in [
        "check_sweep",
        "check_namespace",
        "check_sla",
        "check_errors",
    ] {
        assert!(
            err.contains(&format!("ok {check}")),
            "{check} did not run:\n{err}"
        );
    }
}
