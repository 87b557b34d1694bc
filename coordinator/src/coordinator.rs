//! The coordinator's shared handle: the scheduler behind a lock, each running job's exact
//! sums behind their own lock, the store, and the wake-ups between them. Both gRPC services
//! call into it. Results are folded in memory as they arrive; group commits write each
//! running job's accumulators and folded-unit set to the store together, so a restart
//! recomputes at most the units since the last commit and never counts one twice.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use attrib_proto::units::{Accumulator, FoldError};
use attrib_proto::{v1, ScoresMetadata};
use tokio::sync::{broadcast, watch, Notify};

use crate::admission;
use crate::config::CoordinatorConfig;
use crate::metrics;
use crate::model::ModelInfo;
use crate::plan::{plan, plan_faithfulness, JobPlan};
use crate::scheduler::{FailureOutcome, JobRun, Recorded, Scheduler};
use crate::store::{Store, StoredScores, COMBINED};
use crate::sums::{Folded, JobSums};
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
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
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
        });
        coord.resume().await?;
        spawn_committer(coord.clone());
        Ok(coord)
    }

    /// Stops group commits after a last one, so that nothing folded is lost on a clean stop.
    pub async fn close(&self) -> Result<()> {
        self.closing.send_replace(true);
        self.commit().await
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
            let (planned, _) = self.plan_request(request).await?;
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
            let run = JobRun::new(
                job.id.clone(),
                job.label,
                job.created_ms,
                planned,
                sums,
                job.retried,
            );
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

    // ---- client side ----

    /// Plans a request on a blocking thread. The request (prompt files included, up to
    /// --max-request-mib) moves there and back rather than being copied. A faithfulness job
    /// is planned from its attribution job's stored request and scores.
    async fn plan_request(
        &self,
        req: v1::SubmitJobRequest,
    ) -> Result<(Result<JobPlan>, v1::SubmitJobRequest)> {
        let model = self.model.clone();
        let Some(spec) = req.faithfulness.clone() else {
            return Ok(tokio::task::spawn_blocking(move || (plan(&req, &model), req)).await?);
        };
        let source_id = spec.scores_job_id.clone();
        let stored = match self.status(&source_id).await {
            Ok(st) if st.kind == "faithfulness" => Err(Error::WrongKind {
                job: source_id.clone(),
                kind: "faithfulness",
                wanted: "evaluate circuits of an attribution job",
            }),
            Ok(_) => self.scores(&source_id, spec.dataset).await,
            Err(e) => Err(e),
        };
        let stored = match stored {
            Ok(s) => s,
            Err(Error::Store(e)) => return Err(Error::Store(e)),
            Err(e) => return Ok((Err(e), req)),
        };
        let source = self.store.run(move |s| s.request(&source_id)).await?;
        Ok(tokio::task::spawn_blocking(move || {
            let p = plan_faithfulness(&req, &source, &stored.scores, stored.graph, &model);
            (p, req)
        })
        .await?)
    }

    pub async fn submit(&self, req: v1::SubmitJobRequest) -> Result<(String, u32)> {
        let limits = &self.config.limits;
        limits.check_request(&req)?;
        limits.check_jobs(self.lock().jobs().len())?;
        let request_bytes = prost::Message::encoded_len(&req) as u64;
        let (planned, req) = self.plan_request(req).await?;
        let planned: JobPlan = planned?;
        limits.check_plan(&planned)?;
        admission::check_memory(planned.unit_memory, self.lock().largest_worker_memory())?;
        let db_bytes = self.store.run(|s| s.size_bytes()).await?;
        limits.check_db(db_bytes, request_bytes + planned.stored_bytes())?;
        let total = planned.n_units();
        let created = now_ms();
        let fp = self.model.fingerprint.clone();
        let label = req.label.clone();
        let id = self
            .store
            .run(move |s| s.insert_job(&req.label, &req, &fp, created))
            .await?;
        let sums = JobSums::new(&planned);
        self.lock().add_job(JobRun::new(
            id.clone(),
            label,
            created,
            Arc::new(planned),
            sums,
            0,
        ));
        metrics::job_submitted();
        tracing::info!(job = %id, units = total, "job queued");
        self.work.notify_waiters();
        self.changed();
        Ok((id, total))
    }

    pub async fn status(&self, id: &str) -> Result<v1::JobStatus> {
        if let Some(run) = self.lock().job(id) {
            return Ok(run.status());
        }
        let job = id.to_string();
        self.store
            .run(move |s| s.final_status(&job)?.ok_or(Error::UnknownJob(job.clone())))
            .await
    }

    pub async fn list(&self) -> Result<Vec<v1::JobStatus>> {
        let mut all = self.store.run(|s| s.final_statuses()).await?;
        all.extend(self.lock().jobs().iter().map(JobRun::status));
        all.sort_by(|a, b| a.job_id.cmp(&b.job_id));
        Ok(all)
    }

    pub async fn cancel(&self, id: &str) -> Result<v1::JobStatus> {
        match self
            .end_job(id, v1::JobState::Cancelled, String::new())
            .await?
        {
            Some(status) => {
                tracing::info!(job = %id, "job cancelled");
                Ok(status)
            }
            None => self.status(id).await,
        }
    }

    /// Stored scores of a done job: `dataset` `None` for all datasets combined.
    pub async fn scores(&self, id: &str, dataset: Option<u32>) -> Result<StoredScores> {
        let status = self.status(id).await?;
        if status.kind == "faithfulness" {
            return Err(Error::WrongKind {
                job: id.to_string(),
                kind: "faithfulness",
                wanted: "it has a curve, not scores (`attrib curve`)",
            });
        }
        if status.state() != v1::JobState::Done {
            return Err(Error::NotDone {
                job: id.to_string(),
                state: status.state().label(),
            });
        }
        let n = status.datasets.len();
        let key = match dataset {
            Some(i) if i as usize >= n => {
                return Err(Error::NoSuchDataset {
                    job: id.to_string(),
                    index: i,
                    n,
                })
            }
            // One dataset: its scores are the combined ones (stored once).
            Some(i) if n > 1 => i as i64,
            _ => COMBINED,
        };
        let job = id.to_string();
        self.store
            .run(move |s| {
                s.scores(&job, key)?.ok_or_else(|| Error::Corrupt {
                    job: job.clone(),
                    reason: "done but no scores stored".into(),
                })
            })
            .await
    }

    pub fn workers(&self) -> Vec<v1::WorkerInfo> {
        self.lock().workers()
    }

    // ---- worker side ----

    pub fn register_worker(&self, hello: &v1::WorkerHello) -> Result<String> {
        if hello.protocol != attrib_proto::PROTOCOL_VERSION as i32 {
            return Err(Error::Protocol {
                got: hello.protocol,
                expected: attrib_proto::PROTOCOL_VERSION as i32,
            });
        }
        let model = hello
            .model
            .as_ref()
            .ok_or(attrib_proto::convert::WireError::Missing {
                field: "hello.model",
            })?;
        self.model.check_worker(model)?;
        let mut s = self.lock();
        let id = s.register_worker(
            &hello.name,
            &hello.device,
            hello.units_in_flight.max(1),
            hello.memory_bytes,
            now_ms(),
        );
        metrics::workers_connected(s.n_workers());
        Ok(id)
    }

    /// Waits for the next unit for `worker`. Cancel-safe: a unit is leased only when this
    /// returns it.
    pub async fn next_unit(&self, worker: &str) -> (String, u32, Arc<JobPlan>) {
        loop {
            let notified = self.work.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let leased = self.lock().assign(worker);
            if let Some(leased) = leased {
                self.changed();
                return leased;
            }
            notified.await;
        }
    }

    /// Ids of jobs that end from now on without finishing (a lagging receiver misses some:
    /// their workers then compute units that are ignored, as before cancellation existed).
    pub fn ended_jobs(&self) -> broadcast::Receiver<String> {
        self.ended.subscribe()
    }

    /// Units `worker` holds now.
    pub fn held(&self, worker: &str) -> usize {
        self.lock().held(worker)
    }

    /// Folds a unit's result into its job's sums (once), counts it, and finishes the job
    /// after its last unit. A result for a unit the worker does not hold is a late one (it
    /// finished after an earlier session ended): folded unless the unit is folded already.
    pub async fn complete(&self, worker: &str, r: v1::UnitResult) -> Result<()> {
        metrics::result_bytes(r.values.len() + 4 * r.clean_logit_diffs.len());
        let (held, found) = {
            let mut s = self.lock();
            let held = s.answered(worker, &r.job_id, r.unit);
            (
                held,
                s.job(&r.job_id).map(|j| (j.plan.clone(), j.sums.clone())),
            )
        };
        let Some((plan, sums)) = found else {
            return Ok(()); // cancelled or finished meanwhile
        };
        if plan.unit(r.unit).is_none() {
            let e = format!("result for unit {} of a job of {}", r.unit, plan.n_units());
            tracing::warn!(%worker, job = %r.job_id, error = %e, "result refused");
            return Ok(());
        }
        let folded = lock(&sums).fold(&plan, r.unit, &r);
        let job = r.job_id.as_str();
        match folded {
            Ok(f) => {
                self.count_result(worker, &plan, job, r.unit, f == Folded::New, r.seconds)
                    .await;
                Ok(())
            }
            Err(e) if held => {
                // NaN/inf or the wrong length: refused, and an attempt of the unit. A faulty
                // device fails only its own attempts; a model that really gives NaN fails
                // the job after `max_attempts`, each reason naming the worker.
                let reason = format!("{} sent a result that was refused: {e}", self.who(worker));
                self.unit_failed(worker, job, r.unit, &reason).await
            }
            Err(e) => {
                // A late result is no attempt of the unit's current holder: dropped.
                tracing::warn!(%worker, %job, unit = r.unit, error = %e, "late result refused");
                Ok(())
            }
        }
    }

    /// Counts a unit whose result was folded (`new`) or found folded already, and finishes its
    /// job after its last unit.
    async fn count_result(
        &self,
        worker: &str,
        plan: &JobPlan,
        job: &str,
        unit: u32,
        new: bool,
        seconds: f64,
    ) {
        let recorded = self.lock().record_result(worker, job, unit, new);
        match recorded {
            Recorded::New { job_complete } => {
                metrics::unit_done(seconds, plan.unit_prompts(unit));
                if self.unsaved.fetch_add(1, Ordering::Relaxed) + 1 >= self.config.commit_units {
                    self.commit_now.notify_one();
                }
                self.changed();
                if job_complete {
                    self.finalize_or_retry(job).await;
                }
            }
            Recorded::Ignored => {
                metrics::unit_duplicate();
                tracing::debug!(%worker, %job, unit, "late duplicate ignored");
                self.changed();
            }
        }
    }

    /// Folds a node group's sum over several units of one dataset, all or none (see
    /// `JobSums::fold_group`). Units it holds of a refused sum lose an attempt; those of a
    /// sum that overlaps folded units go back to the queue.
    pub async fn complete_group(&self, worker: &str, g: v1::GroupResult) -> Result<()> {
        metrics::result_bytes(g.sums.len());
        let job = g.job_id.as_str();
        let (held, found) = {
            let mut s = self.lock();
            let held: Vec<u32> = g
                .units
                .iter()
                .copied()
                .filter(|&u| s.answered(worker, job, u))
                .collect();
            (held, s.job(job).map(|j| (j.plan.clone(), j.sums.clone())))
        };
        let Some((plan, sums)) = found else {
            return Ok(()); // cancelled or finished meanwhile
        };
        let folded = Accumulator::decode(&g.sums)
            .map_err(|e| FoldError::Group(e.to_string()))
            .and_then(|acc| lock(&sums).fold_group(&plan, &g.units, &acc));
        let seconds = g.seconds / g.units.len().max(1) as f64;
        match folded {
            Ok(Folded::Overlap) => {
                tracing::info!(%worker, %job, units = ?g.units, "group result overlaps folded units: its other units are computed again");
                let mut s = self.lock();
                for &u in &held {
                    s.requeue(job, u);
                }
                drop(s);
                self.work.notify_waiters();
                self.changed();
            }
            Ok(f) => {
                if f == Folded::New {
                    metrics::group_folded();
                }
                for &u in &g.units {
                    self.count_result(worker, &plan, job, u, f == Folded::New, seconds)
                        .await;
                }
            }
            Err(e) => {
                let reason = format!(
                    "{} sent a group result that was refused: {e}",
                    self.who(worker)
                );
                tracing::warn!(%worker, %job, error = %e, "group result refused");
                for &u in &held {
                    self.unit_failed(worker, job, u, &reason).await?;
                }
            }
        }
        Ok(())
    }

    /// `worker` could not compute `unit`. A failure of a unit it does not hold (any more) is
    /// ignored: the unit is someone else's now.
    pub async fn fail_unit(&self, worker: &str, job: &str, unit: u32, error: &str) -> Result<()> {
        if !self.lock().answered(worker, job, unit) {
            tracing::debug!(%worker, %job, unit, "failure of a unit it does not hold ignored");
            return Ok(());
        }
        let reason = format!("{}: {error}", self.who(worker));
        self.unit_failed(worker, job, unit, &reason).await
    }

    /// "worker-3 (name)", for the reasons of failed attempts.
    fn who(&self, worker: &str) -> String {
        match self.lock().worker_name(worker) {
            Some(name) => format!("{worker} ({name})"),
            None => worker.to_string(),
        }
    }

    /// An attempt of a unit `worker` held failed (`reason`): the unit goes back to the queue,
    /// or fails its job after `max_attempts`.
    async fn unit_failed(&self, worker: &str, job: &str, unit: u32, reason: &str) -> Result<()> {
        metrics::unit_failed();
        tracing::warn!(%worker, %job, unit, %reason, "unit failed");
        let outcome = self.lock().record_failure(job, unit, reason, describe_unit);
        self.after_failure(job, outcome).await
    }

    async fn after_failure(&self, job: &str, outcome: FailureOutcome) -> Result<()> {
        match outcome {
            FailureOutcome::Retry => {
                metrics::unit_retried();
                self.work.notify_waiters()
            }
            FailureOutcome::JobFailed(msg) => self.fail_job(job, msg).await?,
            FailureOutcome::Ignored => {}
        }
        self.changed();
        Ok(())
    }

    async fn fail_job(&self, job: &str, msg: String) -> Result<()> {
        self.end_job(job, v1::JobState::Failed, msg)
            .await
            .map(|_| ())
    }

    /// Ends a running job without scores. It stops at once (and says so to watchers), the
    /// store records it, then it leaves the scheduler. A failed job keeps what was computed:
    /// its last sums are committed first. `None` if the job was not running.
    async fn end_job(
        &self,
        id: &str,
        state: v1::JobState,
        error: String,
    ) -> Result<Option<v1::JobStatus>> {
        let ended = self.lock().end(id, state, error, now_ms());
        let Some((mut status, sums, retried)) = ended else {
            return Ok(None);
        };
        let _ = self.ended.send(id.to_string()); // no session: nobody to tell
        self.changed();
        if state == v1::JobState::Failed {
            // In turn with the committer, so that the store's sums and folded set stay one.
            let _one = self.committing.lock().await;
            match self.commit_job(id, &sums, retried).await {
                Ok(()) => {
                    if let Some(run) = self.lock().job(id) {
                        status.units_committed = run.status().units_committed;
                    }
                }
                Err(e) => tracing::error!(job = %id, error = %e, "last commit of a failed job"),
            }
        }
        self.store_unreduced(&status).await?;
        self.lock().remove(id);
        self.changed();
        Ok(Some(status))
    }

    /// `worker` left (`why`: disconnected, timed out, drained): each unit it held lost an
    /// attempt, and goes back to the queue or fails its job.
    pub async fn release_worker(&self, worker: &str, why: &str) {
        let (lost, n) = {
            let mut s = self.lock();
            (s.release_worker(worker, why, describe_unit), s.n_workers())
        };
        metrics::workers_connected(n);
        for (job, outcome) in lost {
            tracing::warn!(%worker, %job, reason = why, "worker left holding a unit");
            if let Err(e) = self.after_failure(&job, outcome).await {
                tracing::error!(%job, error = %e, "cannot record a lost unit");
            }
        }
        self.changed();
    }

    /// One group commit: every running job's changed sums and folded set, a transaction per
    /// job. Called by the committer (every `commit_interval`, or early after `commit_units`
    /// folds) and when the coordinator stops.
    pub async fn commit(&self) -> Result<()> {
        let _one = self.committing.lock().await;
        self.unsaved.store(0, Ordering::Relaxed);
        let jobs: Vec<(String, Arc<Mutex<JobSums>>, u32)> = self
            .lock()
            .jobs()
            .iter()
            .map(|j| (j.id.clone(), j.sums.clone(), j.retried))
            .collect();
        for (id, sums, retried) in jobs {
            self.commit_job(&id, &sums, retried).await?;
        }
        Ok(())
    }

    /// Writes one job's snapshot; the caller holds `committing`.
    async fn commit_job(&self, id: &str, sums: &Arc<Mutex<JobSums>>, retried: u32) -> Result<()> {
        let Some(snap) = lock(sums).snapshot() else {
            return Ok(());
        };
        let t0 = std::time::Instant::now();
        let (job, saved) = (id.to_string(), snap.clone());
        match self
            .store
            .run(move |s| s.save_progress(&job, &saved, retried))
            .await
        {
            Ok(written) => {
                if written {
                    self.lock().record_commit(id, snap.units);
                    metrics::commit(t0.elapsed().as_secs_f64(), &snap);
                    self.changed();
                }
                Ok(())
            }
            Err(e) => {
                lock(sums).unsave(&snap); // the next commit tries again
                Err(e)
            }
        }
    }

    /// `finalize`, or when the store cannot take it (a full disk), leaves the complete job in
    /// memory for the committer to store later: nothing computed is lost.
    async fn finalize_or_retry(&self, id: &str) {
        if let Err(e) = self.finalize(id).await {
            tracing::error!(job = %id, error = %e, "cannot store the finished job; will retry");
            self.lock().store_later(id);
        }
    }

    /// Stores a complete job's scores (or curve) and final status in one transaction, drops
    /// its running state and retires it.
    async fn finalize(&self, id: &str) -> Result<()> {
        let Some((plan, sums, mut status)) = self
            .lock()
            .job(id)
            .map(|j| (j.plan.clone(), j.sums.clone(), j.status()))
        else {
            return Ok(());
        };
        let job = id.to_string();
        let model = self.model.clone();
        status.state = v1::JobState::Done as i32;
        status.finished_unix_ms = now_ms();
        status.units_committed = status.units_total;
        let final_status = status.clone();
        if plan.circuits.is_some() {
            let curve = lock(&sums).curve(&plan);
            self.store
                .run(move |s| {
                    let json = serde_json::to_string(&curve).expect("a curve serializes");
                    s.finish_curve(&job, &curve.scores_from, &json, &final_status)?;
                    release_free_pages(s);
                    Ok(())
                })
                .await?;
            self.retire(id, &status);
            return Ok(());
        }
        let scores = lock(&sums).scores(&plan);
        self.store
            .run(move |s| {
                let meta = |d: Option<usize>, r: &attrib_proto::Reduced| -> ScoresMetadata {
                    plan.metadata(d, &model, r)
                };
                let mut rows = vec![(
                    COMBINED,
                    meta(None, &scores.combined),
                    plan.graph,
                    scores.combined.scores.clone(),
                )];
                if plan.datasets.len() > 1 {
                    for (i, r) in scores.per_dataset.iter().enumerate() {
                        rows.push((i as i64, meta(Some(i), r), plan.graph, r.scores.clone()));
                    }
                }
                s.finish_job(&job, &rows, &final_status)?;
                release_free_pages(s);
                Ok(())
            })
            .await?;
        self.retire(id, &status);
        Ok(())
    }

    fn retire(&self, id: &str, status: &v1::JobStatus) {
        self.lock().remove(id);
        metrics::job_finished("done");
        tracing::info!(job = %id, units = status.units_total, "job done");
        self.changed();
    }

    /// The faithfulness curve of job `id` (a faithfulness job, or an attribution job's newest).
    pub async fn curve(&self, id: &str) -> Result<(String, String)> {
        let job = id.to_string();
        if let Some(found) = self.store.run(move |s| s.curve(&job)).await? {
            return Ok(found);
        }
        let status = self.status(id).await?; // unknown job: NOT_FOUND
        if status.kind == "faithfulness" && status.state() != v1::JobState::Done {
            return Err(Error::NotDone {
                job: id.to_string(),
                state: status.state().label(),
            });
        }
        Err(Error::NoCurve(id.to_string()))
    }

    /// Stores a job's end without scores (failed or cancelled). A failed job keeps its
    /// committed sums; a cancelled one's are dropped.
    async fn store_unreduced(&self, status: &v1::JobStatus) -> Result<()> {
        let s = status.clone();
        let state = status.state();
        let keep_sums = state == v1::JobState::Failed;
        self.store
            .run(move |store| {
                if keep_sums {
                    store.fail_job(&s.job_id, &s)
                } else {
                    store.finish_job(&s.job_id, &[], &s)?;
                    release_free_pages(store);
                    Ok(())
                }
            })
            .await?;
        metrics::job_finished(state.label());
        if state == v1::JobState::Failed {
            tracing::error!(job = %status.job_id, error = %status.error, "job failed");
        }
        self.changed();
        Ok(())
    }
}

/// Gives a finished job's pages back; a failure only costs space, so it is logged, not
/// returned (the job's end is already stored).
fn release_free_pages(store: &Store) {
    if let Err(e) = store.release_free_pages() {
        tracing::warn!(error = %e, "cannot release the database's free pages");
    }
}

/// Locks a job's sums; a panic while holding them cannot leave a half-folded unit (folds are
/// all or nothing), so a poisoned lock is still good.
fn lock(sums: &Mutex<JobSums>) -> MutexGuard<'_, JobSums> {
    sums.lock().unwrap_or_else(|p| p.into_inner())
}

/// "unit U (batches A..B of dataset NAME)", for messages.
fn describe_unit(plan: &JobPlan, unit: u32) -> String {
    match plan.unit(unit) {
        Some(u) => {
            let d = &plan.datasets[u.dataset];
            format!(
                "unit {unit} (batches {}..{} of dataset {:?})",
                d.first_batch as usize + u.batches.start,
                d.first_batch as usize + u.batches.end,
                d.name
            )
        }
        None => format!("unit {unit}"),
    }
}

/// Group commits until the coordinator closes: every `commit_interval`, or as soon as
/// `commit_units` units are folded.
fn spawn_committer(coord: Arc<Coordinator>) {
    tokio::spawn(async move {
        let mut closing = coord.closing.subscribe();
        loop {
            let woken = coord.commit_now.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            // Reached while the last commit ran: go again at once.
            if coord.unsaved.load(Ordering::Relaxed) < coord.config.commit_units {
                tokio::select! {
                    _ = tokio::time::sleep(coord.config.commit_interval) => {}
                    _ = &mut woken => {}
                    _ = closing.changed() => return,
                }
            }
            if let Err(e) = coord.commit().await {
                tracing::error!(error = %e, "group commit failed; will retry");
            }
            let unstored = coord.lock().take_unstored();
            for job in unstored {
                coord.finalize_or_retry(&job).await;
            }
        }
    });
}
