//! The cluster end to end: a coordinator and worker processes on 127.0.0.1 give the same
//! bits as one worker and as `attrib-worker attribute`, whoever dies on the way.

use std::time::Duration;

use attrib_proto::v1;
use attrib_tests::*;

/// Scores of the golden tiny model's quickstart (train 128, batch 16: 8 batches), as
/// `attrib-worker attribute` writes them.
fn reference(dir: &std::path::Path) -> (Vec<String>, attrib_proto::ScoresFile) {
    attribute_in_process(&[ioi()], &dir.join("reference.json"), 16, 128, 42)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_give_the_bits_of_one_worker_and_of_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let (expected_text, expected) = reference(dir.path());

    let metrics_port = free_port();
    let c3 = coordinator(
        &dir.path().join("three.db"),
        None,
        &["--metrics-listen", &format!("127.0.0.1:{metrics_port}")],
    );
    let _w: Vec<Proc> = (0..3)
        .map(|i| worker(&c3.url, &format!("w{i}"), &tiny_model(), &[]))
        .collect();
    let mut client = client(&c3.url, None).await;
    wait_workers(&mut client, 3).await;
    let job = submit(&mut client, request(&[ioi()], 16, 128, 42)).await;
    let status = wait_end(&mut client, &job).await;
    assert_eq!(status.state(), v1::JobState::Done, "{status:?}");
    assert_eq!((status.batches_done, status.batches_total), (8, 8));
    let (header, three) = scores(&mut client, &job, None).await;
    assert_eq!(header.n_edges as usize, expected.n_edges);

    let c1 = coordinator(&dir.path().join("one.db"), None, &[]);
    let _w1 = worker(&c1.url, "solo", &tiny_model(), &[]);
    let mut client1 = attrib_tests::client(&c1.url, None).await;
    let job1 = submit(&mut client1, request(&[ioi()], 16, 128, 42)).await;
    assert_eq!(
        wait_end(&mut client1, &job1).await.state(),
        v1::JobState::Done
    );
    let (_, one) = scores(&mut client1, &job1, None).await;

    assert_eq!(bits(&three), bits(&one), "3 workers vs 1 worker");
    assert_eq!(
        as_texts(&three),
        expected_text,
        "cluster vs attrib-worker attribute"
    );
    let ld = |json: &str| {
        json.split("\"clean_logit_diff\":")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap()
            .to_string()
    };
    let ref_json = std::fs::read_to_string(dir.path().join("reference.json")).unwrap();
    assert_eq!(ld(&header.metadata_json), ld(&ref_json));
    assert!(expected.clean_logit_diff.is_finite());

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
    let err = golden
        .iter()
        .zip(&three)
        .fold(0.0f64, |m, (g, s)| m.max((g - s).abs()));
    assert!(
        err / scale < 1e-5,
        "max |diff| / max |score| = {}",
        err / scale
    );

    // The CLI writes the same file.
    let out = dir.path().join("cli.json");
    let o = cli(&c3.url, &["scores", &job, "--out", out.to_str().unwrap()]);
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

    // Prometheus metrics are real.
    let text = http_get(metrics_port, "/metrics");
    assert!(text.contains("attrib_batches_done_total 8"), "{text}");
    assert!(text.contains("attrib_workers_connected 3"), "{text}");
    assert!(text.contains("attrib_batch_seconds_bucket"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (expected, _) = reference(dir.path());
    let c = coordinator(&dir.path().join("kill.db"), None, &[]);
    let mut victim = worker(
        &c.url,
        "victim",
        &tiny_model(),
        &["--batch-delay-ms", "400"],
    );
    let _survivor = worker(
        &c.url,
        "survivor",
        &tiny_model(),
        &["--batch-delay-ms", "400"],
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
        status.batches_retried >= 1,
        "the victim's batch was handed out again: {status:?}"
    );
    let (_, got) = scores(&mut client, &job, None).await;
    assert_eq!(as_texts(&got), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_worker_times_out_and_a_terminated_one_finishes_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (expected, _) = reference(dir.path());
    let c = coordinator(
        &dir.path().join("hang.db"),
        None,
        &["--batch-timeout-secs", "2"],
    );
    let victim = worker(
        &c.url,
        "victim",
        &tiny_model(),
        &["--batch-delay-ms", "300"],
    );
    let mut client = client(&c.url, None).await;
    wait_workers(&mut client, 1).await;
    let job = submit(&mut client, request(&[ioi()], 16, 128, 42)).await;
    wait_victim_busy(&mut client).await;
    victim.signal(libc::SIGSTOP); // hung: the connection stays open, nothing answers
    let mut polite = worker(
        &c.url,
        "polite",
        &tiny_model(),
        &["--batch-delay-ms", "300"],
    );
    let s = wait_for(&mut client, &job, |s| s.batches_retried >= 1).await;
    assert!(s.batches_retried >= 1);
    // SIGTERM: the batch in flight is answered, then the worker leaves with status 0.
    wait_for(&mut client, &job, |s| s.batches_done >= 2).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_coordinator_finishes_the_job_without_redoing_stored_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (expected, _) = reference(dir.path());
    let db = dir.path().join("restart.db");
    let mut c = coordinator(&db, None, &[]);
    let _w = worker(&c.url, "w", &tiny_model(), &["--batch-delay-ms", "250"]);
    let mut client = client(&c.url, None).await;
    let job = submit(&mut client, request(&[ioi()], 16, 128, 42)).await;
    wait_for(&mut client, &job, |s| s.batches_done >= 2).await;
    c.proc.signal(libc::SIGKILL);
    c.proc.wait_exit(Duration::from_secs(10));

    let c2 = coordinator(&db, Some(c.port), &[]);
    let mut client = attrib_tests::client(&c2.url, None).await;
    let status = wait_end(&mut client, &job).await;
    assert_eq!(status.state(), v1::JobState::Done, "{status:?}");
    assert!(status.batches_resumed >= 2, "{status:?}");
    assert!(
        status.batches_resumed < 8,
        "the job was still running at the kill: {status:?}"
    );
    assert_eq!(
        status.batches_resumed + status.batches_computed,
        8,
        "only the missing batches ran again: {status:?}"
    );
    let (_, got) = scores(&mut client, &job, None).await;
    assert_eq!(as_texts(&got), expected);
    drop(c);
}

/// A worker holding a batch now (the test kills or stops it).
async fn wait_victim_busy(client: &mut Client) {
    let t0 = std::time::Instant::now();
    loop {
        let busy = workers(client)
            .await
            .iter()
            .any(|w| w.name == "victim" && w.current_batch.is_some());
        if busy {
            return;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "victim never busy");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}
