//! What a device does with one unit, and the contract between a session, the engine and a
//! node group: the engine's configuration, a unit request and its answer. The engine
//! (`service::engine`) runs these on one device's thread; a node group (`group`) on each
//! member's. Neither imports the other's internals: both come here.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use attrib_datasets::Batch;
use attrib_proto::faithfulness::Circuit;
use attrib_proto::fingerprint::model_fingerprint;
use attrib_proto::memory::{human_bytes, worker_bytes, UnitShape};
use attrib_proto::{v1, AttributionSettings};
use tch::Device;
use tokio::sync::mpsc as tokio_mpsc;

use crate::attribution::{attribute_unit, catch_torch, PassOptions};
use crate::circuit::evaluate_unit;
use crate::device::{device_name, is_out_of_memory};
use crate::model::Gpt2;
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub model_dir: PathBuf,
    /// One device, or a node group's devices.
    pub devices: Vec<Device>,
    /// How a group's members sum (unused with one device).
    pub collective: CollectiveKind,
    /// Sleep before each pass: only for tests and demos that need slow units.
    pub unit_delay: Duration,
    /// Memory each device has for a unit, model included (0: not checked).
    pub memory_bytes: u64,
    /// How long a group's member waits at a collective for the others before it abandons
    /// the round (`crate::group::watch`).
    pub collective_timeout: Duration,
}

/// How the members sum: in this process's memory, or with NCCL on the GPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollectiveKind {
    Host,
    Nccl,
}

impl CollectiveKind {
    /// `auto` is the host, on GPUs too: the limbs are made on the host, so NCCL would only
    /// add a copy to the GPUs and one back to the same sum (docs/cluster.md). `nccl` stays
    /// selectable; it becomes `auto`'s choice only once a run on several GPUs shows it ahead.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "host" | "auto" => Ok(Self::Host),
            "nccl" => Ok(Self::Nccl),
            other => Err(Error::UnknownCollective(other.to_string())),
        }
    }
}

/// An answer for the session that asked: the units of a job it covers (one, or a group
/// round's several), and the result or why there is none (failures are of one unit).
pub struct Answer {
    pub session: u64,
    pub job: String,
    pub units: Vec<u32>,
    pub result: Result<Computed>,
}

pub enum Computed {
    Unit(v1::UnitResult),
    Group(v1::GroupResult),
}

/// A unit for the model's thread, and where its answer goes.
pub struct UnitRequest {
    /// The session that asked (answers of earlier sessions are late ones).
    pub session: u64,
    pub unit: v1::UnitAssignment,
    /// A faithfulness unit's score vector (the session keeps it between units of a job).
    pub scores: Option<Arc<Vec<f64>>>,
    /// Cleared when the session that asked is gone: its queued units are then skipped.
    pub wanted: Arc<AtomicBool>,
    /// Set when the unit's job is cancelled: skipped, or stopped at the next pass boundary.
    pub cancelled: Arc<AtomicBool>,
    /// Counts the engine's finished passes (`Engine::passes`), for progress reports.
    pub passes: Arc<AtomicU64>,
    pub reply: tokio_mpsc::UnboundedSender<Answer>,
}

/// Computes one request: stops between passes if its job is cancelled, refuses a unit over
/// the device's memory, and turns a libtorch panic into an error.
pub fn run_request(model: &Gpt2, cfg: &EngineConfig, req: &UnitRequest) -> Result<v1::UnitResult> {
    // Between passes: stop if the job was cancelled. (A unit started in a session that
    // ends goes on: it is delivered late in the next one.)
    let between_passes = || {
        req.passes.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(cfg.unit_delay);
        match req.cancelled.load(Ordering::Relaxed) {
            false => Ok(()),
            true => Err(Error::Cancelled),
        }
    };
    let scores = req.scores.as_deref().map(Vec::as_slice);
    between_passes()
        .and_then(|()| fits(model, &req.unit, cfg.memory_bytes))
        .and_then(|()| {
            catch_torch(|| compute(model, &req.unit, scores, &between_passes)).and_then(|r| r)
        })
        .map_err(|e| match e {
            // The unit's tensors are freed as the error unwinds: the device is whole again.
            Error::TorchPanic(message) if is_out_of_memory(&message) => Error::OutOfMemory {
                device: device_name(model.device),
                estimate: unit_estimate(model, &req.unit).map_or("?".into(), human_bytes),
                message,
            },
            e => e,
        })
}

/// Answers `req`'s unit alone.
pub fn answer(req: &UnitRequest, result: Result<Computed>) {
    let _ = req.reply.send(Answer {
        session: req.session,
        job: req.unit.job_id.clone(),
        units: vec![req.unit.unit],
        result,
    });
}

/// The model of `cfg` on `device`, and its identity.
pub fn load(cfg: &EngineConfig, device: Device) -> Result<(Gpt2, v1::ModelIdentity)> {
    let model = Gpt2::load(&cfg.model_dir, device)?;
    let fingerprint = model_fingerprint(&cfg.model_dir).map_err(|source| Error::Io {
        path: cfg.model_dir.clone(),
        source,
    })?;
    let identity = model.cfg.identity(fingerprint);
    Ok((model, identity))
}

/// One unit through the same code as `attrib-worker attribute` (one pass), or one faithfulness
/// unit through the same code as `attrib-worker faithfulness`.
fn compute(
    model: &Gpt2,
    a: &v1::UnitAssignment,
    scores: Option<&[f64]>,
    between_passes: &dyn Fn() -> Result<()>,
) -> Result<v1::UnitResult> {
    let t0 = Instant::now();
    let settings = AttributionSettings::try_from(
        a.settings
            .as_ref()
            .ok_or_else(|| Error::BadUnit("no settings".into()))?,
    )
    .map_err(|e| Error::BadUnit(e.to_string()))?;
    let batches = to_batches(a)?;
    let graph = model.cfg.graph(&settings, a.width as usize);
    if let Some(eval) = &a.circuits {
        let scores = scores
            .ok_or_else(|| Error::BadUnit(format!("no score vector kept for job {}", a.job_id)))?;
        let circuits: Vec<Circuit> = eval
            .circuits
            .iter()
            .map(|c| Circuit {
                requested: 0, // only the threshold decides which edges are kept
                threshold: c.min_abs_score,
                n_edges: 0,
            })
            .collect();
        let out = evaluate_unit(
            model,
            &graph,
            scores,
            &circuits,
            &batches,
            a.pad_id,
            a.prepend_bos,
        )?;
        return Ok(out.to_result(a.job_id.clone(), a.unit, t0.elapsed().as_secs_f64()));
    }
    let opts = PassOptions {
        batches_per_unit: batches.len(),
        pad_id: a.pad_id,
        prepend_bos: a.prepend_bos,
        synced_stages: false,
        edges: match (a.first_edge, a.end_edge) {
            (0, 0) => None,
            (first, end) if first < end => Some((first as usize, end as usize)),
            (first, end) => {
                return Err(Error::BadUnit(format!(
                    "edges {first}..{end}: an empty range"
                )))
            }
        },
        tau: Some(a.tau as usize),
    };
    let (out, _) = attribute_unit(model, &graph, &batches, &settings, &opts, between_passes)?;
    Ok(out.into_result(a.job_id.clone(), a.unit, t0.elapsed().as_secs_f64()))
}

/// A unit's memory estimate (`attrib_proto::memory`, model included); `None` for a unit
/// `compute` will refuse anyway.
fn unit_estimate(model: &Gpt2, a: &v1::UnitAssignment) -> Option<u64> {
    let settings = AttributionSettings::try_from(a.settings.as_ref()?).ok()?;
    let width = a.width as usize;
    let unit = UnitShape::new(a.clean.len() / width.max(1), width, settings.points);
    Some(worker_bytes(
        &model.cfg,
        &model.cfg.graph(&settings, width),
        &unit,
    ))
}

/// A unit is refused before it starts when its memory estimate is over what this worker has.
fn fits(model: &Gpt2, a: &v1::UnitAssignment, have: u64) -> Result<()> {
    let Some(needed) = unit_estimate(model, a) else {
        return Ok(()); // `compute` says what is wrong
    };
    if have > 0 && needed > have {
        return Err(Error::TooBig {
            needed: human_bytes(needed),
            have: human_bytes(have),
            how: "declared at join",
        });
    }
    Ok(())
}

/// Checks the wire unit's sizes and rebuilds the dataset crate's batches.
fn to_batches(a: &v1::UnitAssignment) -> Result<Vec<Batch>> {
    let (bs, w) = (a.batch_size as usize, a.width as usize);
    let bad = |what: String| Err(Error::BadUnit(what));
    if bs == 0 || w == 0 {
        return bad(format!("batch size {bs} and width {w} must be positive"));
    }
    let n = a.clean.len() / w;
    if n == 0 || !n.is_multiple_of(bs) || a.clean.len() != n * w || a.corrupt.len() != n * w {
        return bad(format!(
            "{} clean and {} corrupt token ids are not whole batches of {bs} prompts of {w} tokens",
            a.clean.len(),
            a.corrupt.len()
        ));
    }
    if a.answers.len() != n || a.wrong_answers.len() != n {
        return bad(format!(
            "answers for {} and {} prompts, not {n}",
            a.answers.len(),
            a.wrong_answers.len()
        ));
    }
    if a.answers
        .iter()
        .chain(&a.wrong_answers)
        .any(|t| t.ids.is_empty())
    {
        return bad("a prompt without answers".into());
    }
    let ids = |v: &[v1::TokenIds]| v.iter().map(|t| t.ids.clone()).collect();
    Ok((0..n / bs)
        .map(|b| {
            let (p, t) = (b * bs, b * bs * w..(b + 1) * bs * w);
            Batch {
                index: a.first_batch as usize + b,
                batch_size: bs,
                width: w,
                clean: a.clean[t.clone()].to_vec(),
                corrupt: a.corrupt[t].to_vec(),
                answers: ids(&a.answers[p..p + bs]),
                wrong_answers: ids(&a.wrong_answers[p..p + bs]),
            }
        })
        .collect())
}
