//! Which device class a job runs on (see the scheduler's header): chosen by the job or by
//! its first worker, pinned by the first result accepted, and what a job waits for when no
//! connected worker has its class. Plain data, like the rest of the scheduler.

use attrib_proto::v1;

use super::{JobRun, Scheduler, WorkerEntry};

impl JobRun {
    /// Sets the job's device class: `named` by its request, or stored with its committed
    /// units (pinned when it has some: they were computed on that class).
    pub fn with_device_class(mut self, class: String, named: bool) -> Self {
        self.class_pinned = named || (!class.is_empty() && self.n_done > 0);
        self.device_class = class;
        self
    }

    pub fn device_class(&self) -> &str {
        &self.device_class
    }
}

impl Scheduler {
    /// Whether `worker` may take units of `job`: of its class, or of a job whose class is
    /// still open (none yet, or an unpinned one no connected worker computes any more).
    pub(super) fn class_open(&self, job: &JobRun, worker: &WorkerEntry) -> bool {
        job.device_class == worker.device_class
            || job.device_class.is_empty()
            || (!job.class_pinned
                && !self
                    .workers
                    .values()
                    .any(|w| w.held.iter().any(|(j, _)| *j == job.id)))
    }

    /// A result of `job` computed on `class` is about to be folded: `Err` with the job's class
    /// when that is another (the result must be refused), else the class is pinned (under
    /// this lock, so no worker of another class can take the job over meanwhile). A job with
    /// no class yet takes this one (a late result that came before any assignment).
    pub fn accept_class(&mut self, job: &str, class: &str) -> Result<(), String> {
        let Some(run) = self.job_mut(job) else {
            return Ok(()); // ended: the caller drops the result
        };
        if run.device_class.is_empty() {
            run.device_class = class.to_string();
        }
        if run.device_class != class {
            return Err(run.device_class.clone());
        }
        run.class_pinned = true;
        Ok(())
    }

    /// `run`'s status, saying when it waits for a worker of its class.
    pub fn status_of(&self, run: &JobRun) -> v1::JobStatus {
        let mut st = run.status();
        let waits = !run.pending.is_empty()
            && !run.device_class.is_empty()
            && run.class_pinned
            && !self
                .workers
                .values()
                .any(|w| w.device_class == run.device_class);
        if waits {
            st.waiting_for = format!("no connected worker of class {}", run.device_class);
        }
        st
    }

    /// The status of active job `id`.
    pub fn status(&self, id: &str) -> Option<v1::JobStatus> {
        self.job(id).map(|r| self.status_of(r))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::plan::tests::tiny_plan;
    use crate::plan::JobPlan;
    use crate::sums::JobSums;

    fn desc(_: &JobPlan, unit: u32) -> String {
        format!("unit {unit}")
    }

    fn with_jobs(classes: &[(&str, &str)]) -> Scheduler {
        let plan = Arc::new(tiny_plan(4));
        let mut s = Scheduler::new(2, 4);
        for &(id, class) in classes {
            let sums = JobSums::new(&plan);
            let run = JobRun::new(id.into(), String::new(), 0, plan.clone(), sums, 0);
            s.add_job(run.with_device_class(class.into(), !class.is_empty()));
        }
        s
    }

    #[test]
    fn a_jobs_units_go_to_workers_of_one_device_class() {
        let mut s = with_jobs(&[("j1", ""), ("j2", "b")]);
        let a = s.register_worker("a", "cpu", "a", 1, 0, 0);
        assert_eq!(s.assign(&a).unwrap().0, "j1", "j2 named class b");
        assert_eq!(
            s.status("j1").unwrap().device_class,
            "a",
            "its first worker's"
        );
        assert!(s.assign(&a).is_none());
        let waits = s.status("j2").unwrap().waiting_for;
        assert_eq!(waits, "no connected worker of class b");
        let b = s.register_worker("b", "cpu", "b", 8, 0, 0);
        assert_eq!(s.status("j2").unwrap().waiting_for, "");
        assert_eq!(s.workers()[1].device_class, "b");
        let leased: Vec<_> = std::iter::from_fn(|| s.assign(&b).map(|l| (l.0, l.1))).collect();
        let j2: Vec<_> = (0..4).map(|u| ("j2".to_string(), u)).collect();
        assert_eq!(leased, j2, "b never takes j1, whose class is a");
        assert_eq!(s.accept_class("j1", "b"), Err("a".to_string()));
        assert_eq!(s.accept_class("j1", "a"), Ok(()));
        assert_eq!(
            s.accept_class("gone", "z"),
            Ok(()),
            "an ended job's result is dropped later"
        );
    }

    #[test]
    fn a_chosen_class_is_chosen_again_until_a_result_pins_it() {
        let mut s = with_jobs(&[("j", "")]);
        let a = s.register_worker("a", "cpu", "a", 1, 0, 0);
        assert_eq!(s.assign(&a).unwrap().1, 0);
        let b = s.register_worker("b", "cpu", "b", 1, 0, 0);
        assert!(s.assign(&b).is_none(), "a worker of class a holds a unit");
        s.release_worker(&a, "disconnected", desc);
        assert_eq!(
            s.assign(&b).unwrap().1,
            0,
            "nobody of class a holds one: b chooses"
        );
        assert_eq!(s.status("j").unwrap().device_class, "b");
        s.accept_class("j", "b").unwrap();
        s.release_worker(&b, "disconnected", desc);
        let a2 = s.register_worker("a2", "cpu", "a", 1, 0, 0);
        assert!(s.assign(&a2).is_none(), "pinned by b's result");
        let waits = s.status("j").unwrap().waiting_for;
        assert_eq!(waits, "no connected worker of class b");
        // Resumed with committed units: the stored class is pinned.
        let plan = Arc::new(tiny_plan(4));
        let mut sums = JobSums::new(&plan);
        let r = v1::UnitResult {
            values: attrib_proto::units::f32_le_bytes(&vec![1.0; plan.graph.n_edges()]).into(),
            clean_logit_diffs: vec![0.5; 4],
            ..Default::default()
        };
        sums.fold(&plan, 0, &r).unwrap();
        let run = JobRun::new("r".into(), String::new(), 0, plan, sums, 0);
        s.add_job(run.with_device_class("b".into(), false));
        assert_eq!(s.accept_class("r", "a"), Err("b".to_string()));
    }
}
