//! What worker sessions ask of the coordinator: joining, the next unit, results (folded in
//! memory at once), failures and leaving.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use attrib_proto::units::{Accumulator, FoldError};
use attrib_proto::v1;
use tokio::sync::broadcast;

use crate::clock::now_ms;
use crate::metrics;
use crate::plan::JobPlan;
use crate::scheduler::{FailureOutcome, Recorded};
use crate::sums::Folded;
use crate::{Error, Result};

use super::{lock, Coordinator};

impl Coordinator {
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
        // Required: a worker without a class could join any job and mix classes in it.
        attrib_proto::check_device_class(&hello.device_class).map_err(Error::WorkerClass)?;
        let mut s = self.lock();
        let id = s.register_worker(
            &hello.name,
            &hello.device,
            &hello.device_class,
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

    /// A message from `worker` arrived (for `attrib workers`' "last heard").
    pub fn heard_from(&self, worker: &str) {
        self.lock().heard_from(worker, now_ms());
    }

    /// Folds a unit's result into its job's sums (once), counts it, and finishes the job
    /// after its last unit. A result for a unit the worker does not hold is a late one (it
    /// finished after an earlier session ended): folded unless the unit is folded already.
    /// A result of another device class than its job's is never folded.
    pub async fn complete(&self, worker: &str, r: v1::UnitResult) -> Result<()> {
        metrics::result_bytes(r.values.len() + 4 * r.clean_logit_diffs.len());
        let (held, found, class) = {
            let mut s = self.lock();
            let held = s.answered(worker, &r.job_id, r.unit);
            let class = s.accept_class(&r.job_id, &r.device_class);
            let found = s.job(&r.job_id).map(|j| (j.plan.clone(), j.sums.clone()));
            (held, found, class)
        };
        let Some((plan, sums)) = found else {
            return Ok(()); // cancelled or finished meanwhile
        };
        if let Err(job_class) = class {
            let held: &[u32] = if held { &[r.unit] } else { &[] };
            let job = &r.job_id;
            return self
                .refuse_class(worker, job, held, &r.device_class, &job_class)
                .await;
        }
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
    pub(super) async fn count_result(
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
        let (held, found, class) = {
            let mut s = self.lock();
            let held: Vec<u32> = g
                .units
                .iter()
                .copied()
                .filter(|&u| s.answered(worker, job, u))
                .collect();
            let class = s.accept_class(job, &g.device_class);
            let found = s.job(job).map(|j| (j.plan.clone(), j.sums.clone()));
            (held, found, class)
        };
        let Some((plan, sums)) = found else {
            return Ok(()); // cancelled or finished meanwhile
        };
        if let Err(job_class) = class {
            return self
                .refuse_class(worker, job, &held, &g.device_class, &job_class)
                .await;
        }
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

    /// A result of `job` computed on class `got` while the job runs on `want`: refused, and
    /// each of the `held` units it answers loses an attempt and goes back to the queue (the
    /// scheduler never sends a worker units of another class, so its result contradicts its
    /// hello). A late one's units belong to others now: only logged.
    async fn refuse_class(
        &self,
        worker: &str,
        job: &str,
        held: &[u32],
        got: &str,
        want: &str,
    ) -> Result<()> {
        let reason = format!(
            "{} sent a result computed on device class {got:?}, but the job runs on {want:?}",
            self.who(worker)
        );
        tracing::warn!(%worker, %job, %reason, "result refused");
        for &u in held {
            self.unit_failed(worker, job, u, &reason).await?;
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
    pub(super) fn who(&self, worker: &str) -> String {
        match self.lock().worker_name(worker) {
            Some(name) => format!("{worker} ({name})"),
            None => worker.to_string(),
        }
    }

    /// An attempt of a unit `worker` held failed (`reason`): the unit goes back to the queue,
    /// or fails its job after `max_attempts`.
    pub(super) async fn unit_failed(
        &self,
        worker: &str,
        job: &str,
        unit: u32,
        reason: &str,
    ) -> Result<()> {
        metrics::unit_failed();
        tracing::warn!(%worker, %job, unit, %reason, "unit failed");
        let outcome = self.lock().record_failure(job, unit, reason, describe_unit);
        self.after_failure(job, outcome).await
    }

    pub(super) async fn after_failure(&self, job: &str, outcome: FailureOutcome) -> Result<()> {
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

    pub(super) async fn fail_job(&self, job: &str, msg: String) -> Result<()> {
        self.end_job(job, v1::JobState::Failed, msg)
            .await
            .map(|_| ())
    }

    /// Ends a running job without scores. It stops at once (and says so to watchers), the
    /// store records it, then it leaves the scheduler. A failed job keeps what was computed:
    /// its last sums are committed first. `None` if the job was not running.
    pub(super) async fn end_job(
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
    /// attempt, and goes back to the queue or fails its job. Not while the coordinator is
    /// leaving: a stop is nobody's failure, and the restart hands those units out again.
    pub async fn release_worker(&self, worker: &str, why: &str) {
        let (lost, n) = {
            let mut s = self.lock();
            if self.is_leaving() {
                s.forget_worker(worker);
                return;
            }
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
