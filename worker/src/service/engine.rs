//! The model's thread: loads GPT-2 once, then computes one batch per command. tch tensors
//! are not `Sync` and grad mode is per thread, so the model never leaves this thread. A
//! failing or panicking libtorch op becomes an error reply; the thread lives on.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use attrib_datasets::Batch;
use attrib_proto::faithfulness::Circuit;
use attrib_proto::fingerprint::model_fingerprint;
use attrib_proto::{v1, AttributionSettings, GraphShape};
use tch::Device;
use tokio::sync::oneshot;

use crate::attribution::{attribute_batches, catch_torch, graph_for, PassOptions};
use crate::circuit::evaluate_batch;
use crate::device::device_name;
use crate::model::Gpt2;
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub model_dir: PathBuf,
    pub device: Device,
    /// Sleep before each batch: only for tests and demos that need slow batches.
    pub batch_delay: Duration,
}

/// A handle to the model's thread.
pub struct Engine {
    tx: mpsc::Sender<Command>,
    pub identity: v1::ModelIdentity,
    pub device: String,
}

struct Command {
    batch: v1::BatchAssignment,
    reply: oneshot::Sender<Result<v1::BatchResult>>,
}

impl Engine {
    /// Starts the thread and waits until the model is loaded (or failed to load).
    pub fn start(cfg: EngineConfig) -> Result<Engine> {
        let (tx, rx) = mpsc::channel::<Command>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<v1::ModelIdentity>>();
        let device = device_name(cfg.device);
        std::thread::Builder::new()
            .name("attrib-engine".into())
            .spawn(move || {
                let model = match load(&cfg) {
                    Ok((model, identity)) => {
                        let _ = ready_tx.send(Ok(identity));
                        model
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                for cmd in rx {
                    std::thread::sleep(cfg.batch_delay);
                    let r = catch_torch(|| compute(&model, &cmd.batch)).and_then(|r| r);
                    let _ = cmd.reply.send(r);
                }
            })
            .map_err(|e| Error::Io {
                path: "(engine thread)".into(),
                source: e,
            })?;
        let identity = ready_rx
            .recv()
            .map_err(|_| Error::TorchPanic("the engine thread died while loading".into()))??;
        Ok(Engine {
            tx,
            identity,
            device,
        })
    }

    /// Computes one batch on the model's thread.
    pub async fn compute(&self, batch: v1::BatchAssignment) -> Result<v1::BatchResult> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command { batch, reply })
            .map_err(|_| Error::TorchPanic("the engine thread is gone".into()))?;
        rx.await
            .map_err(|_| Error::TorchPanic("the engine thread dropped the batch".into()))?
    }
}

fn load(cfg: &EngineConfig) -> Result<(Gpt2, v1::ModelIdentity)> {
    let model = Gpt2::load(&cfg.model_dir, cfg.device)?;
    let fingerprint = model_fingerprint(&cfg.model_dir).map_err(|source| Error::Io {
        path: cfg.model_dir.clone(),
        source,
    })?;
    let c = &model.cfg;
    let identity = v1::ModelIdentity {
        fingerprint,
        n_layers: c.n_layers as u32,
        n_heads: c.n_heads as u32,
        d_model: c.d_model as u32,
        n_ctx: c.n_ctx as u32,
        d_vocab: c.d_vocab as u32,
    };
    Ok((model, identity))
}

/// One batch through the same code as `attrib-worker attribute` (one batch per pass), or one
/// faithfulness unit through the same code as `attrib-worker faithfulness`.
fn compute(model: &Gpt2, a: &v1::BatchAssignment) -> Result<v1::BatchResult> {
    let t0 = Instant::now();
    let settings = AttributionSettings::try_from(
        a.settings
            .as_ref()
            .ok_or_else(|| Error::BadBatch("no settings".into()))?,
    )
    .map_err(|e| Error::BadBatch(e.to_string()))?;
    let batch = to_batch(a)?;
    let graph = graph_for(model, &settings, batch.width);
    if let Some(eval) = &a.circuits {
        return evaluate_circuits(model, &graph, eval, a, &batch, t0);
    }
    let opts = PassOptions {
        batches_per_pass: 1,
        pad_id: a.pad_id,
        prepend_bos: a.prepend_bos,
    };
    let out = attribute_batches(model, &graph, &[batch], &settings, &opts, &mut |_, _| {})?;
    let b = out.batches.into_iter().next().ok_or(Error::NoBatches)?;
    Ok(v1::BatchResult {
        job_id: a.job_id.clone(),
        batch: a.batch,
        scores: b.scores,
        clean_logit_diff_sum: b.clean_logit_diff_sum,
        n_prompts: b.n_prompts as u32,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// A faithfulness unit: the circuits' logit-difference sums, then the corrupt sum.
fn evaluate_circuits(
    model: &Gpt2,
    graph: &GraphShape,
    eval: &v1::CircuitEval,
    a: &v1::BatchAssignment,
    batch: &Batch,
    t0: Instant,
) -> Result<v1::BatchResult> {
    let circuits: Vec<Circuit> = eval
        .circuits
        .iter()
        .map(|c| Circuit {
            requested: 0, // only the threshold decides which edges are kept
            threshold: c.min_abs_score,
            n_edges: 0,
        })
        .collect();
    let out = evaluate_batch(
        model,
        graph,
        &eval.scores,
        &circuits,
        batch,
        a.pad_id,
        a.prepend_bos,
    )?;
    let sums = out.sums();
    let mut scores = sums.circuit;
    scores.push(sums.corrupt);
    Ok(v1::BatchResult {
        job_id: a.job_id.clone(),
        batch: a.batch,
        scores,
        clean_logit_diff_sum: sums.clean,
        n_prompts: sums.n_prompts as u32,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Checks the wire batch's sizes and rebuilds the dataset crate's batch.
fn to_batch(a: &v1::BatchAssignment) -> Result<Batch> {
    let (n, w) = (a.batch_size as usize, a.width as usize);
    let bad = |what: String| Err(Error::BadBatch(what));
    if n == 0 || w == 0 {
        return bad(format!("batch size {n} and width {w} must be positive"));
    }
    if a.clean.len() != n * w || a.corrupt.len() != n * w {
        return bad(format!(
            "{} clean and {} corrupt token ids for {n} prompts of {w} tokens",
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
    Ok(Batch {
        index: a.batch as usize,
        batch_size: n,
        width: w,
        clean: a.clean.clone(),
        corrupt: a.corrupt.clone(),
        answers: ids(&a.answers),
        wrong_answers: ids(&a.wrong_answers),
    })
}
