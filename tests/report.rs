//! perf_report.html: self-contained, every chart drawn (checked in headless Chromium
//! when it is installed), and `perfscope report DIR` regenerating every output file
//! from the SQLite databases alone.
mod common;

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
