//! `attrib-worker attribute --warm-up` (the GPU check's K sweep): the untimed unit first
//! changes no bit of the scores, and is never larger than the job (a K above the job's batches
//! once made it a K-batch unit: 1,024 prompts at K = 64, which ran a CPU out of memory).

use std::path::PathBuf;
use std::process::Command;

fn attribute(out: &std::path::Path, extra: &[&str]) -> String {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let run = Command::new(env!("CARGO_BIN_EXE_attrib-worker"))
        .args([
            "attribute",
            "--device",
            "cpu",
            "--train-size",
            "32",
            "--model",
        ])
        .arg(repo.join("tests/fixtures/golden-tiny"))
        .arg("--dataset")
        .arg(repo.join("datasets/ioi/ioi_vanilla_template_prompts.json"))
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "{log}");
    log
}

#[test]
fn a_warm_up_unit_changes_no_bit_and_stays_within_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let (plain, warm) = (dir.path().join("plain.json"), dir.path().join("warm.json"));
    attribute(&plain, &["--batches-per-unit", "64"]);
    let log = attribute(&warm, &["--batches-per-unit", "64", "--warm-up"]);
    assert_eq!(
        std::fs::read(&plain).unwrap(),
        std::fs::read(&warm).unwrap()
    );
    // Peak RSS stays that of a 32-prompt job on the tiny model, far from a 1,024-prompt unit.
    let rss: f64 = log
        .split("peak RSS ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{log}"));
    assert!(rss < 1024.0, "{log}");
}
