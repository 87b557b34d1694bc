//! Which batch goes to which worker, and what each job has done: the coordinator's state as
//! plain data with no I/O, so tests call it directly. Jobs are served in submission order and
//! a job's batches lowest first; a batch whose worker leaves goes back to the front.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use attrib_proto::v1;

use crate::plan::JobPlan;

/// A job being computed.
pub struct JobRun {
    pub id: String,
    pub label: String,
    pub created_ms: i64,
    pub plan: Arc<JobPlan>,
    state: v1::JobState,
    done: Vec<bool>,
    pending: BTreeSet<u32>,
    failures: Vec<u32>,
    n_done: u32,
    prompts_done: u64,
    pub retried: u32,
    resumed: u32,
    computed: u32,
    started: Option<Instant>,
    last_result: Option<Instant>,
}

impl JobRun {
    /// A job with the batches in `already_done` (batch, prompts) taken from the store.
    pub fn new(
        id: String,
        label: String,
        created_ms: i64,
        plan: Arc<JobPlan>,
        already_done: &[(u32, u32)],
        retried: u32,
    ) -> Self {
        let n = plan.n_batches();
        let mut run = JobRun {
            id,
            label,
            created_ms,
            plan,
            state: v1::JobState::Queued,
            done: vec![false; n as usize],
            pending: (0..n).collect(),
            failures: vec![0; n as usize],
            n_done: 0,
            prompts_done: 0,
            retried,
            resumed: 0,
            computed: 0,
            started: None,
            last_result: None,
        };
        for &(batch, prompts) in already_done {
            if run.mark_done(batch, prompts) {
                run.resumed += 1;
            }
        }
        if run.n_done > 0 {
            run.state = v1::JobState::Running;
        }
        run
    }

    fn mark_done(&mut self, batch: u32, prompts: u32) -> bool {
        match self.done.get_mut(batch as usize) {
            Some(d) if !*d => {
                *d = true;
                self.pending.remove(&batch);
                self.n_done += 1;
                self.prompts_done += prompts as u64;
                true
            }
            _ => false,
        }
    }

    pub fn is_complete(&self) -> bool {
        self.n_done as usize == self.done.len()
    }

    pub fn status(&self) -> v1::JobStatus {
        let datasets = self
            .plan
            .datasets
            .iter()
            .map(|d| {
                let range = d.first_batch as usize..d.first_batch as usize + d.batches.len();
                v1::DatasetProgress {
                    name: d.name.clone(),
                    train_prompts: d.prompts,
                    batches_total: d.batches.len() as u32,
                    batches_done: self.done[range].iter().filter(|&&x| x).count() as u32,
                }
            })
            .collect();
        let running_seconds = match (self.started, self.last_result) {
            (Some(s), Some(l)) => l.duration_since(s).as_secs_f64(),
            _ => 0.0,
        };
        v1::JobStatus {
            job_id: self.id.clone(),
            label: self.label.clone(),
            state: self.state as i32,
            batches_total: self.done.len() as u32,
            batches_done: self.n_done,
            batches_retried: self.retried,
            batches_resumed: self.resumed,
            batches_computed: self.computed,
            prompts_done: self.prompts_done,
            datasets,
            error: String::new(),
            created_unix_ms: self.created_ms,
            finished_unix_ms: 0,
            running_seconds,
            kind: if self.plan.circuits.is_some() {
                "faithfulness"
            } else {
                "attribution"
            }
            .into(),
            scores_job_id: self
                .plan
                .circuits
                .as_ref()
                .map(|c| c.scores_job.clone())
                .unwrap_or_default(),
        }
    }
}

/// A connected worker.
pub struct WorkerEntry {
    pub name: String,
    pub device: String,
    pub current: Option<(String, u32)>,
    pub batches_done: u32,
    pub connected_ms: i64,
}

/// What a result did.
#[derive(Debug, PartialEq)]
pub enum Recorded {
    /// Counted; `job_complete` when it was the job's last batch.
    New { job_complete: bool },
    /// The batch was already done, or its job is no longer active.
    Ignored,
}

/// What a failure did.
#[derive(Debug, PartialEq)]
pub enum FailureOutcome {
    /// The batch goes back to the queue.
    Retry,
    /// The batch failed `max_attempts` times: the job fails.
    JobFailed(String),
    Ignored,
}

pub struct Scheduler {
    jobs: Vec<JobRun>,
    workers: BTreeMap<String, WorkerEntry>,
    next_worker: u64,
    max_attempts: u32,
}

impl Scheduler {
    pub fn new(max_attempts: u32) -> Self {
        Scheduler {
            jobs: Vec::new(),
            workers: BTreeMap::new(),
            next_worker: 0,
            max_attempts: max_attempts.max(1),
        }
    }

    pub fn add_job(&mut self, run: JobRun) {
        self.jobs.push(run);
    }

    pub fn job(&self, id: &str) -> Option<&JobRun> {
        self.jobs.iter().find(|j| j.id == id)
    }

    pub fn jobs(&self) -> &[JobRun] {
        &self.jobs
    }

    /// Takes `id` out of the active jobs (finished, failed or cancelled). The batch a worker
    /// holds for it is forgotten; its result will be ignored.
    pub fn remove(&mut self, id: &str) -> Option<JobRun> {
        let i = self.jobs.iter().position(|j| j.id == id)?;
        Some(self.jobs.remove(i))
    }

    pub fn register_worker(&mut self, name: &str, device: &str, now_ms: i64) -> String {
        self.next_worker += 1;
        let id = format!("worker-{}", self.next_worker);
        self.workers.insert(
            id.clone(),
            WorkerEntry {
                name: name.to_string(),
                device: device.to_string(),
                current: None,
                batches_done: 0,
                connected_ms: now_ms,
            },
        );
        id
    }

    pub fn n_workers(&self) -> usize {
        self.workers.len()
    }

    /// The next batch for `worker`: the oldest active job's lowest pending batch.
    pub fn assign(&mut self, worker: &str) -> Option<(String, u32, Arc<JobPlan>)> {
        let entry = self.workers.get_mut(worker)?;
        if entry.current.is_some() {
            return None;
        }
        let job = self.jobs.iter_mut().find(|j| !j.pending.is_empty())?;
        let batch = job.pending.pop_first()?;
        job.state = v1::JobState::Running;
        job.started.get_or_insert_with(Instant::now);
        entry.current = Some((job.id.clone(), batch));
        Some((job.id.clone(), batch, job.plan.clone()))
    }

    /// A worker answered `batch` of `job`.
    pub fn record_result(&mut self, worker: &str, job: &str, batch: u32, prompts: u32) -> Recorded {
        if let Some(w) = self.workers.get_mut(worker) {
            if w.current.as_ref() == Some(&(job.to_string(), batch)) {
                w.current = None;
            }
            w.batches_done += 1;
        }
        let Some(run) = self.jobs.iter_mut().find(|j| j.id == job) else {
            return Recorded::Ignored;
        };
        run.computed += 1;
        run.last_result = Some(Instant::now());
        if !run.mark_done(batch, prompts) {
            return Recorded::Ignored;
        }
        Recorded::New {
            job_complete: run.is_complete(),
        }
    }

    /// A worker could not compute `batch` of `job`.
    pub fn record_failure(
        &mut self,
        worker: &str,
        job: &str,
        batch: u32,
        error: &str,
    ) -> FailureOutcome {
        if let Some(w) = self.workers.get_mut(worker) {
            w.current = None;
        }
        let max = self.max_attempts;
        let Some(run) = self.jobs.iter_mut().find(|j| j.id == job) else {
            return FailureOutcome::Ignored;
        };
        let Some(f) = run.failures.get_mut(batch as usize) else {
            return FailureOutcome::Ignored;
        };
        *f += 1;
        if *f >= max {
            return FailureOutcome::JobFailed(format!(
                "batch {batch} failed {f} times; last error: {error}"
            ));
        }
        if !run.done[batch as usize] {
            run.pending.insert(batch);
            run.retried += 1;
        }
        FailureOutcome::Retry
    }

    /// `worker` is gone: the batch it held goes back to the queue. Returns the job whose batch
    /// was requeued.
    pub fn release_worker(&mut self, worker: &str) -> Option<String> {
        let (job, batch) = self.workers.remove(worker)?.current?;
        let run = self.jobs.iter_mut().find(|j| j.id == job)?;
        if run.done[batch as usize] {
            return None;
        }
        run.pending.insert(batch);
        run.retried += 1;
        Some(job)
    }

    pub fn workers(&self) -> Vec<v1::WorkerInfo> {
        self.workers
            .iter()
            .map(|(id, w)| v1::WorkerInfo {
                worker_id: id.clone(),
                name: w.name.clone(),
                device: w.device.clone(),
                current_job: w.current.as_ref().map(|c| c.0.clone()).unwrap_or_default(),
                current_batch: w.current.as_ref().map(|c| c.1),
                batches_done: w.batches_done,
                connected_unix_ms: w.connected_ms,
            })
            .collect()
    }

    /// (queued, running) active jobs, for metrics.
    pub fn job_counts(&self) -> (usize, usize) {
        let running = self
            .jobs
            .iter()
            .filter(|j| j.state == v1::JobState::Running)
            .count();
        (self.jobs.len() - running, running)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::tiny_plan;

    fn sched_with_job(n_batches_expected: u32) -> Scheduler {
        let plan = Arc::new(tiny_plan(4));
        assert_eq!(plan.n_batches(), n_batches_expected);
        let mut s = Scheduler::new(2);
        s.add_job(JobRun::new("j".into(), String::new(), 0, plan, &[], 0));
        s
    }

    #[test]
    fn a_departed_workers_batch_is_handed_out_again_first() {
        let mut s = sched_with_job(4);
        let a = s.register_worker("a", "cpu", 0);
        let b = s.register_worker("b", "cpu", 0);
        assert_eq!(s.assign(&a).unwrap().1, 0);
        assert_eq!(s.assign(&b).unwrap().1, 1);
        assert!(s.assign(&a).is_none(), "one batch per worker at a time");
        assert_eq!(s.release_worker(&a).as_deref(), Some("j"));
        assert_eq!(
            s.record_result(&b, "j", 1, 4),
            Recorded::New {
                job_complete: false
            }
        );
        assert_eq!(s.assign(&b).unwrap().1, 0, "the released batch comes first");
        let st = s.job("j").unwrap().status();
        assert_eq!(
            (st.batches_done, st.batches_retried, st.prompts_done),
            (1, 1, 4)
        );
        assert_eq!(
            s.record_result(&b, "j", 1, 4),
            Recorded::Ignored,
            "duplicates count once"
        );
    }

    #[test]
    fn resumed_batches_are_not_handed_out_and_failures_are_bounded() {
        let plan = Arc::new(tiny_plan(4));
        let mut s = Scheduler::new(2);
        s.add_job(JobRun::new(
            "j".into(),
            String::new(),
            0,
            plan,
            &[(0, 4), (2, 4)],
            0,
        ));
        let w = s.register_worker("w", "cpu", 0);
        assert_eq!(s.job("j").unwrap().status().batches_resumed, 2);
        assert_eq!(s.assign(&w).unwrap().1, 1);
        assert_eq!(s.record_failure(&w, "j", 1, "oom"), FailureOutcome::Retry);
        assert_eq!(s.assign(&w).unwrap().1, 1);
        match s.record_failure(&w, "j", 1, "oom") {
            FailureOutcome::JobFailed(m) => assert!(
                m.contains("batch 1 failed 2 times") && m.contains("oom"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.assign(&w).unwrap().1, 3);
        assert_eq!(
            s.record_result(&w, "j", 3, 4),
            Recorded::New {
                job_complete: false
            }
        );
    }
}
