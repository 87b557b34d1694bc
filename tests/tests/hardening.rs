//! The coordinator's defences, each against the real processes: admission limits refused at
//! submit naming the limit, cancellation reaching the worker computing the job, a client
//! token that cannot open a worker session, TLS with worker certificates made at test time,
//! and a damaged or full database. (Bounded attempts: `units.rs` and `cluster.rs`.)

use std::path::Path;
use std::time::Duration;

use attrib_proto::auth::AttachToken;
use attrib_proto::tls::ClientTls;
use attrib_proto::v1;
use attrib_proto::v1::attribution_settings::Points;
use attrib_tests::*;
use tonic::Code;

fn with_ig(mut req: v1::SubmitJobRequest, samples: u32) -> v1::SubmitJobRequest {
    req.settings.as_mut().unwrap().points = Some(Points::IntegratedGradSamples(samples));
    req
}

async fn workers(client: &mut Client) -> Vec<v1::WorkerInfo> {
    client
        .list_workers(v1::ListWorkersRequest {})
        .await
        .unwrap()
        .into_inner()
        .workers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_jobs_and_memory_over_their_limits_are_refused_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let flags = [
        "--max-active-jobs",
        "1",
        "--max-queued-jobs",
        "1",
        "--max-ig-samples",
        "100",
    ];
    let c = coordinator(&dir.path().join("limits.db"), None, &flags);
    let mut client = client(&c.url, None).await;

    let e = client
        .submit_job(with_ig(request(&[ioi()], 16, 32, 42), 1_000_000_000))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(
        e.message(),
        "integrated-gradient samples 1000000000 is over the limit (--max-ig-samples 100)"
    );
    let e = client
        .submit_job(request(&[ioi()], 5000, 32, 42))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("--max-batch-size 1024"), "{e:?}");

    // One active job and one queued; the third waits for room.
    let first = submit(&mut client, request(&[ioi()], 16, 32, 42)).await;
    let second = submit(&mut client, request(&[ioi()], 16, 32, 42)).await;
    let e = client
        .submit_job(request(&[ioi()], 16, 32, 42))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(e.message().contains("--max-queued-jobs 1"), "{e:?}");
    for job in [first, second] {
        client
            .cancel_job(v1::CancelJobRequest { job_id: job })
            .await
            .unwrap();
    }

    // A worker declaring 1 MiB cannot hold a unit: the job is refused with the estimate.
    let small = worker(&c.url, "small", &tiny_model(), &["--memory-mib", "1"]);
    wait_workers(&mut client, 1).await;
    assert_eq!(workers(&mut client).await[0].memory_bytes, 1 << 20);
    let e = client
        .submit_job(request(&[ioi()], 16, 32, 42))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(
        e.message().contains("a unit of this job needs about")
            && e.message().contains("declared 1.0 MiB"),
        "{e:?}"
    );
    small.signal(libc::SIGKILL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_jobs_unit_stops_on_its_worker_which_takes_other_work() {
    let dir = tempfile::tempdir().unwrap();
    let c = coordinator(&dir.path().join("cancel.db"), None, &[]);
    // 400 ms before each pass: job A's unit, integrated gradients over 21 points, takes
    // more than 8 s; job B's unit takes one pass. The worker counts what became of its units.
    let metrics = free_port();
    let listen = format!("127.0.0.1:{metrics}");
    let _w = worker(
        &c.url,
        "slow",
        &tiny_model(),
        &[
            "--unit-delay-ms",
            "400",
            "--units-in-flight",
            "1",
            "--metrics-listen",
            &listen,
        ],
    );
    let mut client = client(&c.url, None).await;
    let a = submit(&mut client, with_ig(request(&[ioi()], 16, 16, 42), 20)).await;
    wait_workers_until(&mut client, "A's unit handed out", |ws| {
        ws.first().is_some_and(|w| !w.current_units.is_empty())
    })
    .await;
    client
        .cancel_job(v1::CancelJobRequest { job_id: a.clone() })
        .await
        .unwrap();
    let b = submit(&mut client, request(&[ioi()], 16, 16, 42)).await;
    assert_eq!(wait_end(&mut client, &b).await.state(), v1::JobState::Done);
    // The worker stopped A's unit and then computed B's: one unit cancelled, one done. Had
    // the cancellation not reached it, A's unit would have run its 21 passes to the end
    // first (counted done, and B after it), however long the machine took.
    let m = http_get(metrics, "/metrics");
    let units = |outcome: &str| {
        counter(
            &m,
            &format!("attrib_worker_units_total{{outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(
        (units("cancelled"), units("done"), units("failed")),
        (1.0, 1.0, 0.0),
        "the worker's units (cancelled, done, failed):\n{m}"
    );
    let a = job_status(&mut client, &a).await;
    assert_eq!(a.state(), v1::JobState::Cancelled, "{a:?}");
    assert_eq!(a.units_done, 0, "A's unit was not finished: {a:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_token_cannot_open_a_worker_session_nor_a_worker_token_submit() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = [
        "--token",
        "client-secret",
        "--worker-token",
        "worker-secret",
    ];
    let c = coordinator(&dir.path().join("roles.db"), None, &tokens);
    let mut impostor = worker(
        &c.url,
        "impostor",
        &tiny_model(),
        &["--token", "client-secret"],
    );
    assert!(!impostor.wait_exit(Duration::from_secs(60)).success());
    let err = impostor.stderr();
    assert!(err.contains("wrong token"), "{err}");

    let mut as_worker = client(&c.url, Some("worker-secret")).await;
    let e = as_worker
        .list_jobs(v1::ListJobsRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);

    let _w = worker(&c.url, "real", &tiny_model(), &["--token", "worker-secret"]);
    let mut ok = client(&c.url, Some("client-secret")).await;
    let job = submit(&mut ok, request(&[ioi()], 16, 32, 42)).await;
    assert_eq!(wait_end(&mut ok, &job).await.state(), v1::JobState::Done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_clients_with_the_ca_and_workers_with_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let [ca, cert, key, worker_cert, worker_key] = certificates(dir.path());
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let flags = [
        "--tls-cert".to_string(),
        s(&cert),
        "--tls-key".into(),
        s(&key),
        "--worker-ca".into(),
        s(&ca),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let c = coordinator(&dir.path().join("tls.db"), None, &flags);
    assert!(c.url.starts_with("https://127.0.0.1:"), "{}", c.url);

    // Plain text to a TLS listener gets nowhere.
    let plain = c.url.replacen("https", "http", 1);
    let refused = tokio::time::timeout(Duration::from_secs(10), async {
        let ch = tonic::transport::Endpoint::from_shared(plain)
            .unwrap()
            .connect()
            .await?;
        let mut cl = v1::attrib_client::AttribClient::new(ch);
        cl.list_jobs(v1::ListJobsRequest {}).await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    })
    .await;
    assert!(!matches!(refused, Ok(Ok(()))), "plain text was served");

    let tls = ClientTls {
        ca_file: Some(ca.clone()),
        ..Default::default()
    };
    let endpoint = tonic::transport::Endpoint::from_shared(c.url.clone()).unwrap();
    let channel = tls
        .apply(endpoint, &c.url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client =
        v1::attrib_client::AttribClient::with_interceptor(channel, AttachToken::new(None).unwrap());

    let ca_flag = ["--ca-file", ca.to_str().unwrap()];
    let mut anonymous = worker(&c.url, "anonymous", &tiny_model(), &ca_flag);
    assert!(!anonymous.wait_exit(Duration::from_secs(60)).success());
    let err = anonymous.stderr();
    assert!(err.contains("client certificate"), "{err}");

    let with_cert = [
        ca_flag[0],
        ca_flag[1],
        "--tls-cert",
        worker_cert.to_str().unwrap(),
        "--tls-key",
        worker_key.to_str().unwrap(),
    ];
    let _w = worker(&c.url, "certified", &tiny_model(), &with_cert);
    let job = submit(&mut client, request(&[ioi()], 16, 32, 42)).await;
    assert_eq!(
        wait_end(&mut client, &job).await.state(),
        v1::JobState::Done
    );
}

#[test]
fn a_damaged_database_is_reported_and_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("damaged.db");
    let garbage: Vec<u8> = (0..16384u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(&db, &garbage).unwrap();
    let err = coordinator_refusal(&db);
    assert!(
        err.contains("damaged.db")
            && err.contains("not a database")
            && err.contains("left as it is"),
        "{err}"
    );
    assert_eq!(std::fs::read(&db).unwrap(), garbage, "the file was changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_database_refuses_new_jobs_and_keeps_serving_what_it_stored() {
    let dir = tempfile::tempdir().unwrap();
    let c = coordinator(&dir.path().join("full.db"), None, &["--max-db-mib", "1"]);
    let _w = worker(&c.url, "w", &tiny_model(), &[]);
    let mut client = client(&c.url, None).await;
    let first = submit(&mut client, request(&[ioi()], 16, 16, 42)).await;
    assert_eq!(
        wait_end(&mut client, &first).await.state(),
        v1::JobState::Done
    );
    let (_, stored) = scores(&mut client, &first, None).await;
    // Each different prompt file is stored once (about 150 KB): the database fills within
    // 1 MiB.
    let mut refused = None;
    for file in distinct_ioi_files(10) {
        match client.submit_job(request(&[file], 16, 16, 42)).await {
            Ok(r) => {
                let id = r.into_inner().job_id;
                wait_end(&mut client, &id).await;
            }
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let e = refused.expect("a 1 MiB database never filled");
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(e.message().contains("--max-db-mib 1"), "{e:?}");
    let (_, again) = scores(&mut client, &first, None).await;
    assert_eq!(stored, again, "stored scores stay readable");
}
