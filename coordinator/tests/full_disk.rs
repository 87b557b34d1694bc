//! A database that fills while a job runs: the job finishes in memory, new jobs are refused,
//! and once there is room again the job is stored with the scores a roomy database gives.
//! Nothing computed is lost. (The disk is "full" at `--max-db-mib`: SQLite's hard cap fails
//! writes with SQLITE_FULL, as a full disk does.)

mod common;

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// What the coordinator logs at ERROR, as it is written (the test's global tracing
/// subscriber writes here and to stderr), and a wake-up for every write.
#[derive(Default)]
struct ErrorLog {
    text: Mutex<String>,
    wrote: tokio::sync::Notify,
}

impl ErrorLog {
    /// Captures this process's ERROR events from now on.
    fn capture() -> Arc<ErrorLog> {
        struct Tap(Arc<ErrorLog>);
        impl Write for Tap {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                let line = String::from_utf8_lossy(b);
                self.0.text.lock().unwrap().push_str(&line);
                self.0.wrote.notify_waiters();
                std::io::stderr().write_all(b)?;
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                std::io::stderr().flush()
            }
        }
        let log = Arc::new(ErrorLog::default());
        let tap = log.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::ERROR)
            .with_ansi(false)
            .with_writer(move || Tap(tap.clone()))
            .try_init()
            .expect("the only tracing subscriber of this test binary");
        log
    }

    fn count(&self, what: &str) -> usize {
        self.text.lock().unwrap().matches(what).count()
    }

    /// Waits (at most 30 s) until `what` has been logged `n` times.
    async fn wait_count(&self, what: &str, n: usize) {
        let waited = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let wrote = self.wrote.notified();
                tokio::pin!(wrote);
                wrote.as_mut().enable();
                if self.count(what) >= n {
                    return;
                }
                wrote.await;
            }
        })
        .await;
        let seen = self.count(what);
        assert!(waited.is_ok(), "{what:?} logged {seen} times, not {n}");
    }
}

/// Waits (at most 30 s) until the job is stored, looking again at each change the
/// coordinator signals to its watchers (what `WatchJob` follows).
async fn wait_done(coord: &Coordinator, job: &str) -> v1::JobStatus {
    let mut changes = coord.subscribe();
    let mut last = None;
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let st = coord.status(job).await.expect("status");
            if st.state() == v1::JobState::Done {
                return st;
            }
            last = Some(st);
            changes.changed().await.expect("the coordinator is open");
        }
    })
    .await;
    waited.unwrap_or_else(|_| panic!("not stored within 30 s: {last:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_finished_while_the_database_is_full_is_stored_once_there_is_room() {
    let log = ErrorLog::capture();
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
    // The last fold's store failed; the committer tries again every 50 ms: wait until two
    // of its group commits and two more stores have failed too (as logged), then the job must
    // still be whole in memory.
    log.wait_count("group commit failed", 2).await;
    log.wait_count("cannot store the finished job", 3).await;
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
