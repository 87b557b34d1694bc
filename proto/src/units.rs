//! Work units and their reduction, shared by `attrib-worker` (one process) and the coordinator,
//! so both fold the same f32 values into the same exact sums and agree bit for bit.
//!
//! A job's running state is one `Accumulator` per dataset (attribution) or per job
//! (faithfulness): exact sums in fixed slots plus a prompt count. Its size depends on the
//! graph, never on how many units were folded.

use std::collections::VecDeque;
use std::ops::Range;

use crate::exact::{check_finite, le_f32s, BadEncoding, ExactSum, NotFinite};
use crate::faithfulness::{Circuit, CurvePoint, FaithfulnessCurve};
use crate::scores::Reduced;
use crate::v1;

/// A unit result that cannot be folded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FoldError {
    #[error("{what}: got {got}, expected {expected}")]
    Length {
        what: &'static str,
        got: usize,
        expected: usize,
    },
    #[error(transparent)]
    NotFinite(#[from] NotFinite),
    /// A node group's sum that does not fit the units it names.
    #[error("group result: {0}")]
    Group(String),
}

/// Exact sums in fixed slots and the prompts they cover.
#[derive(Debug, Clone, PartialEq)]
pub struct Accumulator {
    pub sums: ExactSum,
    pub n_prompts: u64,
}

impl Accumulator {
    /// Attribution: one slot per edge, then the clean logit difference.
    pub fn attribution(n_edges: usize) -> Self {
        Self::with_slots(n_edges + 1)
    }

    /// Faithfulness: one slot per circuit, then the clean and the corrupt logit differences.
    pub fn circuits(n_circuits: usize) -> Self {
        Self::with_slots(n_circuits + 2)
    }

    fn with_slots(n: usize) -> Self {
        Accumulator {
            sums: ExactSum::new(n),
            n_prompts: 0,
        }
    }

    /// Folds an attribution unit: its per-edge sums and its prompts' clean logit differences.
    pub fn fold_attribution(&mut self, r: &v1::UnitResult) -> Result<(), FoldError> {
        let n_edges = self.sums.len() - 1;
        expect_len(
            "bytes of edge sums (4 per edge)",
            r.values.len(),
            4 * n_edges,
        )?;
        check_finite(n_edges, r.clean_logit_diffs.iter().copied())?;
        self.sums.add_all_le(0, &r.values)?;
        for &d in &r.clean_logit_diffs {
            self.sums.add(n_edges, d)?;
        }
        self.n_prompts += r.clean_logit_diffs.len() as u64;
        Ok(())
    }

    /// Folds a faithfulness unit that evaluated circuits `group` of the job's. The group
    /// starting at circuit 0 also carries the unpatched clean and corrupt differences, so
    /// that a test prompt counts once however many groups evaluate it.
    pub fn fold_circuits(
        &mut self,
        group: Range<usize>,
        r: &v1::UnitResult,
    ) -> Result<(), FoldError> {
        let n_circuits = self.sums.len() - 2;
        let n = r.clean_logit_diffs.len();
        expect_len(
            "bytes of circuit values (4 per circuit and prompt, and per prompt)",
            r.values.len(),
            4 * (group.len() + 1) * n,
        )?;
        let values: Vec<f32> = le_f32s(&r.values).collect();
        check_finite(0, values.iter().chain(&r.clean_logit_diffs).copied())?;
        let (patched, corrupt) = values.split_at(group.len() * n);
        for (c, per_prompt) in group.clone().zip(patched.chunks_exact(n.max(1))) {
            for &v in per_prompt {
                self.sums.add(c, v)?;
            }
        }
        if group.start == 0 {
            for (&clean, &corrupt) in r.clean_logit_diffs.iter().zip(corrupt) {
                self.sums.add(n_circuits, clean)?;
                self.sums.add(n_circuits + 1, corrupt)?;
            }
            self.n_prompts += n as u64;
        }
        Ok(())
    }

    /// Adds another accumulator of the same job (pre-summed units, or another dataset).
    pub fn absorb(&mut self, other: &Accumulator) {
        self.sums.absorb(&other.sums);
        self.n_prompts += other.n_prompts;
    }

    /// Attribution scores: every edge's exact sum, rounded once, and the mean clean logit
    /// difference.
    pub fn reduced(&self) -> Reduced {
        let n_edges = self.sums.len() - 1;
        let mut scores = self.sums.values();
        let clean = scores.pop().expect("the clean slot");
        debug_assert_eq!(scores.len(), n_edges);
        Reduced {
            scores,
            clean_logit_diff: clean / self.n_prompts.max(1) as f64,
            n_prompts: self.n_prompts as usize,
        }
    }

    /// The faithfulness curve of `circuits` from a complete faithfulness accumulator: each
    /// mean is the exact sum over every test prompt, rounded once, over the prompt count
    /// (AutoCircuit's mean of batch means, batches being of equal size).
    pub fn curve(
        &self,
        scores_from: String,
        total_edges: usize,
        circuits: &[Circuit],
    ) -> FaithfulnessCurve {
        let n = self.n_prompts.max(1) as f64;
        let mean = |slot: usize| self.sums.value(slot) / n;
        let (clean, corrupt) = (mean(circuits.len()), mean(circuits.len() + 1));
        let points = circuits
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let m = mean(i);
                CurvePoint {
                    requested_edges: c.requested,
                    n_edges: c.n_edges,
                    threshold: c.threshold,
                    mean_logit_diff: m,
                    fraction_of_gap: (m - corrupt) / (clean - corrupt),
                }
            })
            .collect();
        FaithfulnessCurve {
            scores_from,
            split: "test".into(),
            patch: "tree (resample from corrupt)".into(),
            n_prompts: self.n_prompts as usize,
            total_edges,
            clean_logit_diff: clean,
            corrupt_logit_diff: corrupt,
            points,
        }
    }

    /// The prompt count, then the sums (`ExactSum::encode`).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.n_prompts.to_le_bytes().to_vec();
        out.extend_from_slice(&self.sums.encode());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, BadEncoding> {
        if bytes.len() < 8 {
            return Err(BadEncoding("truncated".into()));
        }
        let (n, rest) = bytes.split_at(8);
        Ok(Accumulator {
            n_prompts: u64::from_le_bytes(n.try_into().expect("8 bytes")),
            sums: ExactSum::decode(rest)?,
        })
    }
}

fn expect_len(what: &'static str, got: usize, expected: usize) -> Result<(), FoldError> {
    if got == expected {
        Ok(())
    } else {
        Err(FoldError::Length {
            what,
            got,
            expected,
        })
    }
}

/// Little-endian bytes of f32 values, as `UnitResult.values` carries them.
pub fn f32_le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Score vectors of faithfulness jobs a session's worker keeps.
pub const SCORES_KEPT: usize = 4;

/// What one end of a session knows the worker holds: the last `SCORES_KEPT` jobs whose score
/// vector went over the session, oldest forgotten first. The coordinator keeps `()` per job,
/// the worker the vector itself; both see the same assignments in the same order, so they
/// agree on when to send and when to reuse.
#[derive(Debug)]
pub struct KeptScores<T> {
    jobs: VecDeque<(String, T)>,
}

impl<T> Default for KeptScores<T> {
    fn default() -> Self {
        KeptScores {
            jobs: VecDeque::new(),
        }
    }
}

impl<T> KeptScores<T> {
    pub fn get(&self, job: &str) -> Option<&T> {
        self.jobs.iter().find(|(j, _)| j == job).map(|(_, v)| v)
    }

    /// Records that `job`'s scores went over the session.
    pub fn keep(&mut self, job: &str, value: T) {
        self.jobs.retain(|(j, _)| j != job);
        if self.jobs.len() == SCORES_KEPT {
            self.jobs.pop_front();
        }
        self.jobs.push_back((job.to_string(), value));
    }
}

/// Batch indices `0..n_batches` of one dataset cut into units of `k` consecutive batches
/// (the last may be shorter).
pub fn unit_ranges(n_batches: usize, k: usize) -> Vec<Range<usize>> {
    let k = k.max(1);
    (0..n_batches.div_ceil(k))
        .map(|u| u * k..((u + 1) * k).min(n_batches))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(values: &[f32], clean: &[f32]) -> v1::UnitResult {
        v1::UnitResult {
            values: f32_le_bytes(values).into(),
            clean_logit_diffs: clean.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn attribution_units_fold_in_any_order_to_the_same_scores() {
        let units = [
            result(&[0.1, 1e-30, -3.0], &[1.0, 2.0]),
            result(&[0.2, 5.0, 7e20], &[0.5, 0.25]),
            result(&[-0.3, -5.0, -7e20], &[0.125, 0.0]),
        ];
        let fold = |order: &[usize]| {
            let mut a = Accumulator::attribution(3);
            for &i in order {
                a.fold_attribution(&units[i]).unwrap();
            }
            a.reduced()
        };
        let r = fold(&[0, 1, 2]);
        assert_eq!(r, fold(&[2, 0, 1]));
        // 0.1f32 + 0.2f32 - 0.3f32 exactly, rounded once; 1e-30 survives 7e20 cancelling.
        assert_eq!(r.scores[0], 0.1f32 as f64 + 0.2f32 as f64 - 0.3f32 as f64);
        assert_eq!(r.scores[1], 1e-30f32 as f64);
        assert_eq!(r.scores[2], -3.0);
        assert_eq!((r.n_prompts, r.clean_logit_diff), (6, 3.875 / 6.0));
        // Two datasets absorbed equal one accumulator of everything.
        let mut a = Accumulator::attribution(3);
        a.fold_attribution(&units[0]).unwrap();
        let mut b = Accumulator::attribution(3);
        b.fold_attribution(&units[1]).unwrap();
        b.fold_attribution(&units[2]).unwrap();
        a.absorb(&b);
        assert_eq!(a.reduced(), r);
        assert_eq!(Accumulator::decode(&a.encode()).unwrap(), a);
    }

    #[test]
    fn bad_units_are_refused_and_change_nothing() {
        let mut a = Accumulator::attribution(3);
        let e = a
            .fold_attribution(&result(&[1.0, 2.0], &[1.0]))
            .unwrap_err();
        assert!(e.to_string().contains("got 8, expected 12"), "{e}");
        let e = a
            .fold_attribution(&result(&[1.0, f32::NAN, 0.0], &[1.0]))
            .unwrap_err();
        assert!(
            matches!(e, FoldError::NotFinite(NotFinite { slot: 1, .. })),
            "{e}"
        );
        let mut f = Accumulator::circuits(3);
        let before = f.clone();
        let bad = result(&[1.0, 2.0, f32::INFINITY, 0.0], &[1.0, 1.0]);
        assert!(f.fold_circuits(0..1, &bad).is_err());
        assert_eq!(f, before, "a refused unit leaves no partial sum");
    }

    #[test]
    fn circuit_units_count_each_prompt_once_and_give_the_curve() {
        let circuits = crate::faithfulness::circuits(&[1.0, 2.0], &[0, 1, 2]);
        let mut a = Accumulator::circuits(3);
        // Two prompts; group 0 = circuits 0 and 1, group 1 = circuit 2.
        a.fold_circuits(0..2, &result(&[0.0, 0.0, 1.0, 2.0, 0.0, 0.0], &[4.0, 4.0]))
            .unwrap();
        a.fold_circuits(2..3, &result(&[4.0, 4.0, 9.0, 9.0], &[9.0, 9.0]))
            .unwrap();
        let c = a.curve("x".into(), 2, &circuits);
        assert_eq!(c.n_prompts, 2);
        assert_eq!((c.clean_logit_diff, c.corrupt_logit_diff), (4.0, 0.0));
        assert_eq!(c.points[1].mean_logit_diff, 1.5);
        assert_eq!(c.points[1].fraction_of_gap, 1.5 / 4.0);
        assert_eq!(c.points[2].fraction_of_gap, 1.0);
    }

    #[test]
    fn both_ends_forget_the_same_scores() {
        let mut kept = KeptScores::default();
        for j in 0..=SCORES_KEPT {
            kept.keep(&format!("j{j}"), j);
        }
        assert!(kept.get("j0").is_none());
        assert_eq!(kept.get("j1"), Some(&1));
        assert_eq!(kept.get(&format!("j{SCORES_KEPT}")), Some(&SCORES_KEPT));
    }

    #[test]
    fn units_cut_batches_in_order() {
        assert_eq!(unit_ranges(5, 2), vec![0..2, 2..4, 4..5]);
        assert_eq!(unit_ranges(3, 0), vec![0..1, 1..2, 2..3]);
        assert_eq!(unit_ranges(0, 4), Vec::<Range<usize>>::new());
    }
}
