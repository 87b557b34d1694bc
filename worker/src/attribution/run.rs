//! Attribution over a list of batches: cut them into work units of K batches, run each unit as
//! one pass, and fold its f32 sums exactly (`attrib_proto::units::Accumulator`), the one
//! reduction the cluster uses too.

use std::panic::{catch_unwind, AssertUnwindSafe};

use attrib_datasets::Batch;
use attrib_proto::units::{f32_le_bytes, unit_ranges, Accumulator};
pub use attrib_proto::Reduced;
use attrib_proto::{v1, AttributionSettings, GraphShape, Method};

use super::acdc::acdc_steps;
use super::exact::exact_scores;
use super::mask_gradient::{pass_input, pass_scores_timed, PassInput, StageTimes, UnitScores};
use crate::device::download_f32;
use crate::model::Gpt2;
use crate::rss::{peak_since_reset_mib, reset_peak, rss_mib};
use crate::{Error, Result};

/// How batches are fed to the model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PassOptions {
    /// K: batches per work unit, run together in one forward/backward pass. The unit's sums
    /// are f32 sums over its batches, so K changes scores at f32 rounding level; for one K
    /// they are the same bits in one process and on any cluster.
    pub batches_per_unit: usize,
    /// Token id used for left padding (GPT-2: `<|endoftext|>`).
    pub pad_id: i64,
    pub prepend_bos: bool,
    /// Stage timers wait for the device (`pass_scores_timed`): for reports of where the time
    /// goes, never for the cluster's units.
    pub synced_stages: bool,
    /// Exact patching only: the edges (flat indices, `start..end`) a unit measures; `None`
    /// for all.
    pub edges: Option<(usize, usize)>,
    /// ACDC only: the index of the τ a unit runs; `None` for all of them.
    pub tau: Option<usize>,
}

impl Default for PassOptions {
    fn default() -> Self {
        PassOptions {
            batches_per_unit: 1,
            pad_id: 50256,
            prepend_bos: true,
            synced_stages: true,
            edges: None,
            tau: None,
        }
    }
}

/// The exact sums of every unit, where the time went, and on CPU the most memory a unit took
/// above what was resident before it (MiB; checks `attrib_proto::memory`'s estimate).
#[derive(Debug, Clone, PartialEq)]
pub struct Attributed {
    pub sums: Accumulator,
    pub times: StageTimes,
    pub unit_peak_mib: Option<f64>,
}

/// Attributes `batches` unit by unit. `progress(done, total)` counts batches after each unit.
pub fn attribute_batches(
    model: &Gpt2,
    graph: &GraphShape,
    batches: &[Batch],
    settings: &AttributionSettings,
    opts: &PassOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Attributed> {
    if batches.is_empty() {
        return Err(Error::NoBatches);
    }
    // ACDC runs on the first batch (AutoCircuit's), once per τ: one value per τ and edge.
    let batches = match settings.method {
        Method::Acdc { .. } => &batches[..1],
        _ => batches,
    };
    let mut out = Attributed {
        sums: Accumulator::attribution(graph.n_edges() * settings.method.slots_per_edge()),
        times: StageTimes::default(),
        unit_peak_mib: None,
    };
    let on_cpu = model.device == tch::Device::Cpu;
    for (u, range) in unit_ranges(batches.len(), opts.batches_per_unit)
        .into_iter()
        .enumerate()
    {
        let end = range.end;
        let before = rss_mib().filter(|_| on_cpu && reset_peak());
        let (unit, times) =
            attribute_unit(model, graph, &batches[range], settings, opts, &|| Ok(()))?;
        if let (Some(before), Some(peak)) = (before, peak_since_reset_mib()) {
            let grew = peak - before;
            out.unit_peak_mib = Some(out.unit_peak_mib.map_or(grew, |m| m.max(grew)));
        }
        out.sums
            .fold_attribution(&unit.into_result(String::new(), u as u32, 0.0))
            .map_err(|e| Error::Unit {
                unit: u as u32,
                reason: e.to_string(),
            })?;
        out.times += times;
        progress(end, batches.len());
    }
    Ok(out)
}

/// One work unit: `batches` (equal size and width) in one pass per mask point;
/// `between_passes` may stop it between them.
pub fn attribute_unit(
    model: &Gpt2,
    graph: &GraphShape,
    batches: &[Batch],
    settings: &AttributionSettings,
    opts: &PassOptions,
    between_passes: &dyn Fn() -> Result<()>,
) -> Result<(UnitScores, StageTimes)> {
    check_unit(graph, batches)?;
    let pass = pass_input(model, batches, opts.pad_id, opts.prepend_bos)?;
    // ACDC and exact patching are forward passes only, timed as one stage.
    let forward_only = |run: &dyn Fn() -> Result<UnitScores>| {
        let t0 = std::time::Instant::now();
        let scores = catch_torch(run)??;
        let times = StageTimes {
            clean_forward: t0.elapsed().as_secs_f64(),
            ..Default::default()
        };
        Ok((scores, times))
    };
    if let Method::Acdc { taus } = &settings.method {
        return forward_only(&|| acdc_unit(model, graph, &pass, taus, opts.tau, between_passes));
    }
    if settings.method == Method::Exact {
        let (start, end) = opts.edges.unwrap_or((0, graph.n_edges()));
        if start > end || end > graph.n_edges() {
            return Err(Error::BadUnit(format!(
                "edges {start}..{end} of a graph of {} edges",
                graph.n_edges()
            )));
        }
        return forward_only(&|| {
            exact_scores(model, graph, &pass, settings, start..end, between_passes)
        });
    }
    catch_torch(|| {
        pass_scores_timed(
            model,
            graph,
            &pass,
            settings,
            between_passes,
            opts.synced_stages,
        )
    })?
}

/// ACDC at τ index `tau` (all of them when `None`) on the unit's one batch: per τ and edge,
/// 1 where that τ removed the edge, in a `taus × edges` vector (zeros for other τ, so a
/// unit of one τ folds like any other). Clean logit differences come with τ index 0 only,
/// so that the batch's prompts count once.
fn acdc_unit(
    model: &Gpt2,
    graph: &GraphShape,
    pass: &PassInput,
    taus: &[f64],
    tau: Option<usize>,
    between_passes: &dyn Fn() -> Result<()>,
) -> Result<UnitScores> {
    if pass.n_batches() != 1 {
        return Err(Error::BadUnit(format!(
            "ACDC runs on one batch, not {}",
            pass.n_batches()
        )));
    }
    let chosen: Vec<usize> = match tau {
        Some(t) if t < taus.len() => vec![t],
        Some(t) => {
            return Err(Error::BadUnit(format!(
                "τ index {t} of {} taus",
                taus.len()
            )))
        }
        None => (0..taus.len()).collect(),
    };
    let n_edges = graph.n_edges();
    let mut scores = vec![0f32; taus.len() * n_edges];
    for &t in &chosen {
        for step in acdc_steps(model, graph, pass, taus[t], between_passes)? {
            if step.removed {
                scores[t * n_edges + step.edge] = 1.0;
            }
        }
    }
    // The coordinator expects the prompts with τ index 0 only (`JobPlan::unit_prompts`).
    let clean_logit_diffs = if chosen.first() == Some(&0) {
        download_f32(&pass.logit_diffs(&model.logits(&pass.clean)))
    } else {
        Vec::new()
    };
    Ok(UnitScores {
        scores,
        clean_logit_diffs,
    })
}

/// A unit's batches can share one pass on `graph`: at least one, all of one size and width,
/// and as wide as a token-specific graph's positions.
pub fn check_unit(graph: &GraphShape, batches: &[Batch]) -> Result<()> {
    let first = batches.first().ok_or(Error::NoBatches)?;
    if batches
        .iter()
        .any(|b| b.batch_size != first.batch_size || b.width != first.width)
    {
        return Err(Error::UnevenBatches);
    }
    match graph.seq_len {
        Some(t) if t != first.width => Err(Error::SeqLenMismatch {
            width: first.width,
            seq_len: t,
        }),
        _ => Ok(()),
    }
}

impl UnitScores {
    /// The wire result of unit `unit` of job `job_id`.
    pub fn into_result(self, job_id: String, unit: u32, seconds: f64) -> v1::UnitResult {
        v1::UnitResult {
            job_id,
            unit,
            values: f32_le_bytes(&self.scores).into(),
            clean_logit_diffs: self.clean_logit_diffs,
            seconds,
            device_class: String::new(), // the session stamps its engine's
        }
    }
}

/// Runs `f`, turning a libtorch panic (tch's non-`f_` ops panic on C++ errors) into an error.
pub fn catch_torch<T>(f: impl FnOnce() -> T) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|e| {
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        Error::TorchPanic(msg)
    })
}
