//! Bit identity across device classes, with simulated workers of two classes whose values
//! differ as two kinds of device's do (`Synthetic::for_class`): every unit of a job is
//! computed on one class, so its scores are that class's fold bit for bit and the scores'
//! metadata names it; a job naming a class runs only there, and waits, saying so, while no
//! worker of it is connected; a result of another class is refused; a restart keeps the class.

use attrib_proto::{v1, ScoresMetadata};
use attrib_sim::cluster::{units_of, CoordinatorProc, SimPool};
use attrib_sim::{model, Fault, SimConfig, Synthetic};
use attrib_tests::*;

const A: &str = "sim-a+libtorch-1.0";
const B: &str = "sim-b+libtorch-1.0";

/// Workers of `class`, answering `rate` units a second each, with that class's values.
fn pool(url: &str, class: &str, rate: Option<f64>) -> SimPool {
    let cfg = SimConfig {
        url: url.to_string(),
        token: None,
        name: String::new(),
        identity: model::identity(&tiny_model()).unwrap(),
        device_class: class.into(),
        units_in_flight: 1,
        rate,
        fault: Fault::None,
    };
    SimPool::new(cfg, Synthetic::for_class(class))
}

fn named(class: &str, seed: u64) -> v1::SubmitJobRequest {
    v1::SubmitJobRequest {
        device_class: class.into(),
        ..request(&[ioi()], 16, 128, seed)
    }
}

/// The done job's scores are `class`'s fold of its units, bit for bit, and their metadata
/// names the class.
async fn assert_scores_of(client: &mut Client, job: &str, class: &str) {
    let st = wait_end(client, job).await;
    assert_eq!(st.state(), v1::JobState::Done, "{st:?}");
    assert_eq!(st.device_class, class, "{st:?}");
    let (header, got) = scores(client, job, None).await;
    let meta: ScoresMetadata = serde_json::from_str(&header.metadata_json).unwrap();
    assert_eq!(meta.device_class, class);
    let expected = Synthetic::for_class(class)
        .expected(got.len(), &units_of(&st, 16))
        .reduced();
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert!(
        bits(&got) == bits(&expected.scores),
        "{job}: not {class}'s bits"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_unit_of_a_job_is_computed_on_one_class() {
    let dir = tempfile::tempdir().unwrap();
    let c = coordinator(&dir.path().join("classes.db"), None, &[]);
    // Slow enough that the jobs overlap: both classes are busy at once.
    let (mut a, mut b) = (pool(&c.url, A, Some(40.0)), pool(&c.url, B, Some(40.0)));
    a.spawn(2);
    b.spawn(2);
    let mut client = client(&c.url, None).await;
    let mut jobs = Vec::new();
    for seed in 0..6 {
        jobs.push(submit(&mut client, request(&[ioi()], 16, 128, seed)).await);
    }
    let mut used = std::collections::BTreeSet::new();
    for job in &jobs {
        let class = wait_end(&mut client, job).await.device_class;
        let sent = (a.stats.units_of(job), b.stats.units_of(job));
        match class.as_str() {
            A => assert!(sent.0 >= 8 && sent.1 == 0, "{job} on {A}: {sent:?}"),
            B => assert!(sent.1 >= 8 && sent.0 == 0, "{job} on {B}: {sent:?}"),
            other => panic!("{job} ran on {other:?}"),
        }
        assert_scores_of(&mut client, job, &class).await;
        used.insert(class);
    }
    assert_eq!(used.len(), 2, "both classes computed jobs");
    // `attrib jobs` says where each ran.
    let out = cli(&c.url, &["jobs"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("  on sim-").count(), 6, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_naming_a_class_waits_for_it_while_other_workers_idle() {
    let dir = tempfile::tempdir().unwrap();
    let c = coordinator(&dir.path().join("named.db"), None, &[]);
    let mut a = pool(&c.url, A, None);
    a.spawn(2);
    let mut client = client(&c.url, None).await;
    wait_workers(&mut client, 2).await;
    let job = submit(&mut client, named(B, 1)).await;
    let waits = format!("no connected worker of class {B}");
    let st = wait_for(&mut client, &job, |s| s.waiting_for == waits).await;
    assert_eq!(
        (st.state(), st.device_class.as_str()),
        (v1::JobState::Queued, B)
    );
    let out = cli(&c.url, &["status", &job]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("(waiting: {waits})")), "{text}");
    // A job of no class meanwhile runs on the idle A workers.
    let other = submit(&mut client, request(&[ioi()], 16, 64, 2)).await;
    assert_scores_of(&mut client, &other, A).await;
    assert_eq!(job_status(&mut client, &job).await.units_done, 0);
    let mut b = pool(&c.url, B, None);
    b.spawn(1);
    assert_scores_of(&mut client, &job, B).await;
    assert_eq!(a.stats.units_of(&job), 0, "no A worker took a unit of it");
    // Bad classes are refused by the client, and by the coordinator for other clients.
    for bad in ["cuda sm90", "x/y", &"c".repeat(65)] {
        let out = cli(
            &c.url,
            &["submit", "--dataset", "x.json", "--device-class", bad],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("device class"),
            "{bad}: {err}"
        );
    }
    let e = client.submit_job(named("a;b", 3)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("device_class"), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_of_another_class_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = coordinator(&dir.path().join("wrong.db"), None, &["--max-attempts", "2"]);
    let mut a = pool(&c.url, A, None);
    a.spawn_faulty(Fault::WrongClass { unit: 2 });
    let mut client = client(&c.url, None).await;
    let job = submit(&mut client, request(&[ioi()], 16, 64, 4)).await;
    let st = wait_end(&mut client, &job).await;
    assert_eq!(st.state(), v1::JobState::Failed, "{st:?}");
    let why = format!(
        "sent a result computed on device class \"not-{A}\", but the job runs on \"{A}\" (2 times)"
    );
    assert!(
        st.error.contains("unit 2 (") && st.error.contains(&why),
        "{}",
        st.error
    );
    // Units 0 and 1 were folded (and maybe 3, if it was leased before 2 came back); 2 never.
    assert!((2..=3).contains(&st.units_done), "{st:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_coordinator_keeps_the_class_of_committed_units() {
    let dir = tempfile::tempdir().unwrap();
    let commits = ["--commit-interval-ms", "50"];
    let db = dir.path().join("restart.db");
    let mut c = CoordinatorProc::start(&bin("attrib-coordinator"), &tiny_model(), &db, 0, &commits)
        .unwrap();
    let mut a = pool(&c.url, A, Some(20.0));
    a.spawn(1);
    let mut client = client(&c.url, None).await;
    let job = submit(&mut client, request(&[ioi()], 16, 128, 5)).await;
    wait_for(&mut client, &job, |s| s.units_committed >= 2).await;
    drop(a);
    c.restart().unwrap();
    let mut client = attrib_tests::client(&c.url, None).await;
    let mut b = pool(&c.url, B, None);
    b.spawn(2);
    let waits = format!("no connected worker of class {A}");
    let st = wait_for(&mut client, &job, |s| s.waiting_for == waits).await;
    assert!(st.units_resumed >= 2 && st.device_class == A, "{st:?}");
    let mut a = pool(&c.url, A, None);
    a.spawn(1);
    assert_scores_of(&mut client, &job, A).await;
    assert_eq!(b.stats.units_of(&job), 0);
}
