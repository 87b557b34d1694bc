//! EAP-IG's methods, exact patching and ACDC through the cluster: the same bits as
//! `attrib-worker attribute` with the same settings, for one worker, three workers and a
//! node group of two CPU devices; exact patching cut into groups of edges, ACDC into τ values.

use attrib_proto::{v1, AttributionSettings, Method};
use attrib_tests::*;

/// `(method flags of attrib-worker attribute, the method)`.
fn methods() -> Vec<(Vec<&'static str>, Method)> {
    vec![
        (vec!["--method", "exact"], Method::Exact),
        (
            vec!["--method", "eap-ig-inputs", "--steps", "3"],
            Method::EapIgInputs { steps: 3 },
        ),
        (vec!["--method", "clean-corrupted"], Method::CleanCorrupted),
        (
            vec!["--method", "eap-ig-activations", "--steps", "2"],
            Method::EapIgActivations { steps: 2 },
        ),
        (
            vec!["--method", "acdc", "--taus", "0.001,0.01,0.005"],
            Method::Acdc {
                taus: vec![0.001, 0.01, 0.005],
            },
        ),
    ]
}

fn with_method(method: Method, edges_per_unit: u32) -> v1::SubmitJobRequest {
    let mut req = request(&[ioi()], 16, 64, 42);
    req.settings = Some(
        (&AttributionSettings {
            method,
            ..Default::default()
        })
            .into(),
    );
    req.data.as_mut().unwrap().edges_per_unit = edges_per_unit;
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_gives_the_bits_of_one_process_on_any_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let expected: Vec<Vec<String>> = methods()
        .iter()
        .enumerate()
        .map(|(i, (flags, _))| {
            let out = dir.path().join(format!("reference-{i}.json"));
            attribute_in_process_with(&[ioi()], &out, 16, 64, 42, flags).0
        })
        .collect();
    for (setup, workers) in [
        ("1 worker", vec!["cpu"]),
        ("3 workers", vec!["cpu"; 3]),
        ("a group of 2 devices", vec!["cpu,cpu"]),
    ] {
        let db = dir.path().join(format!("{}.db", workers.len()));
        let c = coordinator(&db, None, &[]);
        let _w: Vec<Proc> = workers
            .iter()
            .enumerate()
            .map(|(i, devices)| worker_on(&c.url, &format!("w{i}"), &tiny_model(), devices, &[]))
            .collect();
        let mut client = client(&c.url, None).await;
        wait_workers(&mut client, workers.len()).await;
        for ((_, method), want) in zip_eq(methods(), &expected, "methods and references") {
            // Exact patching: 110 edges in groups of 40, rounded up to 64 (two passes of 32
            // edges): 2 groups x 4 batches.
            let per_unit = if method == Method::Exact { 40 } else { 0 };
            let job = submit(&mut client, with_method(method.clone(), per_unit)).await;
            let status = wait_end(&mut client, &job).await;
            assert_eq!(
                status.state(),
                v1::JobState::Done,
                "{setup}, {method}: {status:?}"
            );
            // ACDC: one unit per τ on the first batch.
            let (units, prompts) = match method {
                Method::Exact => (8, 64),
                Method::Acdc { .. } => (3, 16),
                _ => (4, 64),
            };
            assert_eq!(status.units_total, units, "{setup}, {method}");
            assert_eq!(
                status.prompts_done, prompts,
                "{setup}, {method}: prompts count once"
            );
            let (_, got) = scores(&mut client, &job, None).await;
            assert_eq!(
                &as_texts(&got),
                want,
                "{setup}, {method} vs attrib-worker attribute"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_method_settings_are_refused_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let c = coordinator(
        &dir.path().join("c.db"),
        None,
        &["--max-exact-patches", "1000"],
    );
    let mut client = client(&c.url, None).await;
    let refusal = |r: Result<tonic::Response<v1::SubmitJobResponse>, tonic::Status>| {
        r.expect_err("refused").message().to_string()
    };
    let mut zero_steps = with_method(Method::EapIgInputs { steps: 1 }, 0);
    zero_steps.settings.as_mut().unwrap().steps = 0;
    let e = refusal(client.submit_job(zero_steps).await);
    assert!(
        e.contains("eap-ig-inputs needs --steps of at least 1"),
        "{e}"
    );
    let mut points = with_method(Method::Eap, 0);
    points.settings.as_mut().unwrap().points =
        Some(v1::attribution_settings::Points::IntegratedGradSamples(5));
    let e = refusal(client.submit_job(points).await);
    assert!(e.contains("eap takes no mask value"), "{e}");
    let e = refusal(client.submit_job(with_method(Method::Exact, 0)).await);
    assert!(
        e.contains("exact-patching evaluations (edges x prompts) 7040")
            && e.contains("--max-exact-patches 1000"),
        "{e}"
    );
    let e = refusal(
        client
            .submit_job(with_method(Method::CleanCorrupted, 40))
            .await,
    );
    assert!(e.contains("method clean-corrupted takes none"), "{e}");
    // The client refuses before sending anything.
    let dataset = ioi();
    for (flags, why) in [
        (&["--method", "eap-ig-activations"][..], "needs --steps"),
        (
            &["--method", "acdcx"],
            "invalid value 'acdcx' for '--method",
        ),
        (
            &["--method", "acdc", "--token-positions"],
            "acdc takes no --token-positions",
        ),
    ] {
        let mut args = vec!["submit", "--dataset", dataset.to_str().unwrap()];
        args.extend(flags);
        let o = cli(&c.url, &args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.code() == Some(2) && err.contains(why),
            "{flags:?}: {err}"
        );
    }
    // ACDC on two datasets, refused by the coordinator.
    let mut two = request(&[ioi(), ioi()], 16, 64, 42);
    two.settings = with_method(Method::Acdc { taus: vec![0.01] }, 0).settings;
    let e = refusal(client.submit_job(two).await);
    assert!(e.contains("ACDC runs on one dataset's first batch"), "{e}");
}

/// A unit longer than the unit timeout (36 passes of at least 300 ms against 5 s) is not
/// taken for a hung worker: the worker reports finished passes (`UnitProgress`) every quarter
/// of the timeout. Without them the unit would time out three times and fail its job. The
/// timeout leaves room for a loaded machine: only a stall of about 3.5 s between two progress
/// reports (5 s less a quarter of it and a pass) would look hung.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_longer_than_the_timeout_finish_while_passes_go_on() {
    const TIMEOUT_SECS: f64 = 5.0;
    let dir = tempfile::tempdir().unwrap();
    let c = coordinator(
        &dir.path().join("c.db"),
        None,
        &["--unit-timeout-secs", &TIMEOUT_SECS.to_string()],
    );
    let _w = worker(&c.url, "slow", &tiny_model(), &["--unit-delay-ms", "300"]);
    let mut client = client(&c.url, None).await;
    wait_workers(&mut client, 1).await;
    let mut req = request(&[ioi()], 16, 16, 42);
    req.settings.as_mut().unwrap().points =
        Some(v1::attribution_settings::Points::IntegratedGradSamples(35));
    let job = submit(&mut client, req).await;
    let status = wait_end(&mut client, &job).await;
    assert_eq!(status.state(), v1::JobState::Done, "{status:?}");
    assert_eq!(status.units_total, 1, "{status:?}");
    // The one unit really outlived the timeout (36 passes after a 300 ms wait each: at least
    // 10.8 s, however fast the machine), so the test means what it says.
    assert!(
        status.running_seconds > TIMEOUT_SECS,
        "the unit took {} s, not longer than the {TIMEOUT_SECS} s timeout: {status:?}",
        status.running_seconds
    );
    assert_eq!(
        status.units_retried, 0,
        "the unit was taken for hung: {status:?}"
    );
    let w = workers(&mut client).await;
    assert_eq!(
        w[0].worker_id, "worker-1",
        "the worker's session was closed: {w:?}"
    );
}
