//! The coordinator's shared handle: the scheduler behind a lock, each running job's exact
//! sums behind their own lock, the store, and the wake-ups between them. Both gRPC services
//! call into it. Results are folded in memory as they arrive; group commits write each
//! running job's accumulators and folded-unit set to the store together, so a restart
//! recomputes at most the units since the last commit and never counts one twice.
//!
//! Its methods are split by who calls them: `client_side` (jobs, status, scores),
//! `worker_side` (sessions, units, results, failures) and `commit` (group commits and a
//! finished job's scores).

mod client_side;
mod commit;
mod retention;
mod worker_side;

use commit::spawn_committer;
use retention::spawn_retention;

use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex, MutexGuard};

use attrib_proto::v1;
use tokio::sync::{broadcast, watch, Notify};

use crate::clock::now_ms;
use crate::config::CoordinatorConfig;
use crate::metrics;
use crate::model::ModelInfo;
use crate::scheduler::{JobRun, Scheduler};
use crate::store::Store;
use crate::sums::JobSums;
use crate::{Error, Result};

pub struct Coordinator {
    pub config: CoordinatorConfig,
    pub model: Arc<ModelInfo>,
    store: Store,
    sched: Mutex<Scheduler>,
    /// Woken when units become available.
    work: Notify,
    /// Bumped on every change a watcher could see.
    changes: watch::Sender<u64>,
    /// Units folded since the last group commit.
    unsaved: AtomicU32,
    /// Wakes the committer early, once `unsaved` reaches `config.commit_units`.
    commit_now: Notify,
    /// One group commit at a time, so snapshots reach the store in the order they were taken.
    committing: tokio::sync::Mutex<()>,
    /// Set by `close`: the committer stops.
    closing: watch::Sender<bool>,
    /// Jobs that ended without finishing (cancelled, failed): sessions tell their workers.
    ended: broadcast::Sender<String>,
    /// Set by `leave` (the process is stopping): sessions and watches end, so that the
    /// server's graceful shutdown has nothing left to wait for.
    leaving: watch::Sender<bool>,
}

impl Coordinator {
    /// Loads the model's identity, opens the store and resumes its unfinished jobs (their
    /// committed units are not computed again).
    pub async fn open(config: CoordinatorConfig) -> Result<Arc<Self>> {
        let dir = config.model_dir.clone();
        let model = Arc::new(tokio::task::spawn_blocking(move || ModelInfo::load(&dir)).await??);
        let (db, max_bytes) = (config.db.clone(), config.limits.max_db_bytes);
        let store = tokio::task::spawn_blocking(move || Store::open(&db, max_bytes)).await??;
        let coord = Arc::new(Coordinator {
            sched: Mutex::new(Scheduler::new(
                config.max_attempts,
                config.limits.max_active_jobs,
            )),
            config,
            model,
            store,
            work: Notify::new(),
            changes: watch::Sender::new(0),
            unsaved: AtomicU32::new(0),
            commit_now: Notify::new(),
            committing: tokio::sync::Mutex::new(()),
            closing: watch::Sender::new(false),
            ended: broadcast::Sender::new(64),
            leaving: watch::Sender::new(false),
        });
        coord.resume().await?;
        spawn_committer(coord.clone());
        if let Some(keep) = coord.config.retention {
            spawn_retention(coord.clone(), keep);
        }
        Ok(coord)
    }

    /// Stops group commits after a last one, so that nothing folded is lost on a clean stop.
    pub async fn close(&self) -> Result<()> {
        self.closing.send_replace(true);
        self.commit().await
    }

    /// The process is stopping: every worker session ends (its worker dials again, and finds
    /// the restarted coordinator), every watch ends, and no session opens. Units held are not
    /// counted as lost attempts: the store keeps what was committed, and the restart hands
    /// the rest out again.
    pub fn leave(&self) {
        self.leaving.send_replace(true);
    }

    /// Whether `leave` was called.
    pub fn is_leaving(&self) -> bool {
        *self.leaving.borrow()
    }

    /// Turns true when `leave` is called: subscribe once, then `left` in a loop.
    pub fn leaving(&self) -> watch::Receiver<bool> {
        self.leaving.subscribe()
    }

    async fn resume(&self) -> Result<()> {
        let jobs = self.store.run(|s| s.jobs()).await?;
        for job in jobs.into_iter().filter(|j| !j.state.is_terminal()) {
            // A job that cannot resume fails, saying why; its stored sums stay.
            let failed = |e: Error| v1::JobStatus {
                job_id: job.id.clone(),
                label: job.label.clone(),
                created_unix_ms: job.created_ms,
                state: v1::JobState::Failed as i32,
                error: e.to_string(),
                finished_unix_ms: now_ms(),
                ..Default::default()
            };
            if job.model_fingerprint != self.model.fingerprint {
                let e = Error::ModelChanged {
                    stored: job.model_fingerprint.clone(),
                    current: self.model.fingerprint.clone(),
                };
                self.store_unreduced(&failed(e)).await?;
                continue;
            }
            let id = job.id.clone();
            let request = self.store.run(move |s| s.request(&id)).await?;
            let (planned, request) = self.plan_request(request).await?;
            let request_class = request.device_class;
            let planned = match planned {
                Ok(p) => Arc::new(p),
                Err(e) => {
                    self.store_unreduced(&failed(e)).await?;
                    continue;
                }
            };
            let id = job.id.clone();
            let stored = self.store.run(move |s| s.progress(&id)).await?;
            let sums = match stored {
                None => Ok(JobSums::new(&planned)),
                Some(p) => JobSums::restore(&planned, &job.id, &p.sums, &p.folded),
            };
            let sums = match sums {
                Ok(s) => s,
                Err(e) => {
                    self.store_unreduced(&failed(e)).await?;
                    continue;
                }
            };
            // A class the request named wins; else the one committed with the job's units.
            let named = !request_class.is_empty();
            let class = if named {
                request_class
            } else {
                job.device_class
            };
            let run = JobRun::new(
                job.id.clone(),
                job.label,
                job.created_ms,
                planned,
                sums,
                job.retried,
            )
            .with_device_class(class, named);
            let complete = run.is_complete();
            let resumed = run.status().units_resumed;
            tracing::info!(job = %job.id, resumed, total = run.plan.n_units(), "resuming job");
            self.lock().add_job(run);
            if complete {
                self.finalize_or_retry(&job.id).await;
            }
        }
        self.changed();
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Scheduler> {
        self.sched.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn changed(&self) {
        self.changes.send_modify(|v| *v += 1);
        let (q, r) = self.lock().job_counts();
        metrics::active_jobs(q, r);
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

/// Resolves once `leaving` (from `Coordinator::leaving`) is true. The borrow of the value
/// ends here, so the future stays `Send`.
pub async fn left(leaving: &mut watch::Receiver<bool>) {
    let _ = leaving.wait_for(|&l| l).await;
}

/// Locks a job's sums; a panic while holding them cannot leave a half-folded unit (folds are
/// all or nothing), so a poisoned lock is still good.
fn lock(sums: &Mutex<JobSums>) -> MutexGuard<'_, JobSums> {
    sums.lock().unwrap_or_else(|p| p.into_inner())
}
