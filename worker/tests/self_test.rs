//! `attrib-worker self-test` as users and the GPU check run it: the real binary passes every
//! check on the repository's fixtures, fails exactly the checks that read a perturbed golden
//! (so the command can fail), and names a missing fixture.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use attrib_worker::self_test::{checks, fixture_list};
use common::*;
use serde_json::Value;

fn self_test_cmd(fixtures: Option<&Path>, only: &[&str]) -> Output {
    let device = std::env::var("ATTRIB_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_attrib-worker"));
    cmd.args(["self-test", "--device", &device]);
    if let Some(dir) = fixtures {
        cmd.arg("--fixtures").arg(dir);
    } else {
        // The repository's fixtures, found from the current directory.
        cmd.current_dir(repo());
    }
    if !only.is_empty() {
        cmd.arg("--only").arg(only.join(","));
    }
    cmd.output().unwrap()
}

/// Each check's line: (name, passed).
fn check_lines(stdout: &str) -> Vec<(String, bool)> {
    let names: Vec<String> = checks().into_iter().map(|c| c.name).collect();
    stdout
        .lines()
        .filter_map(|line| {
            // The longest name the line starts with: no name is cut short by another.
            let name = names
                .iter()
                .filter(|n| line.starts_with(n.as_str()))
                .max_by_key(|n| n.len())?;
            let rest = line[name.len()..].trim_start();
            Some((name.clone(), rest.starts_with("ok ")))
        })
        .collect()
}

/// The listed fixtures copied to a fresh folder, as a bundle holds them.
fn copied_fixtures() -> tempfile::TempDir {
    let out = Command::new(env!("CARGO_BIN_EXE_attrib-worker"))
        .args(["self-test", "--list-fixtures"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let listed: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(listed, fixture_list());
    let tmp = tempfile::tempdir().unwrap();
    for rel in &listed {
        let to = tmp.path().join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(repo().join(rel), &to).unwrap(); // follows the tokenizer's symlinks
    }
    tmp
}

#[test]
fn every_check_passes_on_the_repository_fixtures() {
    let out = self_test_cmd(None, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "exit status {:?}", out.status);
    let lines = check_lines(&stdout);
    let names: Vec<String> = checks().into_iter().map(|c| c.name).collect();
    let passed: Vec<String> = lines.iter().filter(|l| l.1).map(|l| l.0.clone()).collect();
    assert_eq!(passed, names, "one ok line per check, in order");
    let n = names.len();
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!("self-test: {n} of {n} checks passed on ")),
        "{last}"
    );
}

#[test]
fn a_perturbed_golden_fails_exactly_its_check() {
    let tmp = copied_fixtures();
    let rel = format!("{}/golden_quickstart.json", FixtureModel::Tiny.goldens());
    let path = tmp.path().join(&rel);
    let mut g: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let edges = g["edges"].as_array_mut().unwrap();
    let largest = edges
        .iter_mut()
        .max_by(|a, b| {
            let s = |e: &Value| e["score"].as_f64().unwrap().abs();
            s(a).total_cmp(&s(b))
        })
        .unwrap();
    let score = largest["score"].as_f64().unwrap();
    largest["score"] = (score * 1.01).into();
    std::fs::write(&path, serde_json::to_string(&g).unwrap()).unwrap();

    // The checks that read the file (the quickstart's scores, and its faithfulness curve,
    // whose first circuit's threshold is the top |score|) and two that do not; all 24 take
    // minutes, and the test above runs them.
    let only = [
        "quickstart",
        "no_separate_qkv",
        "eap-ig eap (ioi)",
        "faithfulness quickstart",
    ];
    let out = self_test_cmd(Some(tmp.path()), &only);
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit status 1 on a failed check"
    );
    let lines = check_lines(&stdout);
    let ran: Vec<&str> = lines.iter().map(|l| l.0.as_str()).collect();
    assert_eq!(ran, only);
    let failed: Vec<&str> = lines
        .iter()
        .filter(|l| !l.1)
        .map(|l| l.0.as_str())
        .collect();
    let readers: Vec<String> = checks()
        .into_iter()
        .filter(|c| only.contains(&c.name.as_str()) && c.goldens.contains(&rel))
        .map(|c| c.name)
        .collect();
    assert_eq!(failed, ["quickstart", "faithfulness quickstart"]);
    assert_eq!(
        failed, readers,
        "exactly the checks that read the perturbed file fail"
    );
    let quickstart = stdout
        .lines()
        .find(|l| l.starts_with("quickstart"))
        .unwrap();
    assert!(quickstart.contains("max|diff|/max|score|"), "{quickstart}");
    assert!(stdout.contains("self-test: 2 of 4 checks passed"));
}

#[test]
fn a_missing_fixture_is_named() {
    let tmp = copied_fixtures();
    let rel = format!("{}/golden_eapig_exact.json", FixtureModel::Ioi.goldens());
    std::fs::remove_file(tmp.path().join(&rel)).unwrap();
    let out = self_test_cmd(Some(tmp.path()), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "fixture {} is missing",
            tmp.path().join(&rel).display()
        )),
        "{stderr}"
    );
    // Refused before any check ran.
    assert!(String::from_utf8_lossy(&out.stdout).is_empty());
}
