//! Mistakes an operator makes, each met by the real processes with a message that says what
//! to fix: a model folder whose weights do not fit its config, plain text to a TLS port or an
//! untrusted CA, a worker certificate the coordinator refuses, wrong tokens (logged with the
//! caller's address and counted), a request over `--max-request-mib`, colour codes in piped
//! logs, and a model folder that is not complete once copied.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use attrib_proto::v1;
use attrib_tests::*;
use tonic::Code;

/// `src` copied to `dst`: as `cp -r` copies it when `keep_links` (a symlink stays a symlink,
/// with its target as written, so a relative one may point nowhere in the copy), else with
/// every link replaced by the file it points to.
fn copy_folder(src: &Path, dst: &Path, keep_links: bool) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        if keep_links && entry.file_type().unwrap().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), &to).unwrap();
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
}

/// Starts `attrib-coordinator` on `model`, expecting it to exit by itself: its stderr.
fn coordinator_refusing(model: &Path, db: &Path) -> String {
    let child = Command::new(bin("attrib-coordinator"))
        .arg("--model")
        .arg(model)
        .args(["--listen", "127.0.0.1:0", "--db"])
        .arg(db)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut p = Proc {
        child,
        name: "coordinator".into(),
    };
    assert!(!p.wait_exit(Duration::from_secs(30)).success());
    p.stderr()
}

/// Starts `attrib-worker serve` on `model` (no coordinator needed: it loads first),
/// expecting it to exit: its stderr.
fn worker_refusing(model: &Path) -> String {
    let mut w = worker("http://127.0.0.1:9", "w", model, &[]);
    assert!(!w.wait_exit(Duration::from_secs(60)).success());
    w.stderr()
}

#[test]
fn a_model_whose_weights_do_not_fit_its_config_is_refused_at_start_by_both_roles() {
    let dir = tempfile::tempdir().unwrap();
    let three = dir.path().join("three-layers");
    copy_folder(&tiny_model(), &three, false);
    let config = three.join("config.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    json["n_layer"] = 3.into();
    std::fs::write(&config, json.to_string()).unwrap();
    let missing = "tensor h.2.attn.c_attn.bias is missing (expected shape [96])";
    let err = coordinator_refusing(&three, &dir.path().join("a.db"));
    assert!(err.contains(missing), "{err}");
    let err = worker_refusing(&three);
    assert!(err.contains(missing), "{err}");

    let cut = dir.path().join("truncated");
    copy_folder(&tiny_model(), &cut, false);
    let weights = std::fs::OpenOptions::new()
        .write(true)
        .open(cut.join("model.safetensors"))
        .unwrap();
    let len = weights.metadata().unwrap().len();
    weights.set_len(len - 100).unwrap();
    let truncated = format!(
        "the file is truncated at {} bytes; its header needs {len}",
        len - 100
    );
    let err = coordinator_refusing(&cut, &dir.path().join("b.db"));
    assert!(err.contains(&truncated), "{err}");
    let err = worker_refusing(&cut);
    assert!(err.contains(&truncated), "{err}");
}

/// A TLS coordinator (certificates from a fresh CA in `dir`) with a worker CA; returns it
/// and the certificate files.
fn tls_coordinator(dir: &Path) -> (Coordinator, [PathBuf; 5]) {
    let files = certificates(dir);
    let [ca, cert, key, _, _] = &files;
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let flags = [
        "--tls-cert".to_string(),
        s(cert),
        "--tls-key".into(),
        s(key),
        "--worker-ca".into(),
        s(ca),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    (coordinator(&dir.join("tls.db"), None, &flags), files)
}

fn stderr_of(out: &std::process::Output) -> String {
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn plain_text_to_tls_and_an_untrusted_or_junk_ca_say_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let (c, _) = tls_coordinator(dir.path());
    let rest = c.url.strip_prefix("https://").unwrap();
    let err = stderr_of(&cli(&format!("http://{rest}"), &["jobs"]));
    assert!(
        err.contains(&format!("speaks TLS: use https://{rest}")),
        "{err}"
    );

    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let [other_ca, ..] = certificates(&other);
    let ca = other_ca.to_str().unwrap();
    let err = stderr_of(&cli(&c.url, &["--ca-file", ca, "jobs"]));
    assert!(
        err.contains(&format!("is not trusted by CA file {ca}")),
        "{err}"
    );

    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let junk = junk.to_str().unwrap();
    let err = stderr_of(&cli(&c.url, &["--ca-file", junk, "jobs"]));
    assert!(
        err.contains(&format!("the CA file {junk} holds no PEM certificate")),
        "{err}"
    );
}

/// `p`'s stderr lines as they come, read on a thread.
fn stderr_lines(p: &mut Proc) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let err = p.child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Lines from `rx` up to and including the first that contains `wanted` (60 s at most in
/// all: a process that keeps logging other lines must not keep the test waiting).
fn lines_until(rx: &mpsc::Receiver<String>, wanted: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let done = line.contains(wanted);
                seen.push(line);
                if done {
                    return seen;
                }
            }
            Err(e) => panic!("no line with {wanted:?} ({e}): {seen:#?}"),
        }
    }
}

#[test]
fn a_worker_whose_certificate_is_refused_says_why_and_backs_off_past_the_reconnect_cap() {
    let dir = tempfile::tempdir().unwrap();
    let (c, [ca, ..]) = tls_coordinator(dir.path());
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let [_, _, _, stranger_cert, stranger_key] = certificates(&other);
    let flags = [
        "--ca-file",
        ca.to_str().unwrap(),
        "--tls-cert",
        stranger_cert.to_str().unwrap(),
        "--tls-key",
        stranger_key.to_str().unwrap(),
    ];
    let mut w = worker(&c.url, "stranger", &tiny_model(), &flags);
    let lines = lines_until(&stderr_lines(&mut w), "retry_in=6.4s");
    let last = lines.last().unwrap();
    assert!(
        last.contains("refused this caller's TLS certificate"),
        "{lines:#?}"
    );
    // Piped logs carry no colour codes.
    assert!(lines.iter().all(|l| !l.contains("\x1b[")), "{lines:#?}");
}

/// The sum of every `attrib_auth_failures_total` series with both `role` and `reason`.
fn auth_failures(metrics: &str, role: &str, reason: &str) -> f64 {
    let (role, reason) = (format!("role=\"{role}\""), format!("reason=\"{reason}\""));
    metrics
        .lines()
        .filter(|l| l.starts_with("attrib_auth_failures_total{"))
        .filter(|l| l.contains(&role) && l.contains(&reason))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_tokens_are_logged_with_the_peer_once_a_second_counted_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = free_port();
    let listen = format!("127.0.0.1:{metrics}");
    let flags = [
        "--token",
        "client-secret",
        "--worker-token",
        "worker-secret",
        "--metrics-listen",
        &listen,
    ];
    let (child, url, _) = attrib_sim::cluster::spawn_coordinator(
        &bin("attrib-coordinator"),
        &tiny_model(),
        &dir.path().join("auth.db"),
        0,
        &flags,
        Stdio::piped(),
    )
    .unwrap();
    let mut coordinator = Proc {
        child,
        name: "coordinator".into(),
    };
    let log = stderr_lines(&mut coordinator);

    let mut stranger = client(&url, Some("guess")).await;
    for _ in 0..3 {
        let e = stranger
            .list_jobs(v1::ListJobsRequest {})
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
        assert!(e.message().contains("ATTRIB_TOKEN"), "{e:?}");
    }
    let mut impostor = worker(
        &url,
        "impostor",
        &tiny_model(),
        &["--token", "client-secret"],
    );
    assert!(!impostor.wait_exit(Duration::from_secs(60)).success());
    let err = impostor.stderr();
    assert!(
        err.contains("wrong token") && err.contains("ATTRIB_WORKER_TOKEN"),
        "{err}"
    );

    let text = http_get(metrics, "/metrics");
    assert_eq!(auth_failures(&text, "client", "wrong_token"), 3.0, "{text}");
    assert_eq!(auth_failures(&text, "worker", "wrong_token"), 1.0, "{text}");
    let mut lines = lines_until(&log, "role=\"worker\"");
    coordinator.signal(libc::SIGKILL);
    lines.extend(log.iter());
    let refusals: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("authentication refused"))
        .collect();
    // Three client refusals within a second: one line (the worker's has its own).
    assert_eq!(refusals.len(), 2, "{lines:#?}");
    assert!(
        refusals
            .iter()
            .all(|l| l.contains("peer=127.0.0.1:") && l.contains("reason=\"wrong_token\"")),
        "{refusals:#?}"
    );
    assert!(lines.iter().all(|l| !l.contains("\x1b[")), "{lines:#?}");
}

#[test]
fn a_request_over_the_size_limit_names_max_request_mib() {
    let dir = tempfile::tempdir().unwrap();
    let c = coordinator(
        &dir.path().join("size.db"),
        None,
        &["--max-request-mib", "1"],
    );
    let ioi_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ioi()).unwrap()).unwrap();
    let prompts = ioi_json["prompts"].as_array().unwrap();
    let many: Vec<serde_json::Value> = prompts.iter().cycle().take(12_000).cloned().collect();
    let big = dir.path().join("big.json");
    std::fs::write(&big, serde_json::json!({ "prompts": many }).to_string()).unwrap();
    assert!(std::fs::metadata(&big).unwrap().len() > 2 << 20);
    let out = cli(&c.url, &["submit", "--dataset", big.to_str().unwrap()]);
    let err = stderr_of(&out);
    assert!(
        err.contains("over the coordinator's limit of 1.0 MiB (its --max-request-mib)"),
        "{err}"
    );
}

#[test]
fn model_folders_in_assets_hold_files_not_links_so_a_copy_serves() {
    for folder in std::fs::read_dir(repo().join("assets")).unwrap() {
        for file in std::fs::read_dir(folder.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            let kind = std::fs::symlink_metadata(&path).unwrap().file_type();
            assert!(!kind.is_symlink(), "{} is a link", path.display());
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("ioi-2l4h64");
    copy_folder(&ioi_model(), &copy, true);
    let mut c = coordinator_on(&copy, &dir.path().join("copy.db"), None, &[]);
    assert!(c.proc_alive());
}
