//! The cluster end to end: a coordinator and worker processes on 127.0.0.1 give the same
//! bits as `attrib-worker attribute` with the same K, for any number of workers and units in
//! flight, whoever dies on the way.

use std::time::Duration;

use attrib_proto::v1;
use attrib_tests::*;

/// Scores of the golden tiny model's quickstart (train 128, batch 16: 8 batches), as
/// `attrib-worker attribute` writes them.
fn reference(dir: &std::path::Path) -> (Vec<String>, attrib_proto::ScoresFile) {
    attribute_in_process(&[ioi()], &dir.join("reference.json"), 16, 128, 42)
}

/// The same with K batches per unit.
fn reference_k(dir: &std::path::Path, k: u32, train: u32) -> Vec<String> {
    let out = dir.join(format!("reference-k{k}-{train}.json"));
    let k = k.to_string();
    attribute_in_process_with(&[ioi()], &out, 16, train, 42, &["--batches-per-unit", &k]).0
}

/// For K = 1 and K = 4: 1 and 3 worker processes, each holding P = 1 or P = 3 units, give
/// the bits of the in-process run with the same K. Also: AutoCircuit's numbers within the
/// engine's tolerance, the CLI's file, Prometheus metrics, and workers seen holding P units.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_and_pipelining_change_no_bit() {
    let dir = tempfile::tempdir().unwrap();
    let (expected_text, expected) = reference(dir.path());
    let expected_k4 = reference_k(dir.path(), 4, 128);
    let metrics_port = free_port();
    let mut k1_scores = Vec::new();
    for (n_workers, p) in [(1, 1), (3, 3), (1, 3), (3, 1)] {
        let metrics = format!("127.0.0.1:{metrics_port}");
        let extra: &[&str] = if (n_workers, p) == (3, 3) {
            &["--metrics-listen", &metrics]
        } else {
            &[]
        };
        let db = dir.path().join(format!("w{n_workers}-p{p}.db"));
        let c = coordinator(&db, None, extra);
        let p_flag = p.to_string();
        let _w: Vec<Proc> = (0..n_workers)
            .map(|i| {
                let args = ["--units-in-flight", p_flag.as_str()];
                worker(&c.url, &format!("w{i}"), &tiny_model(), &args)
            })
            .collect();
        let mut client = client(&c.url, None).await;
        wait_workers(&mut client, n_workers).await;
        let setup = format!("{n_workers} workers, P = {p}");
        let mut k1_job = String::new();
        for (k, want) in [(1, &expected_text), (4, &expected_k4)] {
            let job = submit(&mut client, with_k(request(&[ioi()], 16, 128, 42), k)).await;
            let status = wait_end(&mut client, &job).await;
            assert_eq!(status.state(), v1::JobState::Done, "{status:?}");
            assert_eq!(
                (
                    status.units_done,
                    status.units_total,
                    status.batches_per_unit
                ),
                (8 / k, 8 / k, k)
            );
            let (header, got) = scores(&mut client, &job, None).await;
            assert_eq!(header.n_edges as usize, expected.n_edges);
            assert_eq!(
                &as_texts(&got),
                want,
                "{setup}, K = {k} vs attrib-worker attribute"
            );
            if k == 1 {
                k1_scores = got;
                k1_job = job;
            }
        }
        if (n_workers, p) != (3, 3) {
            continue;
        }
        // The CLI writes the same file as `attrib-worker attribute`.
        let out = dir.path().join("cli.json");
        let o = cli(&c.url, &["scores", &k1_job, "--out", out.to_str().unwrap()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let text = std::fs::read_to_string(&out).unwrap();
        assert_eq!(score_texts(&text), expected_text);
        let file: attrib_proto::ScoresFile = serde_json::from_str(&text).unwrap();
        let names = |f: &attrib_proto::ScoresFile| {
            f.edges
                .iter()
                .map(|e| (e.src.clone(), e.dest.clone(), e.seq))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&file), names(&expected));
        // Both name the class that made their bits: the same CPU, threads and libtorch.
        assert!(
            file.device_class.starts_with("cpu"),
            "{}",
            file.device_class
        );
        assert_eq!(file.device_class, expected.device_class);
        // Prometheus metrics are real: 8 + 2 units folded; f32 on the wire: 4 bytes per edge
        // per unit and per prompt (128 prompts in each job).
        let text = http_get(metrics_port, "/metrics");
        assert!(text.contains("attrib_units_done_total 10"), "{text}");
        assert!(text.contains("attrib_workers_connected 3"), "{text}");
        assert!(text.contains("attrib_unit_seconds_bucket"), "{text}");
        let bytes = 4 * (10 * expected.n_edges + 2 * 128);
        assert!(
            text.contains(&format!("attrib_result_bytes_total {bytes}")),
            "{text}"
        );
    }
    // K changes only the f32 rounding inside a unit.
    let k4: Vec<f64> = expected_k4.iter().map(|t| t.parse().unwrap()).collect();
    let scale = k4.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let diff = zip_eq(&k1_scores, &k4, "K = 1 and K = 4 scores")
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff / scale < 1e-6, "K = 1 vs K = 4: {:.2e}", diff / scale);

    // Within the engine's tolerance of AutoCircuit's own numbers.
    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tiny_model().join("golden_quickstart.json")).unwrap(),
    )
    .unwrap();
    let golden: Vec<f64> = golden["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["score"].as_f64().unwrap())
        .collect();
    let scale = golden.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let err = zip_eq(&golden, &k1_scores, "golden and cluster scores")
        .fold(0.0f64, |m, (g, s)| m.max((g - s).abs()));
    assert!(
        err / scale < 1e-5,
        "max |diff| / max |score| = {}",
        err / scale
    );
    assert!(expected.clean_logit_diff.is_finite());
}

/// A worker told to hold 3 units holds 3 while it computes the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_holds_p_units_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let c = coordinator(&dir.path().join("p.db"), None, &[]);
    let _w = worker(
        &c.url,
        "victim",
        &tiny_model(),
        &["--units-in-flight", "3", "--unit-delay-ms", "300"],
    );
    let mut client = client(&c.url, None).await;
    wait_workers(&mut client, 1).await;
    let job = submit(&mut client, request(&[ioi()], 16, 128, 42)).await;
    let ws = wait_workers_until(&mut client, "the worker holds 3 units", |ws| {
        ws.first().is_some_and(|w| w.current_units.len() == 3)
    })
    .await;
    assert_eq!(ws[0].units_in_flight, 3);
    assert_eq!(
        wait_end(&mut client, &job).await.state(),
        v1::JobState::Done
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (expected, _) = reference(dir.path());
    let c = coordinator(&dir.path().join("kill.db"), None, &[]);
    let mut victim = worker(&c.url, "victim", &tiny_model(), &["--unit-delay-ms", "400"]);
    let _survivor = worker(
        &c.url,
        "survivor",
        &tiny_model(),
        &["--unit-delay-ms", "400"],
    );
    let mut client = client(&c.url, None).await;
    wait_workers(&mut client, 2).await;
    let job = submit(&mut client, request(&[ioi()], 16, 128, 42)).await;
    wait_victim_busy(&mut client).await;
    victim.signal(libc::SIGKILL);
    victim.wait_exit(Duration::from_secs(10));
    let status = wait_end(&mut client, &job).await;
    assert_eq!(status.state(), v1::JobState::Done, "{status:?}");
    assert!(
        status.units_retried >= 1,
        "the victim's units were handed out again: {status:?}"
    );
    let (_, got) = scores(&mut client, &job, None).await;
    assert_eq!(as_texts(&got), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_worker_times_out_and_a_terminated_one_answers_its_units() {
    let dir = tempfile::tempdir().unwrap();
    let (expected, _) = reference(dir.path());
    let c = coordinator(
        &dir.path().join("hang.db"),
        None,
        &["--unit-timeout-secs", "2"],
    );
    let victim = worker(&c.url, "victim", &tiny_model(), &["--unit-delay-ms", "300"]);
    let mut client = client(&c.url, None).await;
    wait_workers(&mut client, 1).await;
    let job = submit(&mut client, request(&[ioi()], 16, 128, 42)).await;
    wait_victim_busy(&mut client).await;
    victim.signal(libc::SIGSTOP); // hung: the connection stays open, nothing answers
    let mut polite = worker(&c.url, "polite", &tiny_model(), &["--unit-delay-ms", "300"]);
    let s = wait_for(&mut client, &job, |s| s.units_retried >= 1).await;
    assert!(s.units_retried >= 1);
    // SIGTERM: the units it holds are answered, then the worker leaves with status 0.
    wait_for(&mut client, &job, |s| s.units_done >= 2).await;
    polite.signal(libc::SIGTERM);
    assert!(
        polite.wait_exit(Duration::from_secs(30)).success(),
        "graceful exit"
    );
    let _finisher = worker(&c.url, "finisher", &tiny_model(), &[]);
    let status = wait_end(&mut client, &job).await;
    assert_eq!(status.state(), v1::JobState::Done, "{status:?}");
    let (_, got) = scores(&mut client, &job, None).await;
    assert_eq!(as_texts(&got), expected);
    victim.signal(libc::SIGKILL);
}

/// K = 2 over 16 batches: 8 units. The coordinator is killed once 2 units are committed and
/// restarted on the same database: it keeps the committed units, recomputes the rest, and the
/// scores are the bits of the in-process run with K = 2. The unit the worker was computing at
/// the kill arrives late in its next session and counts once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_coordinator_finishes_a_k2_job_from_its_last_commit() {
    let dir = tempfile::tempdir().unwrap();
    let expected = reference_k(dir.path(), 2, 256);
    let db = dir.path().join("restart.db");
    let commits = ["--commit-interval-ms", "100"];
    let mut c = coordinator(&db, None, &commits);
    let _w = worker(
        &c.url,
        "w",
        &tiny_model(),
        &["--unit-delay-ms", "300", "--units-in-flight", "1"],
    );
    let mut client = client(&c.url, None).await;
    let job = submit(&mut client, with_k(request(&[ioi()], 16, 256, 42), 2)).await;
    let before = wait_for(&mut client, &job, |s| s.units_committed >= 2).await;
    c.proc.signal(libc::SIGKILL);
    c.proc.wait_exit(Duration::from_secs(10));

    let c2 = coordinator(&db, Some(c.port), &commits);
    let mut client = attrib_tests::client(&c2.url, None).await;
    let status = wait_end(&mut client, &job).await;
    assert_eq!(status.state(), v1::JobState::Done, "{status:?}");
    assert_eq!((status.units_total, status.batches_per_unit), (8, 2));
    assert!(status.units_resumed >= before.units_committed, "{status:?}");
    assert!(
        status.units_resumed < 8,
        "the job was still running at the kill: {status:?}"
    );
    // Every unit not resumed was folded once; at most the one in flight at the kill came
    // twice (late from the old session, and again on request).
    let computed = status.units_resumed + status.units_computed;
    assert!((8..=9).contains(&computed), "{status:?}");
    let (_, got) = scores(&mut client, &job, None).await;
    assert_eq!(as_texts(&got), expected);
    drop(c);
}

/// A worker holding a unit now (the test kills or stops it).
async fn wait_victim_busy(client: &mut Client) {
    wait_workers_until(client, "the victim holds a unit", |ws| {
        ws.iter()
            .any(|w| w.name == "victim" && !w.current_units.is_empty())
    })
    .await;
}
