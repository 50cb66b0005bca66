//! Hub datasets read from local snapshots (evalscope downloads them; perfscope
//! never does): `mmmu_multi_image` from MMMU's own Parquet layout.

use perfscope::sim::SimConfig;
use serde_json::Value;

use crate::common;

const MMMU: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mmmu");

/// One content part as `t:<text>` or `i:<mime>` (the image's data-URL type).
fn parts(body: &Value) -> Vec<String> {
    body["messages"][0]["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| match p["type"].as_str().unwrap() {
            "text" => format!("t:{}", p["text"].as_str().unwrap()),
            _ => {
                let url = p["image_url"]["url"].as_str().unwrap();
                format!("i:{}", url.split(';').next().unwrap())
            }
        })
        .collect()
}

/// The fixture is MMMU's snapshot layout (`<Subject>/validation-*.parquet`, the
/// `datasets` Image struct in `image_1`…`image_7`, a `dev` split that must not be
/// read) for three subjects. evalscope 1.14.1's round robin gives Accounting 1,
/// Art 1, Math 1, (Accounting 2 has one image: skipped), Math 2, Accounting 3.
#[test]
fn mmmu_multi_image_round_robin_over_subjects_from_a_local_snapshot() {
    let _g = common::lock();
    let sim = common::start_sim(SimConfig {
        zero_delay: true,
        ..SimConfig::default()
    });
    let url = format!("{}/v1/chat/completions", sim.base_url());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    #[rustfmt::skip]
    let o = common::run(&[
        "--url", &url, "--model", "vl", "--dataset", "mmmu_multi_image", "--dataset-path", MMMU,
        "--number", "5", "--outputs-dir", out.to_str().unwrap(),
    ])
    .unwrap();
    assert_eq!(o.exit_code, 0);
    let ok: Vec<i64> = common::rows(
        &common::db(&o.dir.join("parallel_1_number_5")),
        "SELECT success FROM result",
        |r| r.get(0),
    );
    assert_eq!(ok, [1, 1, 1, 1, 1]);
    let got: Vec<Vec<String>> = common::bodies(&o.dir.join("parallel_1_number_5"))
        .iter()
        .map(parts)
        .collect();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        got,
        vec![
            s(&[
                "t:Compare ",
                "i:data:image/png",
                "t: with ",
                "i:data:image/jpeg",
                "t:. Which is larger?\nOptions: ['A', 'B']",
            ]),
            // No placeholder: the text, then the images in index order.
            s(&[
                "t:Which painting is older?\nOptions: ['first', 'second']",
                "i:data:image/png",
                "i:data:image/png",
                "i:data:image/png",
            ]),
            s(&["i:data:image/png", "i:data:image/png"]),
            s(&[
                "t:Solve ",
                "i:data:image/png",
                "t: using ",
                "i:data:image/png",
                "t:.\nOptions: ['1', '2']",
            ]),
            s(&["t:Three charts ", "i:data:image/png", "i:data:image/png"]),
        ]
    );
    // The images are the stored bytes, in placeholder order: Math 2 asks for
    // image 2 before image 1.
    use base64::Engine as _;
    let b = &common::bodies(&o.dir.join("parallel_1_number_5"))[3];
    let img = |i: usize| {
        let u = b["messages"][0]["content"][i]["image_url"]["url"]
            .as_str()
            .unwrap()
            .split_once(',')
            .unwrap()
            .1
            .to_string();
        base64::engine::general_purpose::STANDARD.decode(u).unwrap()
    };
    assert!(img(1).starts_with(b"\x89PNG") && img(1) != img(3));

    // Without the path, or with --tokenize-prompt: refused before anything is sent.
    let e = common::run_err(&[
        "--url",
        &url,
        "--model",
        "vl",
        "--dataset",
        "mmmu_multi_image",
    ]);
    assert!(
        e.contains("--dataset-path") && e.contains("MMMU/MMMU"),
        "{e}"
    );
    let e = common::run_err(&[
        "--url",
        &url,
        "--model",
        "vl",
        "--dataset",
        "mmmu_multi_image",
        "--dataset-path",
        dir.path().to_str().unwrap(),
    ]);
    assert!(e.contains("validation-*.parquet"), "{e}");
}
