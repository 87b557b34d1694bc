//! The coordinator's shared handle: the scheduler behind a lock, the store, and the wake-ups
//! between them. Both gRPC services call into it; it owns the order of operations that keeps
//! results safe (a result is committed to the store before it counts as done).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use attrib_proto::{v1, ScoresMetadata};
use tokio::sync::{watch, Notify};

use crate::config::CoordinatorConfig;
use crate::metrics;
use crate::model::ModelInfo;
use crate::plan::{plan, plan_faithfulness, JobPlan};
use crate::reduce::{CurveReducer, JobReducer};
use crate::scheduler::{FailureOutcome, JobRun, Recorded, Scheduler};
use crate::store::{BatchRow, Store, StoredScores, COMBINED};
use crate::{Error, Result};

pub struct Coordinator {
    pub config: CoordinatorConfig,
    pub model: Arc<ModelInfo>,
    store: Store,
    sched: Mutex<Scheduler>,
    /// Woken when batches become available.
    work: Notify,
    /// Bumped on every change a watcher could see.
    changes: watch::Sender<u64>,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Coordinator {
    /// Loads the model's identity, opens the store and resumes its unfinished jobs (their
    /// stored batches are not computed again).
    pub async fn open(config: CoordinatorConfig) -> Result<Arc<Self>> {
        let dir = config.model_dir.clone();
        let model = Arc::new(tokio::task::spawn_blocking(move || ModelInfo::load(&dir)).await??);
        let db = config.db.clone();
        let store = tokio::task::spawn_blocking(move || Store::open(&db)).await??;
        let coord = Arc::new(Coordinator {
            sched: Mutex::new(Scheduler::new(config.max_attempts)),
            config,
            model,
            store,
            work: Notify::new(),
            changes: watch::Sender::new(0),
        });
        coord.resume().await?;
        Ok(coord)
    }

    async fn resume(&self) -> Result<()> {
        let jobs = self.store.run(|s| s.jobs()).await?;
        for job in jobs.into_iter().filter(|j| !j.state.is_terminal()) {
            let mut status = v1::JobStatus {
                job_id: job.id.clone(),
                label: job.label.clone(),
                created_unix_ms: job.created_ms,
                ..Default::default()
            };
            if job.model_fingerprint != self.model.fingerprint {
                let e = Error::ModelChanged {
                    stored: job.model_fingerprint.clone(),
                    current: self.model.fingerprint.clone(),
                };
                self.finish_unreduced(&mut status, v1::JobState::Failed, e.to_string())
                    .await?;
                continue;
            }
            let (planned, _) = self.plan_request(job.request).await?;
            let planned = match planned {
                Ok(p) => Arc::new(p),
                Err(e) => {
                    self.finish_unreduced(&mut status, v1::JobState::Failed, e.to_string())
                        .await?;
                    continue;
                }
            };
            let id = job.id.clone();
            let done = self.store.run(move |s| s.done_batches(&id)).await?;
            let run = JobRun::new(
                job.id.clone(),
                job.label,
                job.created_ms,
                planned,
                &done,
                job.retried,
            );
            let complete = run.is_complete();
            tracing::info!(job = %job.id, resumed = done.len(), total = run.plan.n_batches(), "resuming job");
            self.lock().add_job(run);
            if complete {
                self.finalize(&job.id).await?;
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
        let (planned, req) = self.plan_request(req).await?;
        let planned: JobPlan = planned?;
        let total = planned.n_batches();
        let created = now_ms();
        let fp = self.model.fingerprint.clone();
        let label = req.label.clone();
        let id = self
            .store
            .run(move |s| s.insert_job(&req.label, &req, &fp, created))
            .await?;
        self.lock().add_job(JobRun::new(
            id.clone(),
            label,
            created,
            Arc::new(planned),
            &[],
            0,
        ));
        metrics::job_submitted();
        tracing::info!(job = %id, batches = total, "job queued");
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
        let run = self.lock().remove(id);
        let Some(run) = run else {
            return self.status(id).await;
        };
        let mut status = run.status();
        self.finish_unreduced(&mut status, v1::JobState::Cancelled, String::new())
            .await?;
        tracing::info!(job = %id, "job cancelled");
        Ok(status)
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
        let id = s.register_worker(&hello.name, &hello.device, now_ms());
        metrics::workers_connected(s.n_workers());
        Ok(id)
    }

    /// Waits for the next batch for `worker`. Cancel-safe: a batch is leased only when this
    /// returns it.
    pub async fn next_batch(&self, worker: &str) -> v1::BatchAssignment {
        loop {
            let notified = self.work.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let leased = self.lock().assign(worker);
            if let Some((job, batch, plan)) = leased {
                self.changed();
                return plan
                    .assignment(&job, batch)
                    .expect("leased batches are in the plan");
            }
            notified.await;
        }
    }

    /// Stores a batch result, then counts it; reduces the job after its last batch.
    pub async fn complete(&self, worker: &str, r: v1::BatchResult, seconds: f64) -> Result<()> {
        let expected = self.lock().job(&r.job_id).map(|j| {
            (
                j.plan.result_len(r.batch),
                j.plan.unit_prompts(r.batch, r.n_prompts),
            )
        });
        let Some((expected, prompts)) = expected else {
            self.lock()
                .record_result(worker, &r.job_id, r.batch, r.n_prompts);
            return Ok(()); // cancelled or finished meanwhile
        };
        if r.scores.len() != expected {
            let e = Error::ResultLength {
                job: r.job_id.clone(),
                batch: r.batch,
                got: r.scores.len(),
                expected,
            };
            return self
                .fail_batch(worker, &r.job_id, r.batch, &e.to_string())
                .await;
        }
        let (job, batch) = (r.job_id.clone(), r.batch);
        let row = BatchRow {
            batch: r.batch,
            scores: r.scores,
            clean_logit_diff_sum: r.clean_logit_diff_sum,
            n_prompts: r.n_prompts,
        };
        let (j, w) = (job.clone(), worker.to_string());
        self.store.run(move |s| s.save_batch(&j, &row, &w)).await?;
        let recorded = self.lock().record_result(worker, &job, batch, prompts);
        if recorded != Recorded::Ignored {
            metrics::batch_done(seconds, prompts);
        }
        self.changed();
        if recorded == (Recorded::New { job_complete: true }) {
            self.finalize(&job).await?;
        }
        Ok(())
    }

    pub async fn fail_batch(&self, worker: &str, job: &str, batch: u32, error: &str) -> Result<()> {
        metrics::batch_failed();
        tracing::warn!(%worker, %job, batch, %error, "batch failed");
        let outcome = self.lock().record_failure(worker, job, batch, error);
        match outcome {
            FailureOutcome::Retry => {
                self.persist_retried(job).await?;
                self.work.notify_waiters();
            }
            FailureOutcome::JobFailed(msg) => {
                let removed = self.lock().remove(job);
                if let Some(run) = removed {
                    let mut status = run.status();
                    self.finish_unreduced(&mut status, v1::JobState::Failed, msg)
                        .await?;
                }
            }
            FailureOutcome::Ignored => {}
        }
        self.changed();
        Ok(())
    }

    /// `worker` left (disconnected, hung, drained): its batch goes back to the queue.
    pub async fn release_worker(&self, worker: &str) {
        let (requeued, n) = {
            let mut s = self.lock();
            (s.release_worker(worker), s.n_workers())
        };
        metrics::workers_connected(n);
        if let Some(job) = requeued {
            metrics::batch_retried();
            tracing::warn!(%worker, %job, "worker left holding a batch; handing it out again");
            if let Err(e) = self.persist_retried(&job).await {
                tracing::error!(%job, error = %e, "cannot store the retry count");
            }
            self.work.notify_waiters();
        }
        self.changed();
    }

    async fn persist_retried(&self, job: &str) -> Result<()> {
        let retried = self.lock().job(job).map(|j| j.retried);
        if let Some(n) = retried {
            let j = job.to_string();
            self.store.run(move |s| s.set_retried(&j, n)).await?;
        }
        Ok(())
    }

    /// Reduces a complete job from its stored batches, stores the scores and the final
    /// status in one transaction, and retires the job.
    async fn finalize(&self, id: &str) -> Result<()> {
        let Some((plan, mut status)) = self.lock().job(id).map(|j| (j.plan.clone(), j.status()))
        else {
            return Ok(());
        };
        let job = id.to_string();
        let model = self.model.clone();
        status.state = v1::JobState::Done as i32;
        status.finished_unix_ms = now_ms();
        let final_status = status.clone();
        if plan.circuits.is_some() {
            self.store
                .run(move |s| {
                    let mut reducer = CurveReducer::new(&plan);
                    s.for_each_batch(&job, |row| reducer.add(&row))?;
                    let curve = reducer.finish(&job)?;
                    let json = serde_json::to_string(&curve).expect("a curve serializes");
                    s.finish_curve(&job, &curve.scores_from, &json, &final_status)
                })
                .await?;
            self.retire(id, &status);
            return Ok(());
        }
        self.store
            .run(move |s| {
                let mut reducer = JobReducer::new(&plan);
                s.for_each_batch(&job, |row| reducer.add(&row))?;
                let scores = reducer.finish();
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
                s.finish_job(&job, &rows, &final_status)
            })
            .await?;
        self.retire(id, &status);
        Ok(())
    }

    fn retire(&self, id: &str, status: &v1::JobStatus) {
        self.lock().remove(id);
        metrics::job_finished("done");
        tracing::info!(job = %id, batches = status.batches_total, "job done");
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

    /// Ends a job without scores (failed or cancelled), keeping a failed job's batch results.
    async fn finish_unreduced(
        &self,
        status: &mut v1::JobStatus,
        state: v1::JobState,
        error: String,
    ) -> Result<()> {
        status.state = state as i32;
        status.error = error;
        status.finished_unix_ms = now_ms();
        let s = status.clone();
        let keep_batches = state == v1::JobState::Failed;
        self.store
            .run(move |store| {
                if keep_batches {
                    store.fail_job(&s.job_id, &s)
                } else {
                    store.finish_job(&s.job_id, &[], &s)
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
