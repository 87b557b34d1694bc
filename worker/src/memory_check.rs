//! `attrib-worker memory-check`: the memory a worker declares, put to the test. It reads what
//! `serve` would declare (`declared_memory`: on a GPU what the driver reports free, less the
//! reserve), picks the largest unit whose estimate fills at most `fraction` of it, runs that
//! unit, then a collective on the same device, as a node group does after each unit (NCCL on
//! a GPU, the host collective on the CPU). Passing means no out-of-memory error; a hang is
//! the caller's timeout (run.sh's budget).

use std::time::Instant;

use attrib_proto::memory::{human_bytes, model_bytes, unit_bytes, UnitShape};
use tch::Device;

use crate::declared_memory::declared_memory;
use crate::group::check::collective_check;
use crate::group::CollectiveKind;
use crate::job::{load_dataset, run_attribute_timed, AttributeJob};
use crate::model::Gpt2;
use crate::{Error, Result};

/// Runs the check for `job` (its train size and K are chosen here) on `device`; returns the
/// lines to print.
pub fn memory_check(
    mut job: AttributeJob,
    device: Device,
    fraction: f64,
    memory_mib: Option<u64>,
) -> Result<Vec<String>> {
    // Read before the model is loaded, as `serve` does.
    let declared = declared_memory(device, memory_mib);
    if declared == 0 {
        return Err(Error::MemoryCheck(
            "the device's memory is unknown: give --memory-mib".into(),
        ));
    }
    let model = Gpt2::load(&job.model_dir, device)?;
    let batch = job.data.batch_size.max(1) as usize;
    // Every prompt but the test split's, in whole batches.
    let prompts = attrib_datasets::PromptFile::read_many(&job.datasets)?
        .prompts
        .len();
    let available = prompts.saturating_sub(job.data.test_size as usize) / batch;
    job.data.train_size = (available * batch) as u32;
    let (dataset, _) = load_dataset(&job, &model)?;
    let graph = model.cfg.graph(&job.settings, dataset.width);
    let unit = |k: usize| UnitShape::new(k * batch, dataset.width, job.settings.points);
    let budget = (fraction * declared as f64) as u64;
    let fits =
        |k: usize| model_bytes(&model.cfg) + unit_bytes(&model.cfg, &graph, &unit(k)) <= budget;
    let k = (1..=available)
        .take_while(|&k| fits(k))
        .last()
        .ok_or_else(|| {
            Error::MemoryCheck(format!(
                "not even one batch fits {fraction} of the declared {}",
                human_bytes(declared)
            ))
        })?;
    let estimate = model_bytes(&model.cfg) + unit_bytes(&model.cfg, &graph, &unit(k));
    job.data.train_size = (k * batch) as u32;
    job.data.batches_per_unit = k as u32;
    let t = Instant::now();
    let (scores, _) = run_attribute_timed(&job, &model, &mut |_, _| {})?;
    let unit_secs = t.elapsed().as_secs_f64();
    let kind = match device {
        Device::Cuda(_) => CollectiveKind::Nccl,
        _ => CollectiveKind::Host,
    };
    let collective = collective_check(kind, &[device])?;
    Ok(vec![
        format!(
            "memory-check: {} declares {} ({}); one unit of K={k} ({} prompts{}) estimated at {} with the model ({:.0}% of it) ran in {unit_secs:.1} s over {} edges",
            crate::device::device_name(device),
            human_bytes(declared),
            match (memory_mib, device) {
                (Some(_), _) => "--memory-mib",
                (None, Device::Cuda(_)) => "cuMemGetInfo less the reserve",
                (None, _) => "the machine's or cgroup's memory",
            },
            k * batch,
            if k == available { ", every prompt the files hold" } else { "" },
            human_bytes(estimate),
            100.0 * estimate as f64 / declared as f64,
            scores.edges.len()
        ),
        format!("memory-check: then {collective}"),
    ])
}
