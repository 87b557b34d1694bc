//! The `attrib` client as an operator meets it, on real processes: bad command-line values
//! exit 2 naming their flag, labels and other server text cannot drive the terminal, errors
//! are one line, and the listings say what they show (a job's method, no workers, a job
//! waiting for one). Also `attrib scores` to stdout and `attrib compare` on job ids.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use attrib_proto::v1;
use attrib_tests::*;
use tonic::Code;

/// Nothing listens here: a value refused with 2 was refused before any connection.
const NOWHERE: &str = "http://127.0.0.1:1";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `attrib` with a backtrace asked for, as a developer's shell may have it.
fn cli_with_backtraces(url: &str, args: &[&str]) -> Output {
    Command::new(bin("attrib"))
        .args(["--coordinator", url])
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LIB_BACKTRACE", "1")
        .output()
        .expect("run attrib")
}

fn assert_refused<S: AsRef<str>>(args: &[S], says: &[&str]) {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let o = cli_with_backtraces(NOWHERE, &args);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
    for s in says {
        assert!(err.contains(s), "{args:?} should say {s:?}: {err}");
    }
}

#[test]
fn bad_values_exit_2_and_name_their_flag() {
    let ds = ioi();
    let ds = ds.to_str().unwrap();
    let long = "y".repeat(201);
    let submit = |extra: &[&str]| -> Vec<String> {
        ["submit", "--dataset", ds]
            .iter()
            .chain(extra)
            .map(|a| a.to_string())
            .collect()
    };
    let range = "0 (clean) to 1 (corrupt)";
    for v in ["2", "-0.5", "nan", "inf", "-inf"] {
        assert_refused(&submit(&["--mask-val", v]), &["--mask-val", range]);
    }
    assert_refused(
        &submit(&["--seed", "-5"]),
        &["--seed", "non-negative integer"],
    );
    assert_refused(&submit(&["--batch-size", "0"]), &["--batch-size"]);
    assert_refused(&submit(&["--batch-size", "-1"]), &["--batch-size"]);
    assert_refused(
        &submit(&["--method", "nope"]),
        &["--method", "mask-gradient"],
    );
    assert_refused(&submit(&["--grad-function", "nope"]), &["--grad-function"]);
    assert_refused(
        &submit(&["--method", "exact", "--steps", "3"]),
        &["exact", "--steps"],
    );
    assert_refused(
        &submit(&["--method", "acdc", "--taus", "-1e-3"]),
        &["taus", "above 0"],
    );
    assert_refused(
        &submit(&["--label", "x\u{1b}[2J"]),
        &["--label", "control character"],
    );
    assert_refused(&submit(&["--label", &long]), &["--label", "200"]);
    // Files: refused before a byte is read (/dev/zero never ends).
    assert_refused(
        &["submit", "--dataset", "/dev/zero"],
        &["--dataset /dev/zero", "not a regular file"],
    );
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.json");
    std::fs::File::create(&big)
        .unwrap()
        .set_len((64 << 20) + 1)
        .unwrap();
    assert_refused(
        &["submit", "--dataset", big.to_str().unwrap()],
        &["--dataset", "64.0 MiB"],
    );
    assert_refused(
        &["render", "missing.json", "--out", "x.pdf"],
        &["--out x.pdf", ".svg or .png"],
    );
    // A valid negative-looking value is a value, not a flag: it gets as far as connecting.
    let valid = submit(&["--mask-val", "-0"]);
    let valid: Vec<&str> = valid.iter().map(String::as_str).collect();
    let o = cli_with_backtraces(NOWHERE, &valid);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o.stderr));
}

#[test]
fn errors_are_one_line_even_with_backtraces_on() {
    for (args, code) in [
        (vec!["jobs"], 5),
        (vec!["render", "no/such/scores.json"], 7),
        (vec!["submit", "--dataset", "/dev/zero"], 2),
        (vec!["submit", "--dataset", "no/such.json"], 2),
    ] {
        let o = cli_with_backtraces(NOWHERE, &args);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.lines().count() == 1,
            "{args:?}: {err:?}"
        );
    }
}

/// Reads `attrib`'s stderr line by line until one contains `needle` (at most `limit`).
fn wait_for_line(lines: &mut impl Iterator<Item = String>, needle: &str, limit: Duration) {
    let t0 = Instant::now();
    for line in lines.by_ref() {
        if line.contains(needle) {
            return;
        }
        assert!(t0.elapsed() < limit, "no line with {needle:?} in {limit:?}");
    }
    panic!("attrib's stderr ended before a line with {needle:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_say_what_they_show_and_labels_cannot_drive_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let c = coordinator(&dir.path().join("o.db"), None, &[]);
    let mut api = client(&c.url, None).await;

    // The coordinator is the authority on labels, whatever a client checked.
    for label in ["x\u{1b}[2J\nforged", &"y".repeat(201)] {
        let mut req = request(&[ioi()], 16, 32, 42);
        req.label = label.to_string();
        let e = api.submit_job(req).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("label"), "{e:?}");
    }

    let o = cli(&c.url, &["workers"]);
    assert_eq!(text(&o.stdout).trim(), "no workers connected");

    // A job waiting for a worker says so, once, then runs when one joins.
    let ds = ioi();
    let mut waiting = Command::new(bin("attrib"))
        .args([
            "--coordinator",
            &c.url,
            "submit",
            "--wait",
            "--train-size",
            "32",
        ])
        .args(["--dataset", ds.to_str().unwrap(), "--label", "first"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(waiting.stderr.take().unwrap())
        .lines()
        .map(Result::unwrap);
    wait_for_line(
        &mut lines,
        "no worker is connected",
        Duration::from_secs(60),
    );
    let _w = worker(&c.url, "w\u{1b}]0;owned\u{7}", &tiny_model(), &[]);
    let rest: Vec<String> = lines.collect();
    let done = waiting.wait_with_output().unwrap();
    assert!(done.status.success(), "{rest:?}");
    assert!(
        !rest.iter().any(|l| l.contains("no worker is connected")),
        "said once: {rest:?}"
    );

    // Worker names are printed escaped.
    wait_workers(&mut api, 1).await;
    let o = cli(&c.url, &["workers"]);
    let out = text(&o.stdout);
    assert!(out.contains("w\\u{1b}]0;owned\\u{7}"), "{out}");
    assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");

    // Jobs say their method and main settings, in text and JSON.
    let o = cli(
        &c.url,
        &[
            "submit",
            "--dataset",
            ds.to_str().unwrap(),
            "--train-size",
            "32",
        ],
    );
    let mask_job = text(&o.stdout).trim().to_string();
    let o = cli(
        &c.url,
        &[
            "submit",
            "--dataset",
            ds.to_str().unwrap(),
            "--train-size",
            "32",
            "--mask-val",
            "0.5",
        ],
    );
    let half_job = text(&o.stdout).trim().to_string();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let jobs = text(&cli(&c.url, &["jobs"]).stdout);
    let line_of = |job: &str| {
        jobs.lines()
            .find(|l| l.starts_with(&format!("{job} ")))
            .unwrap_or_else(|| panic!("{job} not in {jobs}"))
            .to_string()
    };
    assert!(line_of(&mask_job).contains("mask-gradient, mask 0, logit avg_diff"));
    assert!(line_of(&half_job).contains("mask-gradient, mask 0.5, logit avg_diff"));
    let o = cli(&c.url, &["status", &half_job, "--json"]);
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(st["method"], "mask-gradient");
    assert_eq!(st["settings"]["points"]["value"], 0.5, "{st}");
    let wire = job_status(&mut api, &half_job).await.settings.unwrap();
    assert_eq!(
        wire.points,
        Some(v1::attribution_settings::Points::MaskVal(0.5))
    );

    // `attrib scores JOB` writes to stdout, never over ./scores.json.
    assert_eq!(
        wait_end(&mut api, &mask_job).await.state(),
        v1::JobState::Done
    );
    assert_eq!(
        wait_end(&mut api, &half_job).await.state(),
        v1::JobState::Done
    );
    let cwd = tempfile::tempdir().unwrap();
    let o = Command::new(bin("attrib"))
        .args(["--coordinator", &c.url, "scores", &mask_job])
        .current_dir(cwd.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let scores: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(scores["n_edges"].as_u64().unwrap() > 0);
    assert_eq!(std::fs::read_dir(cwd.path()).unwrap().count(), 0);

    // `attrib compare` takes job ids as well as files.
    let file = cwd.path().join("mask.json");
    std::fs::write(&file, &o.stdout).unwrap();
    let o = cli(
        &c.url,
        &[
            "compare",
            "--reference",
            &format!("ref={mask_job}"),
            &format!("file={}", file.display()),
            &format!("half={half_job}"),
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["reference"], "ref");
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{report}");
    let rho = rows[0]["spearman"].as_f64().unwrap();
    assert!((rho - 1.0).abs() < 1e-9, "the same scores: {report}");
}
