//! The unit protocol against misbehaving and simulated workers (`attrib-sim`, the real worker
//! protocol with synthetic sums): a late duplicate counts once; a value the exact sum cannot
//! hold is refused, each attempt naming the worker, and fails its job after its attempts; a
//! unit that crashes every worker that takes it fails its job after its attempts; a
//! faithfulness job's scores go to a worker once; and a token-wise GPT-2-small job's
//! database stays within three accumulators.

use attrib_proto::v1;
use attrib_sim::cluster::{units_of, CoordinatorProc, DbWatch, SimPool};
use attrib_sim::{model, Fault, SimConfig, Synthetic};
use attrib_tests::*;

/// Edges of the golden tiny model's graph (2 layers, 4 heads, separate Q/K/V).
const TINY_EDGES: usize = 110;

fn sim_config(url: &str, model_dir: &std::path::Path) -> SimConfig {
    SimConfig {
        url: url.to_string(),
        token: None,
        name: "sim".into(),
        identity: model::identity(model_dir).unwrap(),
        device_class: attrib_sim::SIM_CLASS.into(),
        units_in_flight: 2,
        rate: None,
        fault: Fault::None,
    }
}

/// The job's combined scores (`n_edges` of them) equal the in-process fold of the same
/// synthetic results.
async fn assert_synthetic_scores(
    client: &mut Client,
    job: &str,
    synthetic: &Synthetic,
    n_edges: usize,
) {
    let st = wait_end(client, job).await;
    assert_eq!(st.state(), v1::JobState::Done, "{st:?}");
    let (_, got) = scores(client, job, None).await;
    assert_eq!(got.len(), n_edges);
    let expected = synthetic.expected(got.len(), &units_of(&st, 16)).reduced();
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&got), bits(&expected.scores));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_duplicate_result_counts_once() {
    let dir = tempfile::tempdir().unwrap();
    let c = coordinator(&dir.path().join("dup.db"), None, &[]);
    let synthetic = Synthetic::default();
    let mut pool = SimPool::new(sim_config(&c.url, &tiny_model()), synthetic.clone());
    pool.spawn_faulty(Fault::Duplicate { unit: 3 });
    let mut client = client(&c.url, None).await;
    let job = submit(&mut client, request(&[ioi()], 16, 128, 42)).await;
    assert_synthetic_scores(&mut client, &job, &synthetic, TINY_EDGES).await;
    let st = wait_end(&mut client, &job).await;
    assert_eq!((st.units_done, st.units_computed), (8, 9), "{st:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_the_exact_sum_cannot_hold_is_refused_and_fails_the_job_after_its_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = coordinator(&dir.path().join("inf.db"), None, &[]);
    let synthetic = Synthetic::default();
    let mut pool = SimPool::new(sim_config(&c.url, &tiny_model()), synthetic.clone());
    pool.spawn_faulty(Fault::NotFinite { unit: 5 });
    let mut client = client(&c.url, None).await;
    let job = submit(&mut client, request(&[ioi()], 16, 128, 42)).await;
    let st = wait_end(&mut client, &job).await;
    assert_eq!(st.state(), v1::JobState::Failed, "{st:?}");
    // Each attempt was refused naming the worker; the third failed the job.
    assert!(
        st.error.contains("unit 5 (batches 5..6 of dataset")
            && st.error.contains("failed 3 attempts: worker-")
            && st.error.contains("(sim-0) sent a result that was refused")
            && st.error.contains("(3 times)")
            && st.error.contains("value inf")
            && st.error.contains("not finite"),
        "{}",
        st.error
    );
    // The coordinator goes on: the next job is served by a sound worker.
    assert!(c.proc_alive());
    drop(pool);
    let mut pool = SimPool::new(sim_config(&c.url, &tiny_model()), synthetic.clone());
    pool.spawn(1);
    let job = submit(&mut client, request(&[ioi()], 16, 32, 42)).await;
    assert_synthetic_scores(&mut client, &job, &synthetic, TINY_EDGES).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_that_crashes_every_worker_fails_its_job_after_its_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = coordinator(&dir.path().join("crash.db"), None, &[]);
    let synthetic = Synthetic::default();
    let mut pool = SimPool::new(sim_config(&c.url, &tiny_model()), synthetic.clone());
    for _ in 0..3 {
        pool.spawn_faulty(Fault::Crash { unit: 2 });
    }
    let mut client = client(&c.url, None).await;
    let job = submit(&mut client, request(&[ioi()], 16, 64, 42)).await;
    let st = wait_end(&mut client, &job).await;
    assert_eq!(st.state(), v1::JobState::Failed, "{st:?}");
    assert!(
        st.error.contains("unit 2 (batches 2..3 of dataset")
            && st.error.contains("failed 3 attempts: worker-")
            && st.error.matches(") disconnected").count() == 3,
        "{}",
        st.error
    );
    assert!(c.proc_alive());
    pool.spawn(1);
    let job = submit(&mut client, request(&[ioi()], 16, 32, 42)).await;
    assert_synthetic_scores(&mut client, &job, &synthetic, TINY_EDGES).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faithfulness_jobs_scores_go_to_a_worker_once() {
    let dir = tempfile::tempdir().unwrap();
    let c = coordinator(&dir.path().join("f.db"), None, &[]);
    let mut pool = SimPool::new(sim_config(&c.url, &tiny_model()), Synthetic::default());
    pool.spawn(1);
    let mut client = client(&c.url, None).await;
    let job = submit(&mut client, request(&[ioi()], 16, 128, 42)).await;
    assert_eq!(
        wait_end(&mut client, &job).await.state(),
        v1::JobState::Done
    );
    let f = v1::SubmitJobRequest {
        faithfulness: Some(v1::FaithfulnessSpec {
            scores_job_id: job,
            edge_counts: vec![1, 5, 10, 25, 50, 100],
            circuits_per_unit: 3,
            dataset: None,
        }),
        ..Default::default()
    };
    let fjob = submit(&mut client, f).await;
    let st = wait_end(&mut client, &fjob).await;
    assert_eq!(st.state(), v1::JobState::Done, "{st:?}");
    let stats = &pool.stats;
    let n = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    // 8 test batches x 3 groups of circuits; one score vector for the session.
    assert_eq!((n(&stats.circuit_units), n(&stats.score_vectors)), (24, 1));
}

/// The measurement: a token-wise job of 512 prompts on the GPT-2-small shape grew the
/// per-batch database to 137 MB. Now its peak (file and log, sampled every millisecond) is
/// under three encoded accumulators, and the file gives the space back when the job is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tokenwise_gpt2_small_jobs_database_stays_under_three_accumulators() {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("gpt2-small-shape");
    model::gpt2_small_shape(&model_dir, &repo().join("assets/gpt2/tokenizer.json")).unwrap();
    let db = dir.path().join("tokenwise.db");
    // Commits every 100 ms while the worker answers 40 units a second: the accumulator is
    // rewritten about ten times during the job.
    let commits = ["--commit-interval-ms", "100"];
    let c =
        CoordinatorProc::start(&bin("attrib-coordinator"), &model_dir, &db, 0, &commits).unwrap();
    let watch = DbWatch::start(db.clone());
    let synthetic = Synthetic::default();
    let mut sim = sim_config(&c.url, &model_dir);
    sim.rate = Some(40.0);
    let mut pool = SimPool::new(sim, synthetic.clone());
    pool.spawn(1);
    let mut client = client(&c.url, None).await;
    let mut req = request(&[ioi()], 16, 512, 42);
    req.settings = Some(
        (&attrib_proto::AttributionSettings {
            token_positions: true,
            ..Default::default()
        })
            .into(),
    );
    let job = submit(&mut client, req).await;
    assert_synthetic_scores(&mut client, &job, &synthetic, 487_365).await;
    let st = wait_end(&mut client, &job).await;
    assert_eq!(st.units_total, 32);
    assert!(st.units_committed == 32);
    // The watcher samples every millisecond; the sizes the finished job left are counted
    // here rather than by waiting for its next sample.
    let size = |suffix: &str| {
        let mut f = db.clone().into_os_string();
        f.push(suffix);
        std::fs::metadata(f).map_or(0, |m| m.len())
    };
    let peak = watch.finish().max(size("") + size("-wal"));
    let n_edges = 487_365; // GPT-2 small, token-wise over 15 positions
    let accumulator = synthetic
        .expected(n_edges, &units_of(&st, 16))
        .encode()
        .len() as u64;
    eprintln!(
        "database peak {peak} bytes = {:.2} accumulators of {accumulator} bytes",
        peak as f64 / accumulator as f64
    );
    assert!(peak < 3 * accumulator, "{peak} >= 3 x {accumulator}");
    // Done: the accumulator's pages went back; the final scores (8 bytes an edge) remain.
    let now = std::fs::metadata(&db).unwrap().len();
    assert!(
        now < 8 * n_edges as u64 + accumulator / 4,
        "{now} bytes left"
    );
}
