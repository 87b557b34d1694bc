//! A job's final scores from its stored batch results: per dataset and combined, each summed
//! in batch order in f64 (`attrib_proto::BatchOrderSum`, the reduction `attrib-worker
//! attribute` uses), so the result never depends on how many workers ran or when they answered.
//! A faithfulness job's curve is assembled the same way from its units' sums.

use attrib_proto::faithfulness::CircuitBatchSums;
use attrib_proto::{BatchOrderSum, FaithfulnessCurve, Reduced};

use crate::plan::JobPlan;
use crate::store::BatchRow;
use crate::{Error, Result};

/// Feed it every batch row in increasing batch order.
pub struct JobReducer<'a> {
    plan: &'a JobPlan,
    per_dataset: Vec<BatchOrderSum>,
    combined: BatchOrderSum,
}

pub struct JobScores {
    pub per_dataset: Vec<Reduced>,
    /// Every batch of every dataset, in job order.
    pub combined: Reduced,
}

impl<'a> JobReducer<'a> {
    pub fn new(plan: &'a JobPlan) -> Self {
        JobReducer {
            plan,
            per_dataset: vec![BatchOrderSum::default(); plan.datasets.len()],
            combined: BatchOrderSum::default(),
        }
    }

    pub fn add(&mut self, row: &BatchRow) {
        let (d, _) = self
            .plan
            .locate(row.batch)
            .expect("stored batches belong to the plan");
        let n = row.n_prompts as usize;
        self.per_dataset[d].add(row.batch as usize, &row.scores, row.clean_logit_diff_sum, n);
        self.combined
            .add(row.batch as usize, &row.scores, row.clean_logit_diff_sum, n);
    }

    pub fn finish(self) -> JobScores {
        JobScores {
            per_dataset: self
                .per_dataset
                .into_iter()
                .map(BatchOrderSum::finish)
                .collect(),
            combined: self.combined.finish(),
        }
    }
}

/// Assembles a faithfulness job's per-test-batch sums from its units (feed every unit row).
pub struct CurveReducer<'a> {
    plan: &'a JobPlan,
    /// Per test batch in job order (dataset, then batch): the sums, filled group by group.
    batches: Vec<CircuitBatchSums>,
    filled: Vec<usize>,
}

impl<'a> CurveReducer<'a> {
    pub fn new(plan: &'a JobPlan) -> Self {
        let c = plan.circuits.as_ref().expect("a faithfulness plan");
        let n_test: usize = plan
            .datasets
            .iter()
            .map(|d| d.batches.len() / c.groups())
            .sum();
        CurveReducer {
            plan,
            batches: vec![
                CircuitBatchSums {
                    circuit: vec![0.0; c.circuits.len()],
                    clean: 0.0,
                    corrupt: 0.0,
                    n_prompts: 0,
                };
                n_test
            ],
            filled: vec![0; n_test],
        }
    }

    pub fn add(&mut self, row: &BatchRow) {
        let c = self.plan.circuits.as_ref().expect("a faithfulness plan");
        let (d, local, g) = self
            .plan
            .unit(row.batch)
            .expect("stored units belong to the plan");
        let before: usize = self.plan.datasets[..d]
            .iter()
            .map(|d| d.batches.len() / c.groups())
            .sum();
        let b = &mut self.batches[before + local];
        let range = c.group(g);
        let (sums, corrupt) = row.scores.split_at(range.len());
        b.circuit[range].copy_from_slice(sums);
        b.clean = row.clean_logit_diff_sum;
        b.corrupt = corrupt[0];
        b.n_prompts = row.n_prompts as usize;
        self.filled[before + local] += 1;
    }

    /// The curve of faithfulness job `job`, once every unit has been added.
    pub fn finish(self, job: &str) -> Result<FaithfulnessCurve> {
        let c = self.plan.circuits.as_ref().expect("a faithfulness plan");
        if self.filled.iter().any(|&n| n != c.groups()) {
            return Err(Error::Corrupt {
                job: job.to_string(),
                reason: "finished without a result for every unit".into(),
            });
        }
        Ok(FaithfulnessCurve::from_batches(
            c.scores_job.clone(),
            c.scores.len(),
            &c.circuits,
            &self.batches,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::{ioi_text, request, tiny_model};
    use attrib_proto::sum_in_batch_order;

    #[test]
    fn per_dataset_and_combined_sums_follow_batch_order() {
        let plan = crate::plan::plan(
            &request(8, 16, false, &[ioi_text(), ioi_text()]),
            &tiny_model(),
        )
        .unwrap();
        let rows: Vec<BatchRow> = (0..4)
            .map(|b| BatchRow {
                batch: b,
                scores: vec![
                    0.1 * (b + 1) as f64,
                    1e16 * if b % 2 == 0 { 1.0 } else { -1.0 },
                ],
                clean_logit_diff_sum: b as f64,
                n_prompts: 8,
            })
            .collect();
        let mut r = JobReducer::new(&plan);
        rows.iter().for_each(|row| r.add(row));
        let s = r.finish();
        let expect =
            |bs: &[usize]| sum_in_batch_order(bs.iter().map(|&b| (b, rows[b].scores.as_slice())));
        assert_eq!(s.per_dataset[0].scores, expect(&[0, 1]));
        assert_eq!(s.per_dataset[1].scores, expect(&[2, 3]));
        assert_eq!(s.combined.scores, expect(&[0, 1, 2, 3]));
        assert_eq!(s.per_dataset[1].clean_logit_diff, 5.0 / 16.0);
        assert_eq!(s.combined.n_prompts, 32);
    }
}
