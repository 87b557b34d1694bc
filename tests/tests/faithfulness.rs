//! Faithfulness on the cluster: `attrib faithfulness JOB` (units of test batches x circuit
//! groups spread over workers) gives the same curve, bit for bit, as `attrib-worker
//! faithfulness` on the same scores, and its ends are AutoCircuit's clean and corrupt metrics.

use std::process::{Command, Stdio};

use attrib_proto::{v1, FaithfulnessCurve};
use attrib_tests::*;

const EDGES: &str = "1,5,10,25,50,100";

fn read_curve(path: &std::path::Path) -> FaithfulnessCurve {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn faithfulness_in_process(scores: &std::path::Path, out: &std::path::Path) -> FaithfulnessCurve {
    let st = Command::new(bin("attrib-worker"))
        .arg("faithfulness")
        .arg("--model")
        .arg(tiny_model())
        .args(["--device", "cpu", "--edges", EDGES, "--scores"])
        .arg(scores)
        .arg("--out")
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "attrib-worker faithfulness failed");
    read_curve(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_curve_is_the_one_process_curve() {
    let dir = tempfile::tempdir().unwrap();
    let scores_file = dir.path().join("scores.json");
    attribute_in_process(&[ioi()], &scores_file, 16, 128, 42);
    let expected = faithfulness_in_process(&scores_file, &dir.path().join("inproc.json"));

    let c = coordinator(&dir.path().join("c.db"), None, &[]);
    let _w: Vec<Proc> = (0..2)
        .map(|i| worker(&c.url, &format!("w{i}"), &tiny_model(), &[]))
        .collect();
    let mut client = client(&c.url, None).await;
    let job = submit(&mut client, request(&[ioi()], 16, 128, 42)).await;
    assert_eq!(
        wait_end(&mut client, &job).await.state(),
        v1::JobState::Done
    );

    let out = dir.path().join("curve.json");
    let o = cli(
        &c.url,
        &[
            "faithfulness",
            &job,
            "--edges",
            EDGES,
            "--circuits-per-unit",
            "3",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let curve = read_curve(&out);

    // Same circuits, same per-prompt values, same exact reduction: identical numbers.
    assert_eq!(
        curve.points, expected.points,
        "cluster vs attrib-worker faithfulness"
    );
    assert_eq!(curve.clean_logit_diff, expected.clean_logit_diff);
    assert_eq!(curve.corrupt_logit_diff, expected.corrupt_logit_diff);
    assert_eq!((curve.n_prompts, curve.total_edges), (128, 110));
    assert_eq!(curve.scores_from, job);

    // The ends are AutoCircuit's test-split metrics (float32 tolerance).
    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tiny_model().join("golden_faithfulness.json")).unwrap(),
    )
    .unwrap();
    let clean = golden["clean_logit_diff"].as_f64().unwrap();
    let corrupt = golden["corrupt_logit_diff"].as_f64().unwrap();
    assert!((curve.clean_logit_diff - clean).abs() < 2e-5);
    assert!((curve.corrupt_logit_diff - corrupt).abs() < 2e-5);
    let (first, last) = (&curve.points[0], curve.points.last().unwrap());
    assert_eq!((first.n_edges, last.n_edges), (0, 110));
    assert!((first.mean_logit_diff - corrupt).abs() < 2e-5);
    assert!((last.mean_logit_diff - clean).abs() < 2e-5);

    // The faithfulness job is listed as such, with test prompts counted once.
    let list = cli(&c.url, &["--json", "jobs"]);
    let jobs: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let f = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["kind"] == "faithfulness")
        .expect("a faithfulness job");
    assert_eq!(f["scores_job_id"], job.as_str());
    assert_eq!(f["units_total"], 24); // 8 test batches (K = 1) x 3 groups of 3 circuits
    assert_eq!(f["datasets"][0]["train_prompts"], 128);
    let fjob = f["job_id"].as_str().unwrap().to_string();

    // `attrib curve` finds the curve from either job.
    for id in [&job, &fjob] {
        let p = dir.path().join(format!("{id}.json"));
        let o = cli(&c.url, &["curve", id, "--out", p.to_str().unwrap()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(read_curve(&p), curve);
    }

    // The client draws a job's circuit and reports it with its newest curve.
    let svg = dir.path().join("circuit.svg");
    let o = cli(
        &c.url,
        &["render", &job, "--top", "5", "--out", svg.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert_eq!(svg.matches("class=\"edge\"").count(), 5);
    let html = dir.path().join("report.html");
    let o = cli(&c.url, &["report", &job, "--out", html.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(&html).unwrap();
    assert!(
        html.contains(&job) && html.contains("class=\"curve\""),
        "report with its curve"
    );

    // Wrong uses are refused with their exit codes: no curve (4), scores of a faithfulness
    // job or faithfulness of a faithfulness job (3), an unknown job (4).
    let refused = |args: &[&str]| cli(&c.url, args).status.code();
    assert_eq!(refused(&["curve", "job-999999"]), Some(4));
    assert_eq!(refused(&["scores", &fjob, "--out", "/dev/null"]), Some(3));
    assert_eq!(refused(&["faithfulness", &fjob, "--edges", "1"]), Some(3));
    assert_eq!(refused(&["faithfulness", "job-999999"]), Some(4));
    assert_eq!(refused(&["render", "job-999999"]), Some(4));
}

/// Drawing a scores file needs no coordinator: PNG and report work with none running.
#[test]
fn render_and_report_work_offline() {
    let dir = tempfile::tempdir().unwrap();
    let scores = dir.path().join("scores.json");
    attribute_in_process(&[ioi()], &scores, 16, 32, 42);
    let nowhere = "http://127.0.0.1:9"; // nothing listens there
    let png = dir.path().join("c.png");
    let o = cli(
        nowhere,
        &[
            "render",
            scores.to_str().unwrap(),
            "--threshold",
            "0.1",
            "--out",
            png.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read(&png)
        .unwrap()
        .starts_with(b"\x89PNG\r\n\x1a\n"));
    let html = dir.path().join("r.html");
    let o = cli(
        nowhere,
        &[
            "report",
            scores.to_str().unwrap(),
            "--out",
            html.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read_to_string(&html)
        .unwrap()
        .contains("attrib faithfulness"));
    // A missing file is named, not mistaken for a job on an unreachable coordinator.
    let o = cli(nowhere, &["render", "missing/scores.json"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no scores file missing/scores.json"));
}
