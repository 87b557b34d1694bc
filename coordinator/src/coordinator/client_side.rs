//! What clients ask of the coordinator: submit, status, list, cancel, scores, curves, workers.

use std::sync::Arc;

use attrib_proto::v1;

use crate::admission;
use crate::clock::now_ms;
use crate::metrics;
use crate::plan::{plan, plan_faithfulness, JobPlan};
use crate::scheduler::JobRun;
use crate::store::{StoredScores, COMBINED};
use crate::sums::JobSums;
use crate::{Error, Result};

use super::Coordinator;

impl Coordinator {
    /// Plans a request on a blocking thread. The request (prompt files included, up to
    /// --max-request-mib) moves there and back rather than being copied. A faithfulness job
    /// is planned from its attribution job's stored request and scores.
    pub(super) async fn plan_request(
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
        let (class, named) = (req.device_class.clone(), !req.device_class.is_empty());
        let id = self
            .store
            .run(move |s| s.insert_job(req, &fp, created))
            .await?;
        let sums = JobSums::new(&planned);
        self.lock().add_job(
            JobRun::new(id.clone(), label, created, Arc::new(planned), sums, 0)
                .with_device_class(class, named),
        );
        metrics::job_submitted();
        tracing::info!(job = %id, units = total, "job queued");
        self.work.notify_waiters();
        self.changed();
        Ok((id, total))
    }

    pub async fn status(&self, id: &str) -> Result<v1::JobStatus> {
        if let Some(status) = self.lock().status(id) {
            return Ok(status);
        }
        let job = id.to_string();
        self.store
            .run(move |s| s.final_status(&job)?.ok_or(Error::UnknownJob(job.clone())))
            .await
    }

    pub async fn list(&self) -> Result<Vec<v1::JobStatus>> {
        let mut all = self.store.run(|s| s.final_statuses()).await?;
        let s = self.lock();
        all.extend(s.jobs().iter().map(|j| s.status_of(j)));
        drop(s);
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

    /// Deletes a finished job and everything stored for it (the file shrinks); returns the
    /// database's size after. A queued or running job, or one whose scores a running
    /// faithfulness job evaluates, is refused.
    pub async fn delete(&self, id: &str) -> Result<u64> {
        {
            let s = self.lock();
            if let Some(run) = s.job(id) {
                return Err(Error::NotEnded {
                    job: id.to_string(),
                    state: run.status().state().label().to_string(),
                });
            }
            let evaluates =
                |j: &&JobRun| j.plan.circuits.as_ref().is_some_and(|c| c.scores_job == id);
            if let Some(by) = s.jobs().iter().find(evaluates) {
                return Err(Error::InUse {
                    job: id.to_string(),
                    by: by.id.clone(),
                });
            }
        }
        let job = id.to_string();
        let bytes = self
            .store
            .run(move |s| {
                s.delete_job(&job)?;
                s.size_bytes()
            })
            .await?;
        tracing::info!(job = %id, database_bytes = bytes, "job deleted");
        self.changed();
        Ok(bytes)
    }

    pub fn workers(&self) -> Vec<v1::WorkerInfo> {
        self.lock().workers()
    }

    // ---- worker side ----
}
