//! A database that fills while a job runs: the job finishes in memory, new jobs are refused,
//! and once there is room again the job is stored with the scores a roomy database gives.
//! Nothing computed is lost. (The disk is "full" at `--max-db-mib`: SQLite's hard cap fails
//! writes with SQLITE_FULL, as a full disk does.)

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use attrib_coordinator::{Coordinator, CoordinatorConfig};
use attrib_proto::v1;
use common::*;

const CAP: u64 = 2 << 20;

/// A token-wise job: its scores (an f64 per edge and position, ~14 KB) need new pages.
fn tokenwise() -> v1::SubmitJobRequest {
    let mut req = request(4, 16, 0);
    req.settings.as_mut().unwrap().token_positions = true;
    req
}

async fn open(db: &Path, cap: u64) -> Arc<Coordinator> {
    let mut config = CoordinatorConfig::new(tiny_model_dir(), db);
    config.limits.max_db_bytes = cap;
    config.commit_interval = Duration::from_millis(50);
    Coordinator::open(config).await.expect("coordinator")
}

/// Computes every unit of `job` as worker `w` with `good_result`s.
async fn compute(coord: &Coordinator, w: &str, units: u32) {
    for _ in 0..units {
        let (job, unit, plan) = coord.next_unit(w).await;
        coord
            .complete(w, good_result(&job, unit, &plan))
            .await
            .expect("answer recorded");
    }
}

async fn wait_done(coord: &Coordinator, job: &str) -> v1::JobStatus {
    let t0 = Instant::now();
    loop {
        let st = coord.status(job).await.expect("status");
        if st.state() == v1::JobState::Done {
            return st;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "not stored: {st:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_finished_while_the_database_is_full_is_stored_once_there_is_room() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("full.db");
    let coord = open(&db, CAP).await;
    let w = coord.register_worker(&hello("w", 8)).unwrap();
    let (job, units) = coord.submit(tokenwise()).await.unwrap();

    // Another writer takes the file past the coordinator's cap.
    let filler = rusqlite::Connection::open(&db).unwrap();
    filler.busy_timeout(Duration::from_secs(10)).unwrap();
    filler
        .execute_batch(
            "CREATE TABLE filler (b BLOB); INSERT INTO filler VALUES (zeroblob(3000000));",
        )
        .unwrap();

    compute(&coord, &w, units).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // a few failed commits and stores
    let st = coord.status(&job).await.unwrap();
    assert_eq!(
        st.state(),
        v1::JobState::Running,
        "stored although full: {st:?}"
    );
    assert_eq!(st.units_done, units, "every unit is folded in memory");
    let refused = coord.submit(tokenwise()).await.unwrap_err();
    let status = tonic::Status::from(refused);
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");

    // Room again: the committer stores the finished job.
    filler.execute_batch("DROP TABLE filler;").unwrap();
    wait_done(&coord, &job).await;
    let got = coord.scores(&job, None).await.unwrap().scores;

    // The same job on a database with room gives the same bits.
    let roomy = open(&dir.path().join("roomy.db"), 0).await;
    let w = roomy.register_worker(&hello("w", 8)).unwrap();
    let (clean, units) = roomy.submit(tokenwise()).await.unwrap();
    compute(&roomy, &w, units).await;
    wait_done(&roomy, &clean).await;
    let want = roomy.scores(&clean, None).await.unwrap().scores;
    assert_eq!(bits(&got), bits(&want));
}
