//! perf_report.html: self-contained, every chart drawn (checked in headless Chromium
//! when it is installed), and `perfscope report DIR` regenerating every output file
//! from the SQLite databases alone.
use crate::common;

use perfscope::sim::SimConfig;
use std::path::Path;
use std::process::Command;

fn sweep(out: &Path) -> perfscope::engine::Outcome {
    let sim = common::start_sim(SimConfig {
        error_rate: 0.05,
        seed: 9,
        min_output_len: 10,
        max_output_len: 30,
        ..SimConfig::default()
    });
    let url = format!("{}/v1/chat/completions", sim.base_url());
    #[rustfmt::skip]
    let o = common::run(&[
        "--url", &url, "--model", "org/m-7b", "--parallel", "1", "4", "8", "--number", "6", "24", "48",
        "--sleep-interval", "0", "--no-test-connection", "--outputs-dir", out.to_str().unwrap(),
        // The sweep charts only: the server timeline is tested in server_metrics.rs.
        "--server-metrics", "off",
    ])
    .unwrap();
    o
}

const CHARTS: usize = 9;

#[test]
fn report_is_self_contained_and_regenerated_from_sqlite() {
    let _g = common::lock();
    let out = tempfile::tempdir().unwrap();
    let o = sweep(out.path());
    let html = std::fs::read_to_string(o.dir.join("perf_report.html")).unwrap();
    // Self-contained: no external script, stylesheet, font or image.
    for needle in [
        "<script src",
        "<link",
        "@import",
        "url(",
        "<img",
        "http://",
        "https://",
    ] {
        assert!(!html.contains(needle), "external reference `{needle}`");
    }
    assert_eq!(html.matches("<svg class=\"chart\"").count(), CHARTS);
    // One point per run on the sweep charts, one per percentile on the curves.
    assert_eq!(
        html.matches("<circle").count(),
        3 * (4 * 3 + 1 + 2 + 1) + 3 * 3 * 11
    );
    for s in [
        "Highest RPS",
        "parallel_8_number_48",
        "m-7b",
        "Percentiles per run",
    ] {
        assert!(html.contains(s), "{s}");
    }

    // `perfscope report DIR` rewrites every output file identically from SQLite.
    let files = [
        "parallel_1_number_6/benchmark_summary.json",
        "parallel_4_number_24/benchmark_percentile.json",
        "parallel_8_number_48/benchmark_args.json",
        "performance_summary.txt",
    ];
    let before: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(o.dir.join(f)).unwrap())
        .collect();
    for f in files {
        std::fs::remove_file(o.dir.join(f)).unwrap();
    }
    std::fs::remove_file(o.dir.join("perf_report.html")).unwrap();
    let r = Command::new(env!("CARGO_BIN_EXE_perfscope"))
        .args(["report", o.dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        r.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    for (f, want) in files.iter().zip(&before) {
        let got = std::fs::read_to_string(o.dir.join(f)).unwrap();
        assert_eq!(&got, want, "{f} regenerated differently");
    }
    let again = std::fs::read_to_string(o.dir.join("perf_report.html")).unwrap();
    let strip = |h: &str| {
        h.lines()
            .map(|l| {
                l.split("<tr><th>Generated</th>")
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .collect::<String>()
    };
    assert_eq!(strip(&again), strip(&html));
    // A directory without databases is an error naming it.
    let r = Command::new(env!("CARGO_BIN_EXE_perfscope"))
        .args(["report", out.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("benchmark_data.db"));
}

#[test]
fn report_renders_in_headless_chromium() {
    if !common::external("chromium") {
        return;
    }
    let _g = common::lock();
    let out = tempfile::tempdir().unwrap();
    let o = sweep(out.path());
    let page = format!("file://{}", o.dir.join("perf_report.html").display());
    let chromium = |extra: &[&str]| {
        let mut c = Command::new("chromium");
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .args(["--enable-logging=stderr", "--v=0"])
        .args(extra)
        .arg(&page);
        c.output().unwrap()
    };
    // The page's own check: every chart has drawn points, else console.error.
    let dom = chromium(&["--dump-dom"]);
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    let logs = String::from_utf8_lossy(&dom.stderr);
    assert!(
        dom_text.contains(&format!("data-charts=\"{CHARTS}\"")),
        "{dom_text:.2000}"
    );
    let points: usize = dom_text
        .split("data-points=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert!(points > 100, "{points} points drawn");
    let console: Vec<&str> = logs.lines().filter(|l| l.contains("CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:?}");
    // A screenshot that is not blank: many non-white pixels, many colours.
    let shot = tempfile::tempdir().unwrap();
    let png_path = shot.path().join("report.png");
    let r = chromium(&[
        "--window-size=1280,2400",
        &format!("--screenshot={}", png_path.display()),
    ]);
    assert!(png_path.is_file(), "{}", String::from_utf8_lossy(&r.stderr));
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&png_path).unwrap(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = info.color_type.samples();
    let pixels = &buf[..info.buffer_size()];
    let mut colours = std::collections::HashSet::new();
    let mut ink = 0usize;
    for p in pixels.chunks(px) {
        if p[..3].iter().any(|&c| c < 200) {
            ink += 1;
        }
        colours.insert((p[0] >> 4, p[1] >> 4, p[2] >> 4));
    }
    let total = pixels.len() / px;
    assert!(ink * 100 > total, "only {ink} of {total} pixels drawn");
    assert!(colours.len() > 20, "{} colours", colours.len());
}

#[test]
fn report_renders_an_evalscope_output_directory_with_its_1_14_rules() {
    let out = tempfile::tempdir().unwrap();
    let dir = common::evalscope_dir(out.path());
    let db = dir.join("parallel_2_number_5").join("benchmark_data.db");
    let before = std::fs::read(&db).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_perfscope"))
        .args(["report", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // evalscope's files and database are untouched; perfscope's report is beside them.
    assert_eq!(std::fs::read(&db).unwrap(), before);
    for f in [
        "parallel_2_number_5/benchmark_summary.json",
        "perf_report.html",
    ] {
        assert_eq!(
            std::fs::read_to_string(dir.join(f)).unwrap(),
            "evalscope's own"
        );
    }
    let html = std::fs::read_to_string(dir.join("perfscope_report.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("Qwen2.5-0.5B"));
    let txt = std::fs::read_to_string(dir.join("perfscope_summary.txt")).unwrap();
    assert!(txt.contains("Performance Overview"), "{txt}");

    // The numbers, by evalscope 1.14.1's rules, worked out by hand from the rows.
    let step = perfscope::store::steps(&dir).unwrap();
    assert!(step[0].evalscope);
    assert_eq!((step[0].point.parallel, step[0].point.number), (2, 5));
    let run = &perfscope::report::stored::load_all(&step).unwrap()[0];
    let s = &run.summary.to_json();
    let num = |k: &str| s[k].as_f64().unwrap_or_else(|| panic!("{k}: {}", s[k]));
    // Window: rows with start > 0 and completed ≥ start: 10.0 … 11.2.
    assert_eq!(num("Test Duration (s)"), 1.2);
    assert_eq!(
        (
            num("Total Requests"),
            num("Success Requests"),
            num("Failed Requests")
        ),
        (5.0, 3.0, 2.0)
    );
    assert_eq!(num("Req Throughput (req/s)"), 2.5);
    assert_eq!(
        (num("Concurrency"), num("Request Rate (req/s)")),
        (2.0, -1.0)
    );
    assert_eq!(
        (num("Stream Requests"), num("Non-Stream Requests")),
        (5.0, 0.0)
    );
    assert_eq!(num("Input Throughput (tok/s)"), 0.0);
    assert_eq!(num("Avg Latency (s)"), 0.5667);
    assert_eq!(num("Avg Input Tokens"), 10.0);
    assert_eq!(num("Avg Output Tokens"), 5.0);
    assert_eq!(num("Output Throughput (tok/s)"), 12.5);
    assert_eq!(num("Total Throughput (tok/s)"), 37.5);
    // (100.05 + 200 + 200) / 3
    assert_eq!(num("Avg TTFT (ms)"), 166.68);
    // The one-token stream is left out: (99.9875 + 100) / 2 = 99.99375.
    assert_eq!(num("Avg TPOT (ms)"), 99.99);
    // 12 gaps: 11 of 100 ms and one of 99.95 ms.
    assert_eq!(num("Avg ITL (ms)"), 100.0);
    let col = |name: &str| {
        run.columns
            .iter()
            .find(|c| c.name() == name)
            .unwrap()
            .values
            .iter()
            .map(|v| perfscope::stats::round(*v, 4))
            .collect::<Vec<_>>()
    };
    // Nearest rank over [100.05, 200, 200]: p1…p25 → index 0, p50 and up → 1, 2.
    assert_eq!(
        col("TTFT (ms)"),
        [100.05, 100.05, 100.05, 100.05, 100.05, 200.0, 200.0, 200.0, 200.0, 200.0, 200.0]
    );
    // TPOT drops the one-token stream (TPOT 0): [99.9875, 100].
    assert_eq!(col("TPOT (ms)")[0], 99.9875);
    assert_eq!(col("TPOT (ms)")[5], 99.9875);
    assert_eq!(col("TPOT (ms)")[10], 100.0);
    assert_eq!(
        col("Latency (s)"),
        [0.2, 0.2, 0.2, 0.2, 0.2, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0]
    );
    // 12 ITL values: p50 → index 5, which is 100 ms; min is 99.95.
    assert_eq!(col("ITL (ms)")[0], 99.95);
    assert_eq!(col("ITL (ms)")[1], 99.95);
    assert_eq!(col("ITL (ms)")[5], 100.0);
}
