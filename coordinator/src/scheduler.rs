//! Which unit goes to which worker, and what each job has done: the coordinator's state as
//! plain data with no I/O, so tests call it directly. Jobs are served in submission order and
//! a job's units lowest first; a worker holds up to its `units_in_flight` units at once, and
//! every unit of a worker that leaves goes back to the front of the queue. Every lost unit
//! (a worker's error, a refused result, a disconnect, a timeout) is an attempt: a unit that
//! reaches `max_attempts` fails its job, with the reasons of all its attempts.
//!
//! A job's units all go to workers of one device class (f32 partials of two classes differ,
//! so a mixed job's bits would depend on who took what): the class it names, or else the
//! class of the first worker that takes a unit. That choice is pinned once the job names it or
//! a result of that class is accepted; until then, a chosen class whose workers all left
//! without a result is chosen again by the next worker, so the job does not wait for them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use attrib_proto::v1;

use crate::plan::JobPlan;
use crate::sums::JobSums;

mod class;

/// A job being computed.
pub struct JobRun {
    pub id: String,
    pub label: String,
    pub created_ms: i64,
    pub plan: Arc<JobPlan>,
    /// Its exact sums and folded units (the source of truth for what is counted).
    pub sums: Arc<Mutex<JobSums>>,
    state: v1::JobState,
    done: Vec<bool>,
    pending: BTreeSet<u32>,
    /// Why each failed attempt of a unit failed (units that never failed are absent).
    attempts: BTreeMap<u32, Vec<String>>,
    n_done: u32,
    prompts_done: u64,
    pub retried: u32,
    resumed: u32,
    computed: u32,
    committed: u32,
    started: Option<Instant>,
    last_result: Option<Instant>,
    /// Set by `Scheduler::end`.
    error: String,
    finished_ms: i64,
    /// Every unit is folded and the job is being stored as done: it can no longer end
    /// otherwise.
    finishing: bool,
    /// Complete, but the store could not take it yet (a full disk): to be stored again.
    unstored: bool,
    /// The device class of every unit it hands out; empty until chosen.
    device_class: String,
    /// The class can no longer change (named, or a result of it accepted).
    class_pinned: bool,
}

impl JobRun {
    /// A job whose `sums` may already hold units (resumed from the store).
    pub fn new(
        id: String,
        label: String,
        created_ms: i64,
        plan: Arc<JobPlan>,
        sums: JobSums,
        retried: u32,
    ) -> Self {
        let n = plan.n_units();
        let folded = sums.folded_units();
        let mut run = JobRun {
            id,
            label,
            created_ms,
            plan,
            sums: Arc::new(Mutex::new(sums)),
            state: v1::JobState::Queued,
            done: vec![false; n as usize],
            pending: (0..n).collect(),
            attempts: BTreeMap::new(),
            n_done: 0,
            prompts_done: 0,
            retried,
            resumed: 0,
            computed: 0,
            committed: 0,
            started: None,
            last_result: None,
            error: String::new(),
            finished_ms: 0,
            finishing: false,
            unstored: false,
            device_class: String::new(),
            class_pinned: false,
        };
        for unit in folded {
            if run.mark_done(unit) {
                run.resumed += 1;
            }
        }
        run.committed = run.resumed;
        if run.n_done > 0 {
            run.state = v1::JobState::Running;
        }
        run
    }

    fn mark_done(&mut self, unit: u32) -> bool {
        match self.done.get_mut(unit as usize) {
            Some(d) if !*d => {
                *d = true;
                self.pending.remove(&unit);
                self.n_done += 1;
                self.prompts_done += self.plan.unit_prompts(unit) as u64;
                true
            }
            _ => false,
        }
    }

    pub fn is_complete(&self) -> bool {
        self.n_done as usize == self.done.len()
    }

    pub fn status(&self) -> v1::JobStatus {
        let groups = self.plan.circuits.as_ref().map_or(1, |c| c.groups());
        let datasets = self
            .plan
            .datasets
            .iter()
            .map(|d| {
                let range = d.first_unit as usize..(d.first_unit + d.n_units(groups)) as usize;
                v1::DatasetProgress {
                    name: d.name.clone(),
                    train_prompts: d.prompts,
                    units_total: d.n_units(groups),
                    units_done: self.done[range].iter().filter(|&&x| x).count() as u32,
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
            units_total: self.done.len() as u32,
            units_done: self.n_done,
            units_retried: self.retried,
            units_resumed: self.resumed,
            units_computed: self.computed,
            prompts_done: self.prompts_done,
            datasets,
            error: self.error.clone(),
            created_unix_ms: self.created_ms,
            finished_unix_ms: self.finished_ms,
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
            batches_per_unit: self.plan.batches_per_unit as u32,
            units_committed: self.committed,
            settings: Some((&self.plan.settings).into()),
            device_class: self.device_class.clone(),
            waiting_for: String::new(),
        }
    }
}

/// A connected worker.
pub struct WorkerEntry {
    pub name: String,
    pub device: String,
    /// WorkerHello.device_class: it gets units of jobs of this class only.
    pub device_class: String,
    /// Units it holds, oldest first.
    pub held: Vec<(String, u32)>,
    pub units_in_flight: u32,
    pub units_done: u32,
    pub connected_ms: i64,
    /// When its last message arrived (heartbeats included).
    pub last_heard_ms: i64,
    /// Memory it can give one unit (0: undeclared, any unit is sent).
    pub memory_bytes: u64,
}

impl WorkerEntry {
    fn can_hold(&self, plan: &JobPlan) -> bool {
        self.memory_bytes == 0 || plan.unit_memory <= self.memory_bytes
    }
}

/// What a result did.
#[derive(Debug, PartialEq)]
pub enum Recorded {
    /// Counted; `job_complete` when it was the job's last unit.
    New { job_complete: bool },
    /// The unit was already done, or its job is no longer active.
    Ignored,
}

/// What a failure did.
#[derive(Debug, PartialEq)]
pub enum FailureOutcome {
    /// The unit goes back to the queue.
    Retry,
    /// The unit failed `max_attempts` times: the job fails.
    JobFailed(String),
    Ignored,
}

pub struct Scheduler {
    jobs: Vec<JobRun>,
    workers: BTreeMap<String, WorkerEntry>,
    next_worker: u64,
    max_attempts: u32,
    /// Units are handed out from the oldest `max_active` jobs only; later ones wait queued.
    max_active: usize,
}

impl Scheduler {
    pub fn new(max_attempts: u32, max_active: usize) -> Self {
        Scheduler {
            jobs: Vec::new(),
            workers: BTreeMap::new(),
            next_worker: 0,
            max_attempts: max_attempts.max(1),
            max_active: max_active.max(1),
        }
    }

    /// Jobs waiting behind the `max_active` oldest.
    pub fn n_waiting(&self) -> usize {
        self.jobs.len().saturating_sub(self.max_active)
    }

    /// Memory of the connected workers that declared it (0 when none did).
    pub fn largest_worker_memory(&self) -> Option<u64> {
        self.workers.values().map(|w| w.memory_bytes).max()
    }

    pub fn add_job(&mut self, run: JobRun) {
        self.jobs.push(run);
    }

    pub fn job(&self, id: &str) -> Option<&JobRun> {
        self.jobs.iter().find(|j| j.id == id)
    }

    fn job_mut(&mut self, id: &str) -> Option<&mut JobRun> {
        self.jobs.iter_mut().find(|j| j.id == id)
    }

    pub fn jobs(&self) -> &[JobRun] {
        &self.jobs
    }

    /// Takes `id` out of the active jobs (finished, failed or cancelled). Units workers hold
    /// for it are forgotten; their results will be ignored.
    pub fn remove(&mut self, id: &str) -> Option<JobRun> {
        let i = self.jobs.iter().position(|j| j.id == id)?;
        for w in self.workers.values_mut() {
            w.held.retain(|(j, _)| j != id);
        }
        Some(self.jobs.remove(i))
    }

    /// Ends `id` without scores (failed or cancelled): no unit of it is handed out or counted
    /// any more, and its status says so while the store records it; `remove` it after.
    /// Returns its final status, sums and retry count, or `None` if it is not running.
    pub fn end(
        &mut self,
        id: &str,
        state: v1::JobState,
        error: String,
        now_ms: i64,
    ) -> Option<(v1::JobStatus, Arc<Mutex<JobSums>>, u32)> {
        let run = self
            .jobs
            .iter_mut()
            .find(|j| j.id == id)
            .filter(|r| !r.state.is_terminal() && !r.finishing)?;
        run.state = state;
        run.error = error;
        run.finished_ms = now_ms;
        run.pending.clear();
        let ended = (run.status(), run.sums.clone(), run.retried);
        for w in self.workers.values_mut() {
            w.held.retain(|(j, _)| j != id);
        }
        Some(ended)
    }

    pub fn register_worker(
        &mut self,
        name: &str,
        device: &str,
        device_class: &str,
        units_in_flight: u32,
        memory_bytes: u64,
        now_ms: i64,
    ) -> String {
        self.next_worker += 1;
        let id = format!("worker-{}", self.next_worker);
        self.workers.insert(
            id.clone(),
            WorkerEntry {
                name: name.to_string(),
                device: device.to_string(),
                device_class: device_class.to_string(),
                held: Vec::new(),
                units_in_flight: units_in_flight.max(1),
                units_done: 0,
                connected_ms: now_ms,
                last_heard_ms: now_ms,
                memory_bytes,
            },
        );
        id
    }

    pub fn worker_name(&self, worker: &str) -> Option<&str> {
        self.workers.get(worker).map(|w| w.name.as_str())
    }

    pub fn n_workers(&self) -> usize {
        self.workers.len()
    }

    /// The next unit for `worker` (the oldest active job's lowest pending unit that fits the
    /// worker's memory and class), if it holds fewer than its `units_in_flight`. A job with
    /// no class yet takes the worker's.
    pub fn assign(&mut self, worker: &str) -> Option<(String, u32, Arc<JobPlan>)> {
        let entry = self.workers.get(worker)?;
        if entry.held.len() >= entry.units_in_flight as usize {
            return None;
        }
        let i = self.jobs.iter().take(self.max_active).position(|j| {
            !j.pending.is_empty() && entry.can_hold(&j.plan) && self.class_open(j, entry)
        })?;
        let class = entry.device_class.clone();
        let job = &mut self.jobs[i];
        job.device_class = class; // the first worker's, or a reopened class's new one
        let unit = job.pending.pop_first()?;
        job.state = v1::JobState::Running;
        job.started.get_or_insert_with(Instant::now);
        let leased = (job.id.clone(), unit, job.plan.clone());
        self.workers
            .get_mut(worker)?
            .held
            .push((leased.0.clone(), unit));
        Some(leased)
    }

    /// `worker` answered `unit` of `job` (a result or a failure): it no longer holds it.
    /// Returns whether it held it (else the answer is a late one, from an earlier session, or
    /// for a job that ended).
    pub fn answered(&mut self, worker: &str, job: &str, unit: u32) -> bool {
        let Some(w) = self.workers.get_mut(worker) else {
            return false;
        };
        match w.held.iter().position(|(j, u)| j == job && *u == unit) {
            Some(i) => {
                w.held.remove(i);
                true
            }
            None => false,
        }
    }

    /// Units `worker` holds now.
    pub fn held(&self, worker: &str) -> usize {
        self.workers.get(worker).map_or(0, |w| w.held.len())
    }

    /// A result of `unit` of `job` was folded (`new`) or found already folded.
    pub fn record_result(&mut self, worker: &str, job: &str, unit: u32, new: bool) -> Recorded {
        if let Some(w) = self.workers.get_mut(worker) {
            w.units_done += 1;
        }
        let Some(run) = self.job_mut(job).filter(|r| !r.state.is_terminal()) else {
            return Recorded::Ignored;
        };
        run.computed += 1;
        run.last_result = Some(Instant::now());
        if !new || !run.mark_done(unit) {
            return Recorded::Ignored;
        }
        run.finishing = run.is_complete();
        Recorded::New {
            job_complete: run.finishing,
        }
    }

    /// Complete job `id` could not be stored: `take_unstored` returns it to try again.
    pub fn store_later(&mut self, id: &str) {
        if let Some(run) = self.job_mut(id) {
            run.unstored = true;
        }
    }

    /// Complete jobs waiting to be stored, which are no longer waiting.
    pub fn take_unstored(&mut self) -> Vec<String> {
        self.jobs
            .iter_mut()
            .filter_map(|j| std::mem::take(&mut j.unstored).then(|| j.id.clone()))
            .collect()
    }

    /// `units` more of `job` are committed to the store.
    pub fn record_commit(&mut self, job: &str, units: u32) {
        if let Some(run) = self.job_mut(job) {
            run.committed += units;
        }
    }

    /// An attempt of `unit` of `job` was lost (`reason` says how and on which worker): the
    /// unit goes back to the queue, or its job fails once it has failed `max_attempts` times.
    /// `describe` names the unit in that message.
    pub fn record_failure(
        &mut self,
        job: &str,
        unit: u32,
        reason: &str,
        describe: impl Fn(&JobPlan, u32) -> String,
    ) -> FailureOutcome {
        let max = self.max_attempts as usize;
        let Some(run) = self.job_mut(job).filter(|r| !r.state.is_terminal()) else {
            return FailureOutcome::Ignored;
        };
        // A unit already folded (a late result came first) has nothing left to fail.
        if run.done.get(unit as usize).is_none_or(|&d| d) {
            return FailureOutcome::Ignored;
        }
        let reasons = run.attempts.entry(unit).or_default();
        reasons.push(reason.to_string());
        if reasons.len() >= max {
            return FailureOutcome::JobFailed(format!(
                "{} failed {} attempts: {}",
                describe(&run.plan, unit),
                reasons.len(),
                distinct_reasons(reasons)
            ));
        }
        run.pending.insert(unit);
        run.retried += 1;
        FailureOutcome::Retry
    }

    /// `unit` of `job` goes back to the queue without losing an attempt (its result was
    /// sound but could not be folded: a group result that overlaps folded units).
    pub fn requeue(&mut self, job: &str, unit: u32) {
        if let Some(run) = self.job_mut(job).filter(|r| !r.state.is_terminal()) {
            if run.done.get(unit as usize) == Some(&false) {
                run.pending.insert(unit);
            }
        }
    }

    /// `worker` is gone (`why`: disconnected, timed out, ...): each unit it held lost an
    /// attempt. Returns each such unit's job and outcome.
    pub fn release_worker(
        &mut self,
        worker: &str,
        why: &str,
        describe: impl Fn(&JobPlan, u32) -> String + Copy,
    ) -> Vec<(String, FailureOutcome)> {
        let Some(entry) = self.workers.remove(worker) else {
            return Vec::new();
        };
        let reason = format!("{worker} ({}) {why}", entry.name);
        entry
            .held
            .into_iter()
            .map(|(job, unit)| {
                let outcome = self.record_failure(&job, unit, &reason, describe);
                (job, outcome)
            })
            .collect()
    }

    /// Records that a message from `worker` arrived at `now_ms`.
    pub fn heard_from(&mut self, worker: &str, now_ms: i64) {
        if let Some(w) = self.workers.get_mut(worker) {
            w.last_heard_ms = now_ms;
        }
    }

    /// Removes `worker` without touching the units it held (the process is stopping).
    pub fn forget_worker(&mut self, worker: &str) {
        self.workers.remove(worker);
    }

    pub fn workers(&self) -> Vec<v1::WorkerInfo> {
        self.workers
            .iter()
            .map(|(id, w)| v1::WorkerInfo {
                worker_id: id.clone(),
                name: w.name.clone(),
                device: w.device.clone(),
                device_class: w.device_class.clone(),
                current_job: w.held.first().map(|c| c.0.clone()).unwrap_or_default(),
                current_units: w.held.iter().map(|c| c.1).collect(),
                units_done: w.units_done,
                connected_unix_ms: w.connected_ms,
                last_heard_unix_ms: w.last_heard_ms,
                units_in_flight: w.units_in_flight,
                memory_bytes: w.memory_bytes,
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

/// "A (2 times); B": each distinct reason once, in the order they first came.
fn distinct_reasons(reasons: &[String]) -> String {
    let mut counted: Vec<(&str, usize)> = Vec::new();
    for r in reasons {
        match counted.iter_mut().find(|(seen, _)| seen == r) {
            Some((_, n)) => *n += 1,
            None => counted.push((r, 1)),
        }
    }
    counted
        .iter()
        .map(|&(r, n)| match n {
            1 => r.to_string(),
            n => format!("{r} ({n} times)"),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::tiny_plan;

    fn desc(_: &JobPlan, unit: u32) -> String {
        format!("unit {unit}")
    }

    fn sched_with_job(n_units_expected: u32) -> Scheduler {
        let plan = Arc::new(tiny_plan(4));
        assert_eq!(plan.n_units(), n_units_expected);
        let mut s = Scheduler::new(2, 4);
        let sums = JobSums::new(&plan);
        s.add_job(JobRun::new("j".into(), String::new(), 0, plan, sums, 0));
        s
    }

    #[test]
    fn workers_hold_up_to_their_units_and_a_departed_workers_units_come_first() {
        let mut s = sched_with_job(4);
        let a = s.register_worker("a", "cpu", "c", 2, 0, 0);
        let b = s.register_worker("b", "cpu", "c", 1, 0, 0);
        assert_eq!(s.assign(&a).unwrap().1, 0);
        assert_eq!(s.assign(&a).unwrap().1, 1);
        assert!(s.assign(&a).is_none(), "a holds its 2 units");
        assert_eq!(s.assign(&b).unwrap().1, 2);
        assert!(s.assign(&b).is_none(), "b holds 1");
        assert_eq!(s.workers()[0].current_units, vec![0, 1]);
        let lost = s.release_worker(&a, "disconnected", desc);
        assert_eq!(
            lost,
            vec![
                ("j".to_string(), FailureOutcome::Retry),
                ("j".to_string(), FailureOutcome::Retry)
            ]
        );
        s.answered(&b, "j", 2);
        assert_eq!(
            s.record_result(&b, "j", 2, true),
            Recorded::New {
                job_complete: false
            }
        );
        assert_eq!(s.assign(&b).unwrap().1, 0, "the released units come first");
        let st = s.job("j").unwrap().status();
        assert_eq!(
            (st.units_done, st.units_retried, st.prompts_done),
            (1, 2, 4)
        );
        assert_eq!(
            s.record_result(&b, "j", 2, true),
            Recorded::Ignored,
            "a unit counts once"
        );
    }

    #[test]
    fn resumed_units_are_not_handed_out_and_failures_are_bounded() {
        let plan = Arc::new(tiny_plan(4));
        let mut sums = JobSums::new(&plan);
        for u in [0, 2] {
            let r = attrib_proto::v1::UnitResult {
                values: attrib_proto::units::f32_le_bytes(&vec![1.0; plan.graph.n_edges()]).into(),
                clean_logit_diffs: vec![0.5; 4],
                ..Default::default()
            };
            sums.fold(&plan, u, &r).unwrap();
        }
        let mut s = Scheduler::new(2, 4);
        s.add_job(JobRun::new("j".into(), String::new(), 0, plan, sums, 0));
        let w = s.register_worker("w", "cpu", "c", 1, 0, 0);
        let st = s.job("j").unwrap().status();
        assert_eq!((st.units_resumed, st.units_committed), (2, 2));
        assert_eq!(s.assign(&w).unwrap().1, 1);
        s.answered(&w, "j", 1);
        assert_eq!(s.record_failure("j", 1, "oom", desc), FailureOutcome::Retry);
        assert_eq!(s.assign(&w).unwrap().1, 1);
        s.answered(&w, "j", 1);
        match s.record_failure("j", 1, "oom", desc) {
            FailureOutcome::JobFailed(m) => {
                assert!(m.contains("unit 1 failed 2 attempts: oom (2 times)"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.assign(&w).unwrap().1, 3);
    }

    #[test]
    fn a_done_unit_cannot_fail_and_a_complete_job_cannot_be_ended() {
        let mut s = sched_with_job(4);
        let w = s.register_worker("w", "cpu", "c", 4, 0, 0);
        for u in 0..4 {
            assert_eq!(s.assign(&w).unwrap().1, u);
        }
        s.answered(&w, "j", 0);
        s.record_result(&w, "j", 0, true);
        // Another worker's failure of the folded unit (a late result came first) is moot.
        assert_eq!(
            s.record_failure("j", 0, "oom", desc),
            FailureOutcome::Ignored
        );
        for u in 1..4 {
            let done = s.record_result(&w, "j", u, true);
            assert_eq!(done == (Recorded::New { job_complete: true }), u == 3);
        }
        // Being stored as done: a cancel or a failure now changes nothing.
        let ended = s.end("j", v1::JobState::Cancelled, String::new(), 1);
        assert!(ended.is_none());
        assert_eq!(s.job("j").unwrap().status().state(), v1::JobState::Running);
    }

    #[test]
    fn a_unit_lost_with_its_worker_counts_an_attempt_and_fails_its_job_with_the_reasons() {
        let mut s = sched_with_job(4);
        let a = s.register_worker("a", "cpu", "c", 1, 0, 0);
        assert_eq!(s.assign(&a).unwrap().1, 0);
        assert_eq!(
            s.release_worker(&a, "timed out", desc),
            vec![("j".to_string(), FailureOutcome::Retry)]
        );
        let b = s.register_worker("b", "cpu", "c", 1, 0, 0);
        assert_eq!(s.assign(&b).unwrap().1, 0, "the lost unit comes back first");
        match s.release_worker(&b, "disconnected", desc).pop() {
            Some((_, FailureOutcome::JobFailed(m))) => assert_eq!(
                m,
                "unit 0 failed 2 attempts: worker-1 (a) timed out; worker-2 (b) disconnected"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn units_go_only_to_workers_that_can_hold_them_and_only_from_the_active_jobs() {
        let plan = Arc::new(tiny_plan(4));
        let needed = plan.unit_memory;
        assert!(needed > 0);
        let mut s = Scheduler::new(2, 1);
        for id in ["j1", "j2"] {
            let sums = JobSums::new(&plan);
            s.add_job(JobRun::new(
                id.into(),
                String::new(),
                0,
                plan.clone(),
                sums,
                0,
            ));
        }
        assert_eq!(s.n_waiting(), 1);
        let small = s.register_worker("small", "cpu", "c", 8, needed - 1, 0);
        assert!(s.assign(&small).is_none(), "too small for any unit");
        let big = s.register_worker("big", "cpu", "c", 8, needed, 0);
        assert_eq!(s.largest_worker_memory(), Some(needed));
        let leased: Vec<String> = std::iter::from_fn(|| s.assign(&big).map(|l| l.0)).collect();
        assert_eq!(
            leased,
            vec!["j1"; 4],
            "j2 waits while j1 is the one active job"
        );
    }
}
