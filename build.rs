//! Records the commit the binary is built from, for `perfscope --version`
//! (`0.1.0 (abc1234)`; `unknown` outside a git checkout, e.g. from a source archive).

fn main() {
    // A build without .git (a Docker context, a source archive) can be told.
    println!("cargo:rerun-if-env-changed=PERFSCOPE_COMMIT");
    let given = std::env::var("PERFSCOPE_COMMIT")
        .ok()
        .filter(|s| !s.is_empty() && s != "unknown");
    let commit = given
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=PERFSCOPE_COMMIT={commit}");
    // A new commit re-runs this (HEAD moves, or the branch it names does).
    for f in [".git/HEAD", ".git/refs/heads"] {
        if std::path::Path::new(f).exists() {
            println!("cargo:rerun-if-changed={f}");
        }
    }
}

fn git_commit() -> Option<String> {
    std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}
