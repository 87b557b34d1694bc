//! What the coordinator accepts: bounds on a request's settings (checked before anything is
//! tokenized or allocated for it) and on the coordinator's load (jobs, database, worker
//! memory). Each refusal names the limit, its value and the flag that sets it.

use attrib_proto::memory::human_bytes;
use attrib_proto::v1;

use crate::plan::JobPlan;
use crate::{Error, Result};

/// Admission limits; `Default` holds the CLI's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Prompts per batch.
    pub max_batch_size: u32,
    /// Integrated-gradient samples N (N + 1 passes per unit), and EAP-IG's steps.
    pub max_ig_samples: u32,
    /// K: batches per unit.
    pub max_batches_per_unit: u32,
    /// Edge counts of one faithfulness job.
    pub max_edge_counts: usize,
    /// Circuits one faithfulness unit evaluates.
    pub max_circuits_per_unit: u32,
    /// Edge × prompt patched evaluations of one exact-patching job (each a prompt's forward
    /// pass): GPT-2 small over 128 prompts is 4.2 million.
    pub max_exact_patches: u64,
    /// Jobs computed at once; later jobs wait queued.
    pub max_active_jobs: usize,
    /// Jobs waiting behind the active ones.
    pub max_queued_jobs: usize,
    /// The database's size in bytes (0: no limit); also SQLite's hard cap, so that a full
    /// database fails like a full disk rather than taking the disk.
    pub max_db_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_batch_size: 1024,
            max_ig_samples: 1000,
            max_batches_per_unit: 256,
            max_edge_counts: 10_000,
            max_circuits_per_unit: 1024,
            max_exact_patches: 100_000_000,
            max_active_jobs: 4,
            max_queued_jobs: 1000,
            max_db_bytes: 0,
        }
    }
}

/// `value` of `what` within `limit`, else a refusal naming `flag`.
fn at_most(what: &'static str, value: u64, limit: u64, flag: &'static str) -> Result<()> {
    if value > limit {
        return Err(Error::Limit {
            what,
            value,
            limit,
            flag,
        });
    }
    Ok(())
}

impl Limits {
    /// The request's own settings, before it is planned.
    pub fn check_request(&self, req: &v1::SubmitJobRequest) -> Result<()> {
        // The authority on labels: a client that skipped its own check is refused here.
        attrib_proto::check_label(&req.label).map_err(|e| Error::InvalidRequest {
            field: "label",
            reason: e.to_string(),
        })?;
        if !req.device_class.is_empty() {
            attrib_proto::check_device_class(&req.device_class).map_err(|e| {
                Error::InvalidRequest {
                    field: "device_class",
                    reason: e.to_string(),
                }
            })?;
        }
        if let Some(d) = &req.data {
            at_most(
                "batch size",
                d.batch_size.into(),
                self.max_batch_size.into(),
                "--max-batch-size",
            )?;
            at_most(
                "batches per unit",
                d.batches_per_unit.into(),
                self.max_batches_per_unit.into(),
                "--max-batches-per-unit",
            )?;
        }
        if let Some(v1::attribution_settings::Points::IntegratedGradSamples(n)) =
            req.settings.as_ref().and_then(|s| s.points)
        {
            at_most(
                "integrated-gradient samples",
                n.into(),
                self.max_ig_samples.into(),
                "--max-ig-samples",
            )?;
        }
        if let Some(s) = &req.settings {
            at_most(
                "integrated-gradient steps",
                s.steps.into(),
                self.max_ig_samples.into(),
                "--max-ig-samples",
            )?;
        }
        if let Some(f) = &req.faithfulness {
            at_most(
                "faithfulness edge counts",
                f.edge_counts.len() as u64,
                self.max_edge_counts as u64,
                "--max-edge-counts",
            )?;
            at_most(
                "circuits per unit",
                f.circuits_per_unit.into(),
                self.max_circuits_per_unit.into(),
                "--max-circuits-per-unit",
            )?;
        }
        Ok(())
    }

    /// The planned job's size: an exact-patching job measures every edge on every prompt.
    pub fn check_plan(&self, plan: &JobPlan) -> Result<()> {
        if plan.edges_per_unit.is_some() {
            let prompts: u64 = plan.datasets.iter().map(|d| u64::from(d.prompts)).sum();
            at_most(
                "exact-patching evaluations (edges x prompts)",
                plan.graph.n_edges() as u64 * prompts,
                self.max_exact_patches,
                "--max-exact-patches",
            )?;
        }
        Ok(())
    }

    /// Room for one more job when `unfinished` jobs are active or queued.
    pub fn check_jobs(&self, unfinished: usize) -> Result<()> {
        if unfinished >= self.max_active_jobs + self.max_queued_jobs {
            return Err(Error::Exhausted(format!(
                "{} jobs are queued behind {} active ones, the limit (--max-queued-jobs {}); submit again when some finish",
                unfinished.saturating_sub(self.max_active_jobs),
                self.max_active_jobs,
                self.max_queued_jobs
            )));
        }
        Ok(())
    }

    /// Room in the database for a job that stores about `job_bytes`, when it holds
    /// `db_bytes` now.
    pub fn check_db(&self, db_bytes: u64, job_bytes: u64) -> Result<()> {
        if self.max_db_bytes > 0 && db_bytes + job_bytes > self.max_db_bytes {
            return Err(Error::Exhausted(format!(
                "the database holds {} and this job needs about {} more, over its limit (--max-db-mib {}); delete old databases' jobs or raise the limit",
                human_bytes(db_bytes),
                human_bytes(job_bytes),
                self.max_db_bytes >> 20
            )));
        }
        Ok(())
    }
}

/// A unit needing `needed` bytes fits the largest worker connected (`None`: no worker, or
/// none that declared its memory; the job waits for one that can hold it).
pub fn check_memory(needed: u64, largest_worker: Option<u64>) -> Result<()> {
    match largest_worker {
        Some(have) if have > 0 && needed > have => Err(Error::Exhausted(format!(
            "a unit of this job needs about {} (model included) but the largest connected worker declared {}; use smaller batches or fewer batches per unit",
            human_bytes(needed),
            human_bytes(have)
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_refused_here_whatever_the_client_checked() {
        let l = Limits::default();
        for (label, says) in [
            ("x\u{1b}[2J", "control character"),
            (&*"y".repeat(201), "200"),
        ] {
            let req = v1::SubmitJobRequest {
                label: label.into(),
                ..Default::default()
            };
            let e = l.check_request(&req).unwrap_err();
            assert!(e.to_string().contains(says), "{e}");
            assert_eq!(tonic::Status::from(e).code(), tonic::Code::InvalidArgument);
        }
    }

    #[test]
    fn each_refusal_names_its_limit_and_flag() {
        let l = Limits::default();
        let mut req = v1::SubmitJobRequest {
            data: Some(v1::DataOptions {
                batch_size: 5000,
                ..Default::default()
            }),
            ..Default::default()
        };
        let e = l.check_request(&req).unwrap_err().to_string();
        assert!(
            e.contains("batch size 5000") && e.contains("--max-batch-size 1024"),
            "{e}"
        );
        req.data = None;
        req.settings = Some(v1::AttributionSettings {
            points: Some(v1::attribution_settings::Points::IntegratedGradSamples(
                1_000_000_000,
            )),
            ..Default::default()
        });
        let e = l.check_request(&req).unwrap_err();
        assert_eq!(tonic::Status::from(e).code(), tonic::Code::InvalidArgument);
        let e = l.check_jobs(1004).unwrap_err();
        assert!(e.to_string().contains("--max-queued-jobs 1000"), "{e}");
        assert_eq!(
            tonic::Status::from(e).code(),
            tonic::Code::ResourceExhausted
        );
        assert!(l.check_jobs(1003).is_ok());
        let full = Limits {
            max_db_bytes: 10 << 20,
            ..l
        };
        assert!(full.check_db(9 << 20, 2 << 20).is_err());
        assert!(full.check_db(7 << 20, 2 << 20).is_ok());
        let e = check_memory(3 << 30, Some(2 << 30))
            .unwrap_err()
            .to_string();
        assert!(e.contains("3.0 GiB") && e.contains("2.0 GiB"), "{e}");
        assert!(check_memory(3 << 30, None).is_ok());
    }
}
