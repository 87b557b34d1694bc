//! The IOI model's agreement table (its README, and docs/methods.md) from the cluster's own
//! scores: two workers compute AutoCircuit's quickstart, clean-corrupted, EAP-IG-inputs and
//! EAP-IG-activations (5 steps) and exact patching on the 128 train prompts, and
//! `attrib compare` against exact patching gives the table's numbers. Also the faithfulness
//! claims of the README's picture and docs/methods.md: EAP-IG-inputs' 10 strongest edges keep
//! 86% of the clean-to-corrupt gap on the test prompts, AutoCircuit's quickstart's none (-8%),
//! and ACDC's 12 kept edges 89%.

use attrib_proto::{v1, AttributionSettings, FaithfulnessCurve, Method};
use attrib_tests::*;

/// (name, method, the docs/methods.md row: Spearman, AUC at top 5 / 10 / 20).
fn rows() -> Vec<(&'static str, Method, [f64; 4])> {
    vec![
        ("EAP", Method::MaskGradient, [0.878, 0.714, 0.756, 0.873]),
        (
            "clean-corrupted",
            Method::CleanCorrupted,
            [0.916, 0.886, 0.926, 0.952],
        ),
        (
            "EAP-IG-inputs",
            Method::EapIgInputs { steps: 5 },
            [0.949, 1.000, 0.975, 0.978],
        ),
        (
            "EAP-IG-activations",
            Method::EapIgActivations { steps: 5 },
            [0.955, 0.975, 0.949, 0.964],
        ),
    ]
}

fn job_request(method: Method) -> v1::SubmitJobRequest {
    let mut req = request(&[ioi()], 16, 128, 42);
    req.settings = Some(
        (&AttributionSettings {
            method,
            ..Default::default()
        })
            .into(),
    );
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_reproduces_the_ioi_models_agreement_table() {
    let dir = tempfile::tempdir().unwrap();
    let c = coordinator_on(&ioi_model(), &dir.path().join("c.db"), None, &[]);
    let _w: Vec<Proc> = (0..2)
        .map(|i| worker(&c.url, &format!("w{i}"), &ioi_model(), &[]))
        .collect();
    let mut client = client(&c.url, None).await;
    wait_workers(&mut client, 2).await;
    let path = |name: &str| dir.path().join(format!("{name}.json"));
    let mut jobs = Vec::new();
    let acdc = Method::Acdc {
        taus: vec![0.001, 0.002, 0.005, 0.01, 0.02, 0.05],
    };
    let all = rows()
        .into_iter()
        .map(|(name, method, _)| (name, method))
        .chain([("exact", Method::Exact), ("ACDC", acdc)]);
    for (name, method) in all {
        let job = submit(&mut client, job_request(method)).await;
        let status = wait_end(&mut client, &job).await;
        assert_eq!(status.state(), v1::JobState::Done, "{name}: {status:?}");
        let o = cli(
            &c.url,
            &["scores", &job, "--out", path(name).to_str().unwrap()],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        jobs.push((name, job));
    }

    let report = dir.path().join("compare.json");
    let mut args = vec![
        "compare".to_string(),
        "--reference".into(),
        format!("exact={}", path("exact").display()),
        "--json-out".into(),
        report.display().to_string(),
    ];
    args.extend(
        rows()
            .iter()
            .map(|(name, _, _)| format!("{name}={}", path(name).display())),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = cli(&c.url, &args);
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    eprintln!("{table}");
    let got: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let want_rows = rows();
    let pairs = zip_eq(
        &want_rows,
        got["rows"].as_array().unwrap(),
        "the table's rows and compare's",
    );
    for ((name, _, want), row) in pairs {
        assert_eq!(row["method"], *name);
        let mut ours = vec![row["spearman"].as_f64().unwrap()];
        ours.extend(
            row["auc"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap()),
        );
        for (o, w) in zip_eq(&ours, want, "Spearman and AUCs") {
            // The README prints 3 decimals.
            assert!((o - w).abs() <= 0.0005, "{name}: {ours:?} vs {want:?}");
        }
    }

    // The README's faithfulness claims, on the 128 test prompts.
    for (name, edges, want) in [
        ("EAP-IG-inputs", 10, 0.863),
        ("EAP", 10, -0.080),
        ("ACDC", 12, 0.893),
    ] {
        let job = &jobs.iter().find(|(n, _)| *n == name).unwrap().1;
        let out = dir.path().join(format!("curve-{name}.json"));
        let o = cli(
            &c.url,
            &[
                "faithfulness",
                job,
                "--edges",
                &edges.to_string(),
                "--out",
                out.to_str().unwrap(),
            ],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let curve: FaithfulnessCurve =
            serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        let point = curve
            .points
            .iter()
            .find(|p| p.requested_edges == edges)
            .unwrap();
        assert!(
            (point.fraction_of_gap - want).abs() < 0.0005,
            "{name}, {edges} edges: {} of the gap, README says {want}",
            point.fraction_of_gap
        );
    }
}
