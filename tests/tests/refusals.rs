//! Bad input and bad actors get clear errors and break nothing: a worker with another model,
//! a wrong or missing token, a malformed dataset, an unknown job, an oversized request.
//! Also: many clients at once, several datasets in one job, and the CLI's exit codes.

use std::time::Duration;

use attrib_proto::v1;
use attrib_tests::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_clear_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = coordinator(
        &dir.path().join("r.db"),
        None,
        &["--token", "s3cret", "--max-request-mib", "1"],
    );
    let _w = worker(&c.url, "good", &tiny_model(), &["--token", "s3cret"]);
    let mut ok = client(&c.url, Some("s3cret")).await;
    let job = submit(&mut ok, request(&[ioi()], 16, 32, 42)).await;
    assert_eq!(wait_end(&mut ok, &job).await.state(), v1::JobState::Done);
    let (_, before) = scores(&mut ok, &job, None).await;

    // Tokens.
    for token in [None, Some("s3cre"), Some("s3cret-and-more")] {
        let mut bad = client(&c.url, token).await;
        let e = bad.list_jobs(v1::ListJobsRequest {}).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{token:?}: {e:?}");
    }
    let mut w = worker(&c.url, "no-token", &tiny_model(), &[]);
    assert!(!w.wait_exit(Duration::from_secs(60)).success());
    assert!(w.stderr().contains("needs a token"));

    // Another model: same shape, one byte of config differs.
    let other = dir.path().join("other-model");
    std::fs::create_dir(&other).unwrap();
    for f in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(tiny_model().join(f), other.join(f)).unwrap();
    }
    let cfg = std::fs::read_to_string(tiny_model().join("config.json")).unwrap();
    std::fs::write(other.join("config.json"), format!("{cfg}\n")).unwrap();
    let mut w = worker(&c.url, "stranger", &other, &["--token", "s3cret"]);
    assert!(!w.wait_exit(Duration::from_secs(60)).success());
    let err = w.stderr();
    assert!(
        err.contains("refused") && err.contains("fingerprint"),
        "{err}"
    );

    // Malformed dataset, unknown job, oversized request, missing settings.
    let mut req = request(&[ioi()], 16, 32, 42);
    req.datasets[0].files[0].json = "{\"prompts\": [{\"clean\": 1}]}".into();
    let e = ok.submit_job(req).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("malformed prompt file") && e.message().contains("ioi_vanilla"),
        "{e:?}"
    );
    let e = ok
        .get_job(v1::GetJobRequest {
            job_id: "job-999999".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("job-999999"));
    let mut big = request(&[ioi()], 16, 32, 42);
    big.label = "x".repeat(2 << 20);
    let e = ok.submit_job(big).await.unwrap_err();
    assert!(
        matches!(e.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{e:?}"
    );
    let mut no_settings = request(&[ioi()], 16, 32, 42);
    no_settings.settings = None;
    let e = ok.submit_job(no_settings).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("settings"), "{e:?}");
    let mut too_many = request(&[ioi()], 16, 32, 42);
    too_many.data.as_mut().unwrap().train_size = 100_000;
    let e = ok.submit_job(too_many).await.unwrap_err();
    assert!(e.message().contains("asked for"), "{e:?}");
    let e = ok
        .get_scores(v1::GetScoresRequest {
            job_id: job.clone(),
            dataset: Some(3),
            chunk_size: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // Nothing crashed and nothing stored was lost.
    assert!(c.proc_alive());
    let (_, after) = scores(&mut ok, &job, None).await;
    assert_eq!(before, after);
    let jobs = ok
        .list_jobs(v1::ListJobsRequest {})
        .await
        .unwrap()
        .into_inner()
        .jobs;
    assert_eq!(jobs.len(), 1, "refused jobs are not stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_clients_at_once_are_all_served() {
    let dir = tempfile::tempdir().unwrap();
    let (expected, _) = attribute_in_process(&[ioi()], &dir.path().join("ref.json"), 16, 32, 42);
    let c = coordinator(&dir.path().join("many.db"), None, &[]);
    let _w: Vec<Proc> = (0..2)
        .map(|i| worker(&c.url, &format!("w{i}"), &tiny_model(), &[]))
        .collect();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let url = c.url.clone();
            tokio::spawn(async move {
                let mut cl = client(&url, None).await;
                let seed = 42 + (i % 2) as u64;
                let job = submit(&mut cl, request(&[ioi()], 16, 32, seed)).await;
                let st = wait_end(&mut cl, &job).await;
                assert_eq!(st.state(), v1::JobState::Done, "{st:?}");
                let got = cl
                    .get_job(v1::GetJobRequest {
                        job_id: job.clone(),
                    })
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(got.job.unwrap().job_id, job);
                (seed, scores(&mut cl, &job, None).await.1)
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("client task"));
    }
    for (seed, got) in &results {
        if *seed == 42 {
            assert_eq!(as_texts(got), expected);
        }
    }
    let other: Vec<&Vec<f64>> = results.iter().filter(|r| r.0 == 43).map(|r| &r.1).collect();
    assert!(other.windows(2).all(|w| w[0] == w[1]));
    assert_ne!(
        as_texts(other[0]),
        expected,
        "a different seed picks different prompts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_datasets_in_one_job_score_per_dataset_and_combined() {
    let dir = tempfile::tempdir().unwrap();
    let second = repo().join("datasets/ioi/ioi_ABBA_template_0_prompts.json");
    let (a, _) = attribute_in_process(&[ioi()], &dir.path().join("a.json"), 16, 32, 42);
    let (b, _) = attribute_in_process(
        std::slice::from_ref(&second),
        &dir.path().join("b.json"),
        16,
        32,
        42,
    );
    let c = coordinator(
        &dir.path().join("multi.db"),
        None,
        &["--spawn-workers", "2", "--worker-devices", "cpu"],
    );
    let mut cl = client(&c.url, None).await;
    let job = submit(&mut cl, request(&[ioi(), second], 16, 32, 42)).await;
    let st = wait_end(&mut cl, &job).await;
    assert_eq!(st.state(), v1::JobState::Done, "{st:?}");
    assert_eq!(st.datasets.len(), 2);
    assert_eq!(st.datasets[1].units_done, 2);
    let (_, s0) = scores(&mut cl, &job, Some(0)).await;
    let (_, s1) = scores(&mut cl, &job, Some(1)).await;
    let (h, all) = scores(&mut cl, &job, None).await;
    assert_eq!(as_texts(&s0), a);
    assert_eq!(as_texts(&s1), b);
    let meta: attrib_proto::ScoresMetadata = serde_json::from_str(&h.metadata_json).unwrap();
    assert_eq!(meta.data.files.len(), 2);
    // Combined = the exact sum of both datasets' exact sums, rounded once; the per-dataset
    // scores are each rounded once, so their f64 sum is within two roundings of it.
    for ((x, y), z) in zip_eq(
        zip_eq(&s0, &s1, "datasets' scores"),
        &all,
        "combined scores",
    ) {
        assert!(
            (x + y - z).abs() <= 2.0 * f64::EPSILON * (x.abs() + y.abs()),
            "{x} + {y} vs {z}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reports_with_exit_codes_scripts_can_trust() {
    let dir = tempfile::tempdir().unwrap();
    let c = coordinator(
        &dir.path().join("cli.db"),
        None,
        &["--spawn-workers", "1", "--worker-devices", "cpu"],
    );
    let ds = ioi();
    let o = cli(
        &c.url,
        &[
            "submit",
            "--dataset",
            ds.to_str().unwrap(),
            "--train-size",
            "32",
            "--wait",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(st["state"], "done");
    let job = st["job_id"].as_str().unwrap().to_string();
    let o = cli(&c.url, &["jobs", "--json"]);
    let jobs: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(jobs[0]["job_id"], job.as_str());
    let o = cli(&c.url, &["status", &job]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("done"));
    let o = cli(&c.url, &["status", "job-424242"]);
    assert_eq!(o.status.code(), Some(4), "unknown job");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "not json").unwrap();
    let o = cli(&c.url, &["submit", "--dataset", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "invalid input");
    assert!(String::from_utf8_lossy(&o.stderr).contains("malformed prompt file"));
    let o = cli("http://127.0.0.1:1", &["jobs"]);
    assert_eq!(o.status.code(), Some(5), "unreachable");
    let o = cli(
        &c.url,
        &[
            "scores",
            &job,
            "--out",
            dir.path().join("s.json").to_str().unwrap(),
        ],
    );
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("top 10 edges"));
}
