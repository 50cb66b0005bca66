//! SLA auto-tune against the simulator, whose saturation point is known: with 4 batch
//! slots, a 5th concurrent request waits a whole request time (~110 ms) for a slot,
//! so `p99_ttft <= 50` (ms) holds up to concurrency 4 and fails beyond.
use crate::common::{self, Bench};

use perfscope::sim::SimConfig;
use serde_json::Value;

#[test]
fn constraint_search_finds_the_batch_size() {
    let ran = Bench::sim_with(SimConfig {
        max_num_seqs: 4,
        decode_base_ms: 4.0,
        decode_ms_per_seq: 0.5,
        min_output_len: 20,
        max_output_len: 20,
        ..SimConfig::default()
    })
    .args(&[
        "--sla-auto-tune",
        "--sla-params",
        r#"[{"p99_ttft": "<=50"}]"#,
    ])
    .args(&["--sla-num-runs", "2", "--sla-upper-bound", "16"])
    .args(&["--sla-number-multiplier", "4", "--sleep-interval", "0"])
    .run();
    let o = &ran.outcome;
    assert_eq!(o.exit_code, 0);
    let log = std::fs::read_to_string(o.dir.join("benchmark.log")).unwrap();
    let row = log
        .lines()
        .find(|l| l.contains("p99_ttft <= 50"))
        .expect("the SLA summary table");
    let cells: Vec<&str> = row.split('│').map(str::trim).collect();
    assert_eq!(
        &cells[1..5],
        &["p99_ttft <= 50", "parallel", "4", "Satisfied"],
        "{row}"
    );
    // Doubling 1, 2, 4, 8 (fails), then the binary search tests 6 and 5.
    let summary = common::json(&o.dir.join("sla_summary.json"));
    let tested: Vec<&str> = summary
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for v in [
        "parallel_1",
        "parallel_2",
        "parallel_4",
        "parallel_5",
        "parallel_6",
        "parallel_8",
    ] {
        assert!(tested.contains(&v), "{v} not in {tested:?}");
    }
    let p99 = |k: &str| summary[k]["percentiles"]["TTFT (ms)"][9].as_f64().unwrap();
    assert!(p99("parallel_4") <= 50.0 && p99("parallel_5") > 50.0);
    // Each value ran twice into sla_tuning/, and the summary is the mean of the runs.
    for v in [4, 5] {
        let runs: Vec<Value> = (0..2)
            .map(|i| {
                common::json(
                    &o.dir
                        .join(format!("sla_tuning/sla_parallel_{v}_run_{i}"))
                        .join("benchmark_summary.json"),
                )
            })
            .collect();
        let key = "Req Throughput (req/s)";
        let mean = (runs[0][key].as_f64().unwrap() + runs[1][key].as_f64().unwrap()) / 2.0;
        let got = summary[format!("parallel_{v}")]["metrics"][key]
            .as_f64()
            .unwrap();
        assert!((got - mean).abs() < 1e-3, "{got} vs {mean}");
        assert_eq!(
            runs[0]["Total Requests"],
            4 * v,
            "number = value x multiplier"
        );
        // evalscope 1.14.1: counts are summed over the repeats, not averaged.
        assert_eq!(
            summary[format!("parallel_{v}")]["metrics"]["Total Requests"],
            2 * 4 * v
        );
    }
    assert!(o.dir.join("performance_summary.txt").is_file());
}

#[test]
fn rate_mode_and_bad_params() {
    // Every point passes `rps >= 1`: the search doubles up to the upper bound, pacing
    // each point at the tested rate with the fixed concurrency cap.
    let ran = Bench::sim_with(SimConfig {
        zero_delay: true,
        ..SimConfig::default()
    })
    .args(&["--sla-auto-tune", "--sla-variable", "rate", "--sla-params"])
    .args(&[r#"[{"name": "request_throughput", "operator": ">=", "value": 1}]"#])
    .args(&["--sla-num-runs", "1", "--sla-upper-bound", "40"])
    .args(&["--sla-fixed-parallel", "8", "--sleep-interval", "0"])
    .run();
    let o = &ran.outcome;
    let summary = common::json(&o.dir.join("sla_summary.json"));
    let keys: Vec<&String> = summary.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["rate_1", "rate_2", "rate_4", "rate_8", "rate_16", "rate_32", "rate_40"]
    );
    assert_eq!(summary["rate_40"]["metrics"]["Concurrency"], 8);
    assert_eq!(summary["rate_40"]["metrics"]["Request Rate (req/s)"], 40.0);
    let e = common::resolve(&["--model", "m", "--sla-auto-tune"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("--sla-params"), "{e}");
    let e = common::resolve(&[
        "--model",
        "m",
        "--sla-auto-tune",
        "--sla-params",
        r#"[{"ttft": "<=1"}]"#,
    ])
    .unwrap_err()
    .to_string();
    assert!(e.contains("unknown metric `ttft`"), "{e}");
}
