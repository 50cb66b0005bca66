//! Output files and numbers: the summary and percentiles recomputed independently
//! from the SQLite rows; evalscope's tree and keys; request bodies as sent.
use crate::common::{self, Bench};

use perfscope::sim::SimConfig;
use serde_json::Value;

/// Nearest-rank percentile (evalscope 1.12+), written independently of the crate's
/// implementation: the smallest value with at least p% of the values at or below it.
fn pct(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if p >= 100.0 {
        return v[v.len() - 1];
    }
    let rank = ((v.len() as f64) * p / 100.0).ceil() as usize;
    v[rank.max(1) - 1]
}

/// Python's round(x, dp): the decimal nearest to the exact binary value.
fn r(x: f64, dp: usize) -> f64 {
    format!("{x:.dp$}").parse().unwrap()
}

#[test]
fn summary_and_percentiles_recomputed_from_sqlite() {
    let ran = Bench::sim_with(SimConfig {
        error_rate: 0.1,
        seed: 3,
        ..SimConfig::default()
    })
    .args(&["--parallel", "2", "6", "--number", "12", "60"])
    .args(&["--sleep-interval", "0", "--name", "my/run"])
    .run();
    let o = &ran.outcome;
    assert_eq!(o.exit_code, 0);
    // <outputs-dir>/<timestamp>/<name sanitised>/parallel_P_number_N/
    assert_eq!(o.dir.file_name().unwrap(), "my_run");
    assert_eq!(o.dir.parent().unwrap().parent().unwrap(), ran.out.path());
    let ts = o
        .dir
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(ts.len(), 15, "{ts}");
    for f in ["benchmark.log", "performance_summary.txt"] {
        assert!(o.dir.join(f).is_file(), "{f}");
    }
    let dirs = common::run_dirs(&o.dir);
    assert_eq!(
        dirs.iter()
            .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
            .collect::<Vec<_>>(),
        vec!["parallel_2_number_12", "parallel_6_number_60"]
    );
    let dir = &dirs[1];
    let conn = common::db(dir);
    let s = common::json(&dir.join("benchmark_summary.json"));
    let keys: Vec<&str> = s.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        &keys[..18],
        &[
            "Test Duration (s)",
            "Concurrency",
            "Request Rate (req/s)",
            "Total Requests",
            "Success Requests",
            "Failed Requests",
            "Stream Requests",
            "Non-Stream Requests",
            "Req Throughput (req/s)",
            "Avg Latency (s)",
            "Avg Input Tokens",
            "Output Throughput (tok/s)",
            "Total Throughput (tok/s)",
            "Avg TTFT (ms)",
            "Avg TPOT (ms)",
            "Avg ITL (ms)",
            "Avg Output Tokens",
            "Input Throughput (tok/s)"
        ]
    );
    let q = |sql: &str| -> f64 { conn.query_row(sql, [], |r| r.get::<_, f64>(0)).unwrap() };
    let total = q("SELECT COUNT(*) FROM result");
    let succ = q("SELECT SUM(success) FROM result");
    assert_eq!(total, 60.0);
    assert!(succ < 60.0 && succ > 40.0, "10% injected errors: {succ}");
    // evalscope 1.14's window: every row with a valid interval, failures included.
    let dur = q("SELECT MAX(completed_time) FROM result WHERE start_time > 0 AND completed_time >= start_time")
        - q("SELECT MIN(start_time) FROM result WHERE start_time > 0 AND completed_time >= start_time");
    let comp = q("SELECT SUM(completion_tokens) FROM result WHERE success=1");
    let prompt = q("SELECT SUM(prompt_tokens) FROM result WHERE success=1");
    assert_eq!(s["Total Requests"], 60);
    assert_eq!(s["Success Requests"].as_f64().unwrap(), succ);
    assert_eq!(s["Failed Requests"].as_f64().unwrap(), total - succ);
    assert_eq!(s["Concurrency"], 6);
    assert_eq!(s["Request Rate (req/s)"], -1.0);
    assert_eq!(s["Test Duration (s)"].as_f64().unwrap(), r(dur, 4));
    assert_eq!(
        s["Req Throughput (req/s)"].as_f64().unwrap(),
        r(succ / dur, 4)
    );
    assert_eq!(
        s["Output Throughput (tok/s)"].as_f64().unwrap(),
        r(comp / dur, 4)
    );
    assert_eq!(
        s["Total Throughput (tok/s)"].as_f64().unwrap(),
        r((comp + prompt) / dur, 4)
    );
    assert_eq!(
        s["Avg Latency (s)"].as_f64().unwrap(),
        r(q("SELECT AVG(latency) FROM result WHERE success=1"), 4)
    );
    assert_eq!(s["Avg Output Tokens"].as_f64().unwrap(), r(comp / succ, 4));
    assert_eq!(s["Avg Input Tokens"].as_f64().unwrap(), r(prompt / succ, 4));
    assert_eq!(
        s["Avg TTFT (ms)"].as_f64().unwrap(),
        r(
            q("SELECT AVG(first_chunk_latency) FROM result WHERE success=1 AND is_stream=1")
                * 1000.0,
            2
        )
    );
    let tpot = q("SELECT AVG((latency-first_chunk_latency)/(completion_tokens-1)) FROM result WHERE success=1 AND is_stream=1 AND completion_tokens>1");
    assert!((s["Avg TPOT (ms)"].as_f64().unwrap() - tpot * 1000.0).abs() < 0.006);
    assert_eq!(
        s["Failures by Kind"]["http_5xx"].as_f64().unwrap(),
        total - succ
    );

    // Percentiles from the rows.
    let col = |sql: &str| -> Vec<f64> {
        let mut st = conn.prepare(sql).unwrap();
        st.query_map([], |r| r.get::<_, f64>(0))
            .unwrap()
            .map(|x| x.unwrap())
            .collect()
    };
    let lat = col("SELECT latency FROM result WHERE success=1");
    let ttft: Vec<f64> =
        col("SELECT first_chunk_latency FROM result WHERE success=1 AND is_stream=1")
            .into_iter()
            .map(|v| v * 1000.0)
            .collect();
    let mut itl = Vec::new();
    for t in conn
        .prepare("SELECT inter_token_latencies FROM result WHERE success=1")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
    {
        itl.extend(
            serde_json::from_str::<Vec<f64>>(&t.unwrap())
                .unwrap()
                .into_iter()
                .map(|v| v * 1000.0),
        );
    }
    let p = common::json(&dir.join("benchmark_percentile.json"));
    let rows = p.as_array().unwrap();
    let labels: Vec<&str> = rows
        .iter()
        .map(|x| x["Percentiles"].as_str().unwrap())
        .collect();
    assert_eq!(
        labels,
        ["min", "1%", "5%", "10%", "25%", "50%", "75%", "90%", "95%", "99%", "max"]
    );
    let points = [
        0.0, 1.0, 5.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 100.0,
    ];
    for (row, pt) in rows.iter().zip(points) {
        assert_eq!(
            row["Latency (s)"].as_f64().unwrap(),
            r(pct(lat.clone(), pt), 4),
            "{row}"
        );
        assert_eq!(
            row["TTFT (ms)"].as_f64().unwrap(),
            r(pct(ttft.clone(), pt), 4),
            "{row}"
        );
        assert_eq!(
            row["ITL (ms)"].as_f64().unwrap(),
            r(pct(itl.clone(), pt), 4),
            "{row}"
        );
    }
    let keys: Vec<&str> = rows[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        &keys[..10],
        &[
            "Percentiles",
            "Latency (s)",
            "TTFT (ms)",
            "ITL (ms)",
            "TPOT (ms)",
            "Input tokens",
            "Output tokens",
            "Output (tok/s)",
            "Total (tok/s)",
            "Decode (tok/s)"
        ]
    );
    // Failures carry their status and text; successes their unix times.
    let (st, err): (i64, String) = conn
        .query_row(
            "SELECT http_status, error FROM result WHERE success=0 LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(st, 500);
    assert!(err.contains("simulated internal error"), "{err}");
    let run_rows: i64 = conn
        .query_row(
            "SELECT requests FROM run WHERE status='completed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(run_rows, 60);
    let args = common::json(&dir.join("benchmark_args.json"));
    assert_eq!(args["parallel"], 6);
    assert_eq!(args["number"], 60);
    let txt = std::fs::read_to_string(o.dir.join("performance_summary.txt")).unwrap();
    assert!(
        txt.contains("Performance Overview") && txt.contains("Per-Request Metrics"),
        "{txt}"
    );
    assert!(txt.contains("Highest RPS"), "{txt}");
}

#[test]
fn request_bodies_secrets_and_non_stream() {
    let _g = common::lock();
    let sim = common::start_sim(SimConfig {
        zero_delay: true,
        ..SimConfig::default()
    });
    let out = tempfile::tempdir().unwrap();
    let url = format!("{}/v1/completions", sim.base_url());
    let o = common::run(&[
        "--url",
        &url,
        "--model",
        "m",
        "--parallel",
        "2",
        "--number",
        "4",
        "--no-stream",
        "--prompt",
        "hello world",
        "--max-tokens",
        "7",
        "--top-p",
        "0.9",
        "--seed",
        "1",
        "--extra-args",
        r#"{"ignore_eos": true}"#,
        "--api-key",
        "sk-SECRET-123",
        "--headers",
        "x-api-key=other-SECRET",
        "x-custom=1",
        "--outputs-dir",
        out.path().to_str().unwrap(),
    ])
    .unwrap();
    assert_eq!(o.exit_code, 0);
    let dir = o.dir.join("parallel_2_number_4");
    let conn = common::db(&dir);
    let body: String = conn
        .query_row("SELECT request FROM result LIMIT 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        body,
        r#"{"prompt":"hello world","model":"m","max_tokens":7,"seed":1,"stream":false,"temperature":0.0,"top_p":0.9,"ignore_eos":true}"#
    );
    let s = common::json(&dir.join("benchmark_summary.json"));
    assert_eq!(s["Non-Stream Requests"], 4);
    assert_eq!(s["Avg Output Tokens"], 7.0);
    // No secret anywhere in the outputs.
    for entry in walk(&o.dir) {
        let bytes = std::fs::read(&entry).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("SECRET"),
            "secret leaked into {}",
            entry.display()
        );
    }
    let args = common::json(&dir.join("benchmark_args.json"));
    assert_eq!(args["api_key"], "**********");
    assert_eq!(args["headers"]["x-api-key"], "**********");
    assert_eq!(args["headers"]["x-custom"], "1");
}

fn walk(p: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).unwrap().flatten() {
        let path = e.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn no_usage_means_unknown_tokens_not_a_crash() {
    let ran = Bench::sim_with(SimConfig {
        zero_delay: true,
        no_usage: true,
        ..SimConfig::default()
    })
    .number(3)
    .run();
    assert_eq!(ran.outcome.exit_code, 0);
    let dir = ran.only_step();
    let s = common::json(&dir.join("benchmark_summary.json"));
    assert_eq!(s["Success Requests"], 3);
    // Unknown stays unknown: null, never a 0 or -1 that reads as measured.
    for k in [
        "Avg Input Tokens",
        "Avg Output Tokens",
        "Output Throughput (tok/s)",
        "Total Throughput (tok/s)",
    ] {
        assert_eq!(s[k], Value::Null, "{k}: {s}");
    }
    let text = std::fs::read_to_string(ran.outcome.dir.join("performance_summary.txt")).unwrap();
    assert!(text.contains("n/a"), "{text}");
    // compare says what it cannot judge, and a gate on it cannot pass.
    let root = ran.outcome.dir.to_str().unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_perfscope"))
        .args(["compare", root, root, "--fail-on", "tps:-5%,rps:-50%"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains(
            "Output Throughput (tok/s) is unknown in both runs (no token counts): not compared"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAIL parallel_1_number_3: tps is unknown"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("FAIL parallel_1_number_3: rps"),
        "{stdout}"
    );
    assert!(
        s["Token Counts"]
            .as_str()
            .unwrap()
            .starts_with("unknown for 3 of 3"),
        "{s}"
    );
    let nulls: i64 = common::db(&dir)
        .query_row(
            "SELECT COUNT(*) FROM result WHERE completion_tokens IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(nulls, 3);
}

/// `--goodput`: the rate and share of requests meeting every bound, recomputed here
/// from the stored rows (vLLM's definition; TPOT of one-token outputs counts as 0).
#[test]
fn goodput_recomputed_from_sqlite() {
    let ran = Bench::sim_with(SimConfig {
        error_rate: 0.1,
        seed: 5,
        ..SimConfig::default()
    })
    .parallel(4)
    .number(60)
    .args(&["--goodput", "e2el:330", "ttft:50", "tpot:40"])
    .run();
    let dir = ran.only_step();
    let s = common::json(&dir.join("benchmark_summary.json"));
    let conn = common::db(&dir);
    // success, TTFT, TPOT, latency (seconds; NULL for failures)
    type Row = (bool, Option<f64>, Option<f64>, Option<f64>);
    let rows: Vec<Row> = conn
        .prepare("SELECT success, first_chunk_latency, time_per_output_token, latency FROM result")
        .unwrap()
        .query_map([], |r| {
            Ok((r.get::<_, i64>(0)? == 1, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .unwrap()
        .map(|x| x.unwrap())
        .collect();
    let good = rows
        .iter()
        .filter(|(ok, ttft, tpot, lat)| {
            *ok && ttft.unwrap_or(f64::INFINITY) * 1000.0 <= 50.0
                && tpot.unwrap_or(0.0) * 1000.0 <= 40.0
                && lat.unwrap_or(f64::INFINITY) * 1000.0 <= 330.0
        })
        .count();
    let succ = rows.iter().filter(|r| r.0).count();
    assert!(
        good > 0 && good < succ,
        "the bound splits the requests: {good} of {succ}"
    );
    let duration = s["Test Duration (s)"].as_f64().unwrap();
    let rate = s["Goodput (req/s)"].as_f64().unwrap();
    assert!(
        (rate - good as f64 / duration).abs() < 0.01 * rate.max(1.0),
        "{rate}"
    );
    assert_eq!(
        s["Goodput (%)"].as_f64().unwrap(),
        r(100.0 * good as f64 / 60.0, 2)
    );
    // Without --goodput there are no goodput keys (evalscope's summary is unchanged).
    let url = format!("{}/v1/chat/completions", ran.sim().base_url());
    let s = Bench::url(&url).number(4).run().summary();
    assert!(s.get("Goodput (req/s)").is_none());
}

/// speed_benchmark: 8 plain prompts of '熵' x [1, 6144, 14336, 30720] (twice each), the
/// chat URL rewritten to /v1/completions before any request (evalscope rewrites it
/// too late), and speed_benchmark.json per prompt length.
#[test]
fn speed_benchmark_rewrites_the_url_and_reports_speed() {
    let ran = Bench::sim_with(SimConfig {
        zero_delay: true,
        min_output_len: 16,
        max_output_len: 16,
        ..SimConfig::default()
    })
    .arg("--dataset", "speed_benchmark")
    .number(8)
    .max_tokens(16)
    .run();
    assert_eq!(ran.outcome.exit_code, 0);
    let dir = ran.only_step();
    let args = common::json(&dir.join("benchmark_args.json"));
    assert_eq!(
        args["url"],
        format!("{}/v1/completions", ran.sim().base_url())
    );
    let conn = common::db(&dir);
    let lens: Vec<i64> = conn
        .prepare("SELECT LENGTH(json_extract(request, '$.prompt')) FROM result WHERE success=1 ORDER BY 1")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|x| x.unwrap())
        .collect();
    assert_eq!(lens, [1, 1, 6144, 6144, 14336, 14336, 30720, 30720]);
    let speed = common::json(&dir.join("speed_benchmark.json"));
    let rows = speed.as_array().unwrap();
    assert_eq!(rows.len(), 4, "{speed}");
    assert!(rows
        .iter()
        .all(|r| r["Speed(tokens/s)"].as_f64().unwrap() > 0.0));
}

/// --query-template: the rendered Jinja body is what the server receives, with CLI
/// parameters filling only the keys it lacks (stored bodies are what was sent).
#[test]
fn query_template_renders_the_body() {
    let _g = common::lock();
    let sim = common::start_sim(SimConfig {
        zero_delay: true,
        ..SimConfig::default()
    });
    let out = tempfile::tempdir().unwrap();
    let url = format!("{}/v1/chat/completions", sim.base_url());
    let tpl = out.path().join("body.j2");
    std::fs::write(
        &tpl,
        r#"{"model": "{{ model }}", "messages": [], "temperature": 0.7, "user": "%m", "metadata": {"q": {{ prompt | tojson }}}}"#,
    )
    .unwrap();
    #[rustfmt::skip]
    let o = common::run(&[
        "--url", &url, "--model", "m", "--number", "4", "--no-test-connection",
        "--query-template", &format!("@{}", tpl.display()), "--outputs-dir", out.path().to_str().unwrap(),
    ])
    .unwrap();
    assert_eq!(o.exit_code, 0);
    let conn = common::db(&o.dir.join("parallel_1_number_4"));
    let bodies: Vec<serde_json::Value> = conn
        .prepare("SELECT request FROM result WHERE success=1")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|x| serde_json::from_str(&x.unwrap()).unwrap())
        .collect();
    assert_eq!(bodies.len(), 4);
    for b in &bodies {
        assert_eq!(
            b["temperature"], 0.7,
            "the template wins over the CLI default"
        );
        assert_eq!(b["user"], "m");
        assert_eq!(b["stream"], true, "CLI parameters fill the rest");
        let q = b["metadata"]["q"].as_str().unwrap();
        assert_eq!(b["messages"][0]["content"], q, "messages are the dataset's");
    }
    let e = common::resolve(&["--model", "m", "--query-template", "{{ oops"]).unwrap_err();
    assert!(e.to_string().contains("--query-template"), "{e}");
}

/// random_vl: each request carries the text and --image-num PNGs of the requested size
/// and mode as data URLs (decoded here from the stored bodies).
#[test]
fn random_vl_sends_pngs_of_the_requested_shape() {
    use base64::Engine as _;
    let _g = common::lock();
    let sim = common::start_sim(SimConfig {
        zero_delay: true,
        ..SimConfig::default()
    });
    let out = tempfile::tempdir().unwrap();
    let url = format!("{}/v1/chat/completions", sim.base_url());
    #[rustfmt::skip]
    let o = common::run(&[
        "--url", &url, "--model", "m", "--dataset", "random_vl", "--number", "5", "--no-test-connection",
        "--min-prompt-length", "5", "--max-prompt-length", "30", "--image-num", "3",
        "--image-width", "40", "--image-height", "24", "--image-format", "L",
        "--outputs-dir", out.path().to_str().unwrap(),
    ])
    .unwrap();
    assert_eq!(o.exit_code, 0);
    let conn = common::db(&o.dir.join("parallel_1_number_5"));
    let bodies: Vec<serde_json::Value> = conn
        .prepare("SELECT request FROM result")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|x| serde_json::from_str(&x.unwrap()).unwrap())
        .collect();
    let mut seen = std::collections::HashSet::new();
    for b in &bodies {
        let parts = b["messages"][0]["content"].as_array().unwrap();
        assert_eq!(parts.len(), 4, "text + 3 images");
        let text = parts[0]["text"].as_str().unwrap();
        assert!((5..=30).contains(&text.chars().count()));
        for p in &parts[1..] {
            let u = p["image_url"]["url"].as_str().unwrap();
            let data = u.strip_prefix("data:image/png;base64,").unwrap();
            let png = base64::engine::general_purpose::STANDARD
                .decode(data)
                .unwrap();
            let r = png::Decoder::new(std::io::Cursor::new(&png))
                .read_info()
                .unwrap();
            let i = r.info();
            assert_eq!(
                (i.width, i.height, i.color_type),
                (40, 24, png::ColorType::Grayscale)
            );
            seen.insert(png);
        }
    }
    assert_eq!(seen.len(), 15, "every image is different");
    let e = common::resolve(&[
        "--model",
        "m",
        "--dataset",
        "random_vl",
        "--image-format",
        "CMYK",
    ])
    .unwrap_err();
    assert!(e.to_string().contains("--image-format"), "{e}");
}

/// workload_throughput.json and workload_timeline.json (evalscope 1.14.1) in every
/// run directory, recomputed here from the SQLite rows: successful rows in recorded
/// order, the clock from the first one's start, running sums at each completion,
/// and the Overall / Last 30 s / Steady (first 20 % dropped) rates.
#[test]
fn workload_files_recomputed_from_sqlite() {
    let ran = Bench::sim_with(SimConfig {
        ttft_ms: Some(15.0),
        itl_ms: Some(3.0),
        ..SimConfig::default()
    })
    .parallel(4)
    .number(40)
    .max_tokens(12)
    .args(&[
        "--prefix-length",
        "200",
        "--dataset",
        "random",
        "--min-prompt-length",
        "250",
        "--max-prompt-length",
        "300",
    ])
    .run();
    assert_eq!(ran.outcome.exit_code, 0);
    let dir = ran.only_step();
    let rows: Vec<(f64, f64, i64, i64, i64)> = common::rows(
        &ran.db(),
        "SELECT start_time, completed_time, prompt_tokens, completion_tokens,
                COALESCE(cached_tokens, 0) FROM result WHERE success=1 ORDER BY rowid",
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    );
    assert_eq!(rows.len(), 40);
    let t0 = rows[0].0;
    let mut sums = (0i64, 0i64, 0i64);
    let mut points = Vec::new();
    for &(_, end, prompt, completion, cached) in &rows {
        sums.0 += completion;
        sums.1 += (prompt - cached).max(0);
        sums.2 += cached;
        points.push((end - t0, sums.0, sums.1, sums.2));
    }
    assert!(sums.2 > 0, "the shared prefix was cached");
    let timeline = common::json(&dir.join("workload_timeline.json"));
    assert_eq!(timeline["wall_start"].as_f64(), Some(t0));
    let stored = timeline["points"].as_array().unwrap();
    assert_eq!(stored.len(), 40);
    for (p, s) in points.iter().zip(stored) {
        assert!((s["t"].as_f64().unwrap() - p.0).abs() <= 5e-7);
        assert_eq!(
            (
                s["cum_completion"].as_i64(),
                s["cum_new_prompt"].as_i64(),
                s["cum_cached_prompt"].as_i64()
            ),
            (Some(p.1), Some(p.2), Some(p.3))
        );
    }
    let wall = points.last().unwrap().0;
    let rate = |from: (f64, i64, i64, i64)| {
        let l = points.last().unwrap();
        let dt = l.0 - from.0;
        [
            ((l.2 - from.2) + (l.3 - from.3)) as f64 / dt,
            (l.2 - from.2) as f64 / dt,
            (l.3 - from.3) as f64 / dt,
            (l.1 - from.1) as f64 / dt,
        ]
    };
    let overall = rate((0.0, 0, 0, 0));
    // Under 30 s: the last window is the whole run. Steady: from the latest point
    // at or before 20 % of the wall time.
    let anchor = points
        .iter()
        .take_while(|p| p.0 <= 0.2 * wall)
        .last()
        .copied()
        .unwrap_or(points[0]);
    let steady = rate(anchor);
    let w = common::json(&dir.join("workload_throughput.json"));
    assert_eq!(w["n_samples"], 40);
    assert!((w["wall_time_s"].as_f64().unwrap() - (wall * 1e4).round() / 1e4).abs() < 1e-9);
    assert_eq!(
        (w["last_window_s"].as_f64(), w["warmup_frac"].as_f64()),
        (Some(30.0), Some(0.2))
    );
    let names = [
        "Total Prompt tok/s",
        "New Prompt tok/s",
        "Cached Prompt tok/s",
        "Completion tok/s",
    ];
    for (i, row) in w["rows"].as_array().unwrap().iter().enumerate() {
        assert_eq!(row["metric"], names[i]);
        let near = |k: &str, want: f64| {
            let got = row[k].as_f64().unwrap();
            assert!(
                (got - want).abs() <= 1e-9 * want.abs().max(1.0),
                "{} {k}: {got} vs {want}",
                names[i]
            );
        };
        near("overall", overall[i]);
        near("last_window", overall[i]);
        near("steady_state", steady[i]);
    }
    // The console and the HTML report show the same table.
    let log = std::fs::read_to_string(ran.outcome.dir.join("benchmark.log")).unwrap();
    assert!(
        log.contains("Workload Throughput") && log.contains("Steady (drop 20%)"),
        "{log}"
    );
    let html = std::fs::read_to_string(ran.outcome.dir.join("perf_report.html")).unwrap();
    assert!(html.contains("<h2>Workload Throughput</h2>"));
    assert!(
        html.contains(&format!("{:.2}", overall[3])),
        "completion tok/s in the page"
    );
}

#[test]
fn with_api_sim_every_output_names_the_port_used() {
    let _g = common::lock();
    let out = tempfile::tempdir().unwrap();
    let o = common::run(&[
        "--api",
        "sim",
        "--parallel",
        "1",
        "--number",
        "3",
        "--max-tokens",
        "4",
        "--outputs-dir",
        out.path().to_str().unwrap(),
    ])
    .unwrap();
    // The simulator's own line: the port it listens on (a free one, not --port 8877).
    let log = std::fs::read_to_string(o.dir.join("benchmark.log")).unwrap();
    let base = log
        .split("Simulator listening on ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .to_string();
    let port: u16 = base.rsplit(':').next().unwrap().parse().unwrap();
    assert_ne!(port, 8877);
    let step = std::fs::read_dir(&o.dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("benchmark_args.json").is_file())
        .unwrap();
    let args = common::json(&step.join("benchmark_args.json"));
    assert_eq!(args["url"], format!("{base}/v1/chat/completions"));
    assert_eq!(args["port"], port);
    let endpoint = format!("127.0.0.1:{port}");
    for f in ["performance_summary.txt", "perf_report.html"] {
        let text = std::fs::read_to_string(o.dir.join(f)).unwrap();
        assert!(text.contains(&endpoint), "{f} does not name {endpoint}");
        assert!(!text.contains(":8877"), "{f} names --port's default");
    }
}
