//! The chaos soak's CI version: `attrib-soak` for 30 s of worker kills and coordinator
//! restarts (the full one is `scripts/soak.sh`, 5 minutes). No job may end with scores other
//! than a clean run's, and none may be lost.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use attrib_tests::{bin, repo, Proc};

/// The number just before `what` in the soak's printed block (`12 coordinator restarts`,
/// `jobs completed: 57` read with `what` = `jobs completed:` takes the one after).
fn figure(out: &str, what: &str) -> u64 {
    let number = |s: &str| {
        s.trim_matches(|c: char| !c.is_ascii_digit())
            .parse::<u64>()
            .ok()
    };
    let found = match out.find(what) {
        Some(at) if what.ends_with(':') => out[at + what.len()..]
            .split_whitespace()
            .next()
            .and_then(number),
        Some(at) => out[..at].split_whitespace().last().and_then(number),
        None => None,
    };
    found.unwrap_or_else(|| panic!("no figure for {what:?} in:\n{out}"))
}

#[test]
fn a_30_second_chaos_soak_changes_no_score_and_loses_nothing() {
    // Restarts every 5-10 s, so that 30 s of faults hold several.
    let mut child = Command::new(bin("attrib-soak"))
        .args([
            "--seconds",
            "30",
            "--restart-every",
            "5-10",
            "--drain-seconds",
            "40",
        ])
        .current_dir(repo())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start attrib-soak");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let mut soak = Proc {
        child,
        name: "attrib-soak".into(),
    };
    let exit = soak.wait_exit(Duration::from_secs(100));
    let out = reader.join().expect("stdout reader");
    eprintln!("{out}");
    assert!(exit.success(), "attrib-soak failed ({exit}):\n{out}");
    assert_eq!(figure(&out, "jobs differing from a clean run:"), 0);
    assert_eq!(figure(&out, "results lost:"), 0);
    assert!(figure(&out, "jobs completed:") >= 1);
    assert!(figure(&out, "worker kills") >= 1);
    assert!(figure(&out, "coordinator restarts") >= 1);
    assert!(figure(&out, "orderly stops among them") >= 1);
}
