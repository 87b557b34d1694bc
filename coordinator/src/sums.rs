//! A running job's exact sums and the set of units folded into them, kept together under one
//! lock: a snapshot for the store always holds the sums of exactly the units it marks folded,
//! so a restart neither loses a stored unit nor counts one twice. The job's scores (or curve)
//! come from here once every unit is folded. Order-free: any arrival order, retry or restart
//! gives the same bits (`attrib_proto::exact`).

use attrib_proto::units::{Accumulator, FoldError};
use attrib_proto::{FaithfulnessCurve, Reduced};

use crate::plan::JobPlan;
use crate::{Error, Result};

/// What folding a result did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Folded {
    /// Counted: the unit's sums are in.
    New,
    /// The unit was folded before (a late or repeated reply); nothing changed.
    Duplicate,
    /// A group result covering some folded units and some not: nothing changed.
    Overlap,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JobSums {
    sums: Vec<Accumulator>,
    folded: Vec<bool>,
    /// Accumulators changed since the last snapshot.
    dirty: Vec<bool>,
    /// Units folded since the last snapshot.
    unsaved: u32,
}

/// What the store keeps of a running job: changed accumulators (index, bytes) and the folded
/// set as a bitmap (bit u = unit u).
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub sums: Vec<(usize, Vec<u8>)>,
    pub folded: Vec<u8>,
    /// Units this snapshot makes durable.
    pub units: u32,
}

/// Final attribution scores.
pub struct JobScores {
    pub per_dataset: Vec<Reduced>,
    /// The exact sum over every dataset, rounded once.
    pub combined: Reduced,
}

impl JobSums {
    pub fn new(plan: &JobPlan) -> Self {
        let sums = plan.new_sums();
        JobSums {
            dirty: vec![false; sums.len()],
            folded: vec![false; plan.n_units() as usize],
            sums,
            unsaved: 0,
        }
    }

    /// The state a snapshot stored: `sums` as (index, bytes), `folded` as the bitmap.
    pub fn restore(
        plan: &JobPlan,
        job: &str,
        sums: &[(usize, Vec<u8>)],
        folded: &[u8],
    ) -> Result<Self> {
        let corrupt = |reason: String| Error::Corrupt {
            job: job.to_string(),
            reason,
        };
        let mut s = JobSums::new(plan);
        for (i, bytes) in sums {
            let acc = Accumulator::decode(bytes).map_err(|e| corrupt(e.to_string()))?;
            match s.sums.get_mut(*i) {
                Some(slot) if slot.sums.len() == acc.sums.len() => *slot = acc,
                _ => {
                    return Err(corrupt(format!(
                        "stored sums {i} do not fit the job's plan"
                    )))
                }
            }
        }
        if folded.len() != s.folded.len().div_ceil(8) {
            return Err(corrupt(
                "the folded-unit set does not fit the job's plan".into(),
            ));
        }
        for (u, f) in s.folded.iter_mut().enumerate() {
            *f = folded[u / 8] >> (u % 8) & 1 == 1;
        }
        Ok(s)
    }

    /// Folds unit `unit`'s result, once.
    pub fn fold(
        &mut self,
        plan: &JobPlan,
        unit: u32,
        r: &attrib_proto::v1::UnitResult,
    ) -> Result<Folded, FoldError> {
        if self.folded[unit as usize] {
            return Ok(Folded::Duplicate);
        }
        let changed = plan.fold(&mut self.sums, unit, r)?;
        self.folded[unit as usize] = true;
        self.dirty[changed] = true;
        self.unsaved += 1;
        Ok(Folded::New)
    }

    /// Folds a node group's sum over `units`, once: all of them or none. A result whose
    /// units are all folded is a duplicate; one that covers some folded units cannot be
    /// split, so it is refused (`Overlap`) and its other units are computed again.
    pub fn fold_group(
        &mut self,
        plan: &JobPlan,
        units: &[u32],
        group: &Accumulator,
    ) -> Result<Folded, FoldError> {
        let is_folded = |u: &u32| self.folded.get(*u as usize).copied().unwrap_or(false);
        let n_folded = units.iter().filter(|u| is_folded(u)).count();
        if n_folded > 0 && n_folded == units.len() {
            return Ok(Folded::Duplicate);
        }
        if n_folded > 0 {
            return Ok(Folded::Overlap);
        }
        let changed = plan.fold_group(&mut self.sums, units, group)?;
        for &u in units {
            self.folded[u as usize] = true;
        }
        self.dirty[changed] = true;
        self.unsaved += units.len() as u32;
        Ok(Folded::New)
    }

    /// Units folded so far.
    pub fn folded_units(&self) -> Vec<u32> {
        (0..self.folded.len() as u32)
            .filter(|&u| self.folded[u as usize])
            .collect()
    }

    /// What changed since the last snapshot, or `None`; marks it saved.
    pub fn snapshot(&mut self) -> Option<Snapshot> {
        if self.unsaved == 0 {
            return None;
        }
        let sums = (0..self.sums.len())
            .filter(|&i| self.dirty[i])
            .map(|i| (i, self.sums[i].encode()))
            .collect();
        let mut folded = vec![0u8; self.folded.len().div_ceil(8)];
        for (u, _) in self.folded.iter().enumerate().filter(|(_, &f)| f) {
            folded[u / 8] |= 1 << (u % 8);
        }
        self.dirty.fill(false);
        let units = std::mem::take(&mut self.unsaved);
        Some(Snapshot {
            sums,
            folded,
            units,
        })
    }

    /// Undoes `snapshot`'s marks after the store refused it: the next one carries it again.
    pub fn unsave(&mut self, snap: &Snapshot) {
        for (i, _) in &snap.sums {
            self.dirty[*i] = true;
        }
        self.unsaved += snap.units;
    }

    /// An attribution job's scores, per dataset and combined, as its method reports them
    /// (EAP-IG's methods: means over each one's prompts).
    pub fn scores(&self, plan: &JobPlan) -> JobScores {
        let mut all = self.sums[0].clone();
        for d in &self.sums[1..] {
            all.absorb(d);
        }
        let reduced = |a: &Accumulator| a.reduced().normalised(&plan.settings, plan.graph.n_layers);
        JobScores {
            per_dataset: self.sums.iter().map(reduced).collect(),
            combined: reduced(&all),
        }
    }

    /// A faithfulness job's curve.
    pub fn curve(&self, plan: &JobPlan) -> FaithfulnessCurve {
        let c = plan.circuits.as_ref().expect("a faithfulness plan");
        self.sums[0].curve(c.scores_job.clone(), c.scores.len(), &c.circuits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::{ioi_text, request, tiny_model};
    use attrib_proto::units::f32_le_bytes;
    use attrib_proto::v1;

    fn unit_result(plan: &JobPlan, unit: u32, salt: f32) -> v1::UnitResult {
        let n = plan.graph.n_edges();
        let values: Vec<f32> = (0..n).map(|i| (i as f32 + salt) * 0.1 - 3.0).collect();
        v1::UnitResult {
            job_id: "j".into(),
            unit,
            values: f32_le_bytes(&values).into(),
            clean_logit_diffs: vec![salt; plan.unit_prompts(unit) as usize],
            seconds: 0.0,
            device_class: String::new(),
        }
    }

    #[test]
    fn snapshots_restore_the_same_state_and_duplicates_count_once() {
        let plan = crate::plan::plan(
            &request(8, 16, false, &[ioi_text(), ioi_text()]),
            &tiny_model(),
        )
        .unwrap();
        let mut s = JobSums::new(&plan);
        assert_eq!(
            s.fold(&plan, 2, &unit_result(&plan, 2, 2.0)),
            Ok(Folded::New)
        );
        assert_eq!(
            s.fold(&plan, 2, &unit_result(&plan, 2, 9.0)),
            Ok(Folded::Duplicate)
        );
        let snap = s.snapshot().unwrap();
        assert_eq!((snap.sums.len(), snap.sums[0].0, snap.units), (1, 1, 1));
        assert!(s.snapshot().is_none(), "nothing new to save");
        let back = JobSums::restore(&plan, "j", &snap.sums, &snap.folded).unwrap();
        assert_eq!(back.folded_units(), vec![2]);
        // Restored and original fold the rest to the same bits, in another order too.
        let (mut a, mut b) = (s.clone(), back);
        for u in [0, 1, 3] {
            a.fold(&plan, u, &unit_result(&plan, u, u as f32)).unwrap();
        }
        for u in [3, 1, 0] {
            b.fold(&plan, u, &unit_result(&plan, u, u as f32)).unwrap();
        }
        let (sa, sb) = (a.scores(&plan), b.scores(&plan));
        assert_eq!(sa.combined, sb.combined);
        // Combined is the exact sum of the datasets': equal to folding all into one.
        let mut one = Accumulator::attribution(plan.graph.n_edges());
        for u in 0..4 {
            one.fold_attribution(&unit_result(&plan, u, u as f32))
                .unwrap();
        }
        assert_eq!(sa.combined, one.reduced());
        assert_eq!(sa.per_dataset[1].n_prompts, 16);
        let e = JobSums::restore(&plan, "j", &snap.sums, &[]).unwrap_err();
        assert!(e.to_string().contains("folded-unit set"), "{e}");
    }

    #[test]
    fn a_group_result_folds_all_its_units_or_none() {
        // Two datasets of 2 units each: units 0, 1 | 2, 3.
        let plan = crate::plan::plan(
            &request(8, 16, false, &[ioi_text(), ioi_text()]),
            &tiny_model(),
        )
        .unwrap();
        let group = |units: &[u32]| {
            let mut acc = Accumulator::attribution(plan.graph.n_edges());
            for &u in units {
                acc.fold_attribution(&unit_result(&plan, u, u as f32))
                    .unwrap();
            }
            acc
        };
        let mut s = JobSums::new(&plan);
        assert_eq!(
            s.fold_group(&plan, &[2, 3], &group(&[2, 3])),
            Ok(Folded::New)
        );
        assert_eq!(
            s.fold_group(&plan, &[3, 2], &group(&[2, 3])),
            Ok(Folded::Duplicate)
        );
        s.fold(&plan, 0, &unit_result(&plan, 0, 0.0)).unwrap();
        assert_eq!(
            s.fold_group(&plan, &[0, 1], &group(&[0, 1])),
            Ok(Folded::Overlap)
        );
        assert_eq!(
            s.folded_units(),
            vec![0, 2, 3],
            "an overlapping sum changes nothing"
        );
        // Refused: units of two datasets, a unit twice, none, a wrong prompt count.
        let refused = |s: &mut JobSums, units: &[u32], acc: &Accumulator| {
            let e = s.fold_group(&plan, units, acc).unwrap_err();
            assert!(matches!(e, FoldError::Group(_)), "{e}");
            e.to_string()
        };
        let mut fresh = JobSums::new(&plan);
        assert!(refused(&mut fresh, &[1, 2], &group(&[1, 2])).contains("more than one dataset"));
        assert!(refused(&mut fresh, &[1, 1], &group(&[1, 1])).contains("named twice"));
        assert!(refused(&mut fresh, &[], &group(&[])).contains("no unit"));
        assert!(refused(&mut fresh, &[0, 1], &group(&[0])).contains("prompts"));
        assert!(fresh.folded_units().is_empty());
        // The group's sum is the same bits as folding its units one by one.
        let mut one_by_one = JobSums::new(&plan);
        for u in 0..4 {
            one_by_one
                .fold(&plan, u, &unit_result(&plan, u, u as f32))
                .unwrap();
        }
        let mut grouped = JobSums::new(&plan);
        grouped.fold_group(&plan, &[1, 0], &group(&[0, 1])).unwrap();
        grouped.fold_group(&plan, &[2, 3], &group(&[2, 3])).unwrap();
        assert_eq!(
            grouped.scores(&plan).combined,
            one_by_one.scores(&plan).combined
        );
    }
}
