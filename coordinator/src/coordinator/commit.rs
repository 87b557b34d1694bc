//! Group commits of running jobs' sums, and a finished job's scores, written to the store.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use attrib_proto::{v1, ScoresMetadata};

use crate::clock::now_ms;
use crate::metrics;
use crate::store::{Store, COMBINED};
use crate::sums::JobSums;
use crate::Result;

use super::{lock, Coordinator};

impl Coordinator {
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
    pub(super) async fn commit_job(
        &self,
        id: &str,
        sums: &Arc<Mutex<JobSums>>,
        retried: u32,
    ) -> Result<()> {
        let Some(snap) = lock(sums).snapshot() else {
            return Ok(());
        };
        // Read after the snapshot: a unit is folded only once its class is pinned, so the
        // class read now is the one of every unit in the snapshot.
        let class = self
            .lock()
            .job(id)
            .map(|j| j.device_class().to_string())
            .unwrap_or_default();
        let t0 = std::time::Instant::now();
        let (job, saved) = (id.to_string(), snap.clone());
        match self
            .store
            .run(move |s| s.save_progress(&job, &saved, retried, &class))
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
    pub(super) async fn finalize_or_retry(&self, id: &str) {
        if let Err(e) = self.finalize(id).await {
            tracing::error!(job = %id, error = %e, "cannot store the finished job; will retry");
            self.lock().store_later(id);
        }
    }

    /// Stores a complete job's scores (or curve) and final status in one transaction, drops
    /// its running state and retires it.
    pub(super) async fn finalize(&self, id: &str) -> Result<()> {
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
        let class = status.device_class.clone();
        self.store
            .run(move |s| {
                let meta = |d: Option<usize>, r: &attrib_proto::Reduced| -> ScoresMetadata {
                    ScoresMetadata {
                        device_class: class.clone(),
                        ..plan.metadata(d, &model, r)
                    }
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

    pub(super) fn retire(&self, id: &str, status: &v1::JobStatus) {
        self.lock().remove(id);
        metrics::job_finished("done");
        tracing::info!(job = %id, units = status.units_total, "job done");
        self.changed();
    }

    /// Stores a job's end without scores (failed or cancelled). A failed job keeps its
    /// committed sums; a cancelled one's are dropped.
    pub(super) async fn store_unreduced(&self, status: &v1::JobStatus) -> Result<()> {
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

/// Group commits until the coordinator closes: every `commit_interval`, or as soon as
/// `commit_units` units are folded.
pub(super) fn spawn_committer(coord: Arc<Coordinator>) {
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
