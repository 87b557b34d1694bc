//! `mask_gradient_prune_scores` without materialising per-edge masks (spec 5.2).
//!
//! Every mask holds the same value α, so each destination input is
//! `x + α·(ΣP − ΣS)` over its sources: one shared input per block for all heads' Q, K and V.
//! One backward pass gives `g_D = ∂loss/∂x̃_D` for every destination input (per head through
//! the LayerNorm Jacobian), and the score of edge (s → D) is `Σ g_D·(P[s] − S[s])`, which is
//! exactly `∂loss/∂m` of that edge. The batches of a work unit share one pass; the loss is a
//! sum of per-batch means, and the unit's scores are the contraction summed over its batches
//! and mask points on the device, copied to the host once.
//!
//! EAP-IG's gradient methods (EAP-IG-inputs, clean-corrupted, EAP-IG-activations) are the same
//! contraction over other gradient runs: on the corrupt prompts, or with the embeddings or one
//! node's output replaced by an interpolation, always against the fixed `S(clean) − P`.

use attrib_proto::{AttributionSettings, DestKind, DestModule, GraphShape, Method};
use tch::{Kind, Tensor};

use super::metric::{apply_grad_function, BatchAnswers};
use super::runs::{eap_ig_runs, interpolation, Run};
use super::stages::StageClock;
pub use super::stages::StageTimes;
use super::uniform_patcher::UniformPatcher;
use crate::device::download_f32;
use crate::model::{ln_pre, Gpt2, SourceBuffer, SourceLayout, TokenBatch};
use crate::Result;

/// Consecutive batches of equal size run as one forward/backward pass.
pub struct PassInput {
    pub clean: TokenBatch,
    pub corrupt: TokenBatch,
    pub answers: Vec<BatchAnswers>,
    pub batch_size: usize,
}

impl PassInput {
    pub fn n_batches(&self) -> usize {
        self.answers.len()
    }

    /// Per prompt, logit(answer) − logit(wrong answer) from the pass's logits `[C, V]`: `[C]`.
    pub fn logit_diffs(&self, logits: &Tensor) -> Tensor {
        let bs = self.batch_size as i64;
        let per_batch: Vec<Tensor> = self
            .answers
            .iter()
            .enumerate()
            .map(|(n, ans)| ans.logit_diff(&logits.narrow(0, n as i64 * bs, bs)))
            .collect();
        Tensor::cat(&per_batch, 0)
    }
}

/// What one pass (a work unit) contributes, as the f32 values the engine computed.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitScores {
    /// Per edge, Σ over the unit's prompts and mask points of ∂metric/∂mask.
    pub scores: Vec<f32>,
    /// Per prompt, the unpatched clean logit difference.
    pub clean_logit_diffs: Vec<f32>,
}

/// Runs the attribution of one pass: scores summed over its batches and the method's runs,
/// in the graph's flat edge order.
pub fn pass_scores(
    model: &Gpt2,
    graph: &GraphShape,
    pass: &PassInput,
    settings: &AttributionSettings,
) -> Result<UnitScores> {
    pass_scores_timed(model, graph, pass, settings, &|| Ok(()), false).map(|(s, _)| s)
}

/// `pass_scores`, also reporting the time of each stage. `between_passes` runs before each
/// gradient run after the first; its error (a cancelled job) stops the unit there.
/// With `synced_stages` each stage waits for the device before the clock is read (exact
/// stage times on a GPU); without, the device is never waited for inside the unit, and on a
/// GPU only the total is meaningful.
///
/// AutoCircuit's mask gradient contracts each run's gradients with that run's own
/// `S − P` (S moves with the masks); EAP-IG's methods contract every run's gradients with
/// one `S − P` taken from an unpatched clean forward pass.
pub fn pass_scores_timed(
    model: &Gpt2,
    graph: &GraphShape,
    pass: &PassInput,
    settings: &AttributionSettings,
    between_passes: &dyn Fn() -> Result<()>,
    synced_stages: bool,
) -> Result<(UnitScores, StageTimes)> {
    let mut times = StageTimes::default();
    let mut clock = StageClock::new(model.device, synced_stages);
    let (nb, bs) = (pass.n_batches(), pass.batch_size);
    let layout = SourceLayout::BatchMajor { n_batches: nb };
    let new_buffer = || {
        SourceBuffer::new(
            graph.n_src(),
            nb * bs,
            pass.clean.width,
            model.cfg.d_model,
            layout,
            model.device,
        )
    };

    // Patch values: every source's output on the corrupt prompts.
    let mut p_buf = new_buffer();
    let _ = tch::no_grad(|| model.forward_last(&pass.corrupt, &mut p_buf));
    let alphas = match settings.method {
        Method::MaskGradient => settings.points.alphas(),
        _ => vec![0.0],
    };
    // Σ P per destination is only read when some mask value is non-zero.
    let cum_p = if alphas.iter().any(|&a| a != 0.0) {
        tch::no_grad(|| checkpoint_sums(&p_buf.buf, graph, nb, bs))
    } else {
        Vec::new()
    };
    times.corrupt_forward += clock.lap();

    let mut s_buf = new_buffer();
    let mut clean_diffs: Option<Tensor> = None; // [C]
    let fixed_delta = matches!(
        settings.method,
        Method::EapIgInputs { .. } | Method::CleanCorrupted | Method::EapIgActivations { .. }
    );
    let runs = if fixed_delta {
        clean_diffs = Some(fixed_delta_in_place(model, pass, &mut s_buf, &p_buf));
        times.clean_forward += clock.lap();
        eap_ig_runs(&settings.method, graph)
    } else {
        alphas.iter().map(|&a| Run::clean(a)).collect()
    };

    // Σ over runs of the contraction, on the device; negated at the end.
    let mut total: Option<Tensor> = None;
    let sources = PassSources {
        p_buf: &p_buf,
        cum_p: &cum_p,
        fixed_delta,
    };
    for (i, run) in runs.into_iter().enumerate() {
        if i > 0 {
            between_passes()?;
        }
        let (scores, diffs) = gradient_run(
            model, graph, pass, settings, &run, &sources, &mut s_buf, &mut clock, &mut times,
        );
        clean_diffs = diffs.or(clean_diffs);
        total = Some(match total {
            Some(t) => t + scores,
            None => scores,
        });
        times.contraction += clock.lap();
    }
    let clean_diffs = match clean_diffs {
        Some(d) => d,
        None => {
            let d = tch::no_grad(|| pass.logit_diffs(&model.logits(&pass.clean)));
            times.clean_forward += clock.lap();
            d
        }
    };
    let unit = download(-total.expect("at least one mask point"), clean_diffs);
    // The copy waits for the device: on a GPU, the queued work's time lands here.
    times.contraction += clock.lap();
    Ok((unit, times))
}

/// The unit's one copy to the host: the scores and the clean differences together.
fn download(scores: Tensor, clean_diffs: Tensor) -> UnitScores {
    let n_edges = scores.size()[0] as usize;
    let mut values = download_f32(&Tensor::cat(&[scores, clean_diffs], 0));
    let clean_logit_diffs = values.split_off(n_edges);
    UnitScores {
        scores: values,
        clean_logit_diffs,
    }
}

/// EAP-IG's fixed Δ = S − P from an unpatched clean pass, in place in the S buffer; returns
/// the clean logit differences of that pass.
fn fixed_delta_in_place(
    model: &Gpt2,
    pass: &PassInput,
    s_buf: &mut SourceBuffer,
    p_buf: &SourceBuffer,
) -> Tensor {
    let logits = tch::no_grad(|| model.unembed(&model.forward_last(&pass.clean, s_buf)));
    let clean_diffs = tch::no_grad(|| pass.logit_diffs(&logits));
    tch::no_grad(|| {
        let mut d = s_buf.buf.shallow_clone();
        d -= &p_buf.buf;
    });
    clean_diffs
}

/// What every gradient run of a pass reads: the corrupt sources P, their per-destination
/// sums, and whether Δ is fixed (EAP-IG) or each run's own `S − P` (AutoCircuit).
struct PassSources<'a> {
    p_buf: &'a SourceBuffer,
    cum_p: &'a [Tensor],
    fixed_delta: bool,
}

/// One gradient run: the patched forward, the backward of the metric's loss, and the
/// contraction of the mask gradients with `S − P` (not yet negated). Also the clean logit
/// differences when this run is AutoCircuit's unpatched one (mask value 0).
#[allow(clippy::too_many_arguments)]
fn gradient_run(
    model: &Gpt2,
    graph: &GraphShape,
    pass: &PassInput,
    settings: &AttributionSettings,
    run: &Run,
    sources: &PassSources,
    s_buf: &mut SourceBuffer,
    clock: &mut StageClock,
    times: &mut StageTimes,
) -> (Tensor, Option<Tensor>) {
    let fixed_delta = sources.fixed_delta;
    let replacement = run
        .interpolate
        .map(|(first, n, a)| interpolation(first, n, a, &sources.p_buf.buf, &s_buf.buf));
    let s_rec = (!fixed_delta).then_some(&mut *s_buf);
    let mut p = UniformPatcher::new(run.alpha, sources.cum_p, s_rec);
    p.replacement = replacement;
    let tokens = if run.corrupt_tokens {
        &pass.corrupt
    } else {
        &pass.clean
    };
    let logits = model.unembed(&model.forward_last(tokens, &mut p)); // [C, V]
    let loss = metric_loss(pass, settings, &logits);
    let clean_diffs = (!fixed_delta && run.alpha == 0.0)
        .then(|| tch::no_grad(|| pass.logit_diffs(&logits.detach())));
    times.clean_forward += clock.lap();
    let grads = Tensor::run_backward(&[loss], &p.leaves(), false, false);
    times.backward += clock.lap();
    let contract = Contraction {
        model,
        graph,
        pass,
        attn_inputs: &p.attn_inputs,
        grads: &grads,
    };
    if !fixed_delta {
        // Δ' = S − P in place in the S buffer (no third buffer); scores are negated below.
        tch::no_grad(|| {
            let mut d = s_buf.buf.shallow_clone();
            d -= &sources.p_buf.buf;
        });
    }
    let scores = tch::no_grad(|| contract.scores(&s_buf.buf));
    (scores, clean_diffs)
}

/// The loss of one run: minus the sum over its batches of each batch's mean answer metric
/// (AutoCircuit sums gradients over batches).
fn metric_loss(pass: &PassInput, settings: &AttributionSettings, logits: &Tensor) -> Tensor {
    let bs = pass.batch_size;
    let mut terms = Vec::with_capacity(pass.n_batches());
    for (n, ans) in pass.answers.iter().enumerate() {
        let z = logits.narrow(0, (n * bs) as i64, bs as i64);
        let v = apply_grad_function(settings.grad_function, &z);
        terms.push(ans.value(&v, settings.answer_function));
    }
    -Tensor::stack(&terms, 0).sum(Kind::Float)
}

/// The modules at the head of `rest` that share one contraction: a block's head inputs, or
/// an MLP input with the next block's head inputs (or with `Resid End` after the last block).
fn contraction_group(rest: &[DestModule]) -> Vec<&DestModule> {
    let first = &rest[0];
    let next_block = if first.kind.is_attention() {
        first.block
    } else {
        first.block + 1
    };
    let followers = rest[1..].iter().take_while(|m| {
        (m.kind.is_attention() && m.block == next_block)
            || (m.kind == DestKind::ResidEnd && first.kind == DestKind::Mlp)
    });
    std::iter::once(first).chain(followers).collect()
}

/// Σ P over the sources each destination reads, `[C, T, d]` each, from a batch-major buffer.
fn checkpoint_sums(p: &Tensor, graph: &GraphShape, nb: usize, bs: usize) -> Vec<Tensor> {
    let s = p.size(); // [n_src, nb, T, B, d]
    let to_ctd = |x: Tensor| {
        x.permute([0, 2, 1, 3])
            .reshape([(nb * bs) as i64, s[2], s[4]])
    };
    let mut bounds: Vec<usize> = (0..graph.n_layers)
        .flat_map(|b| [graph.attn_n_in(b), graph.mlp_n_in(b)])
        .collect();
    bounds.push(graph.n_src());
    let mut out = Vec::with_capacity(bounds.len());
    let mut running = p.get(0).zeros_like();
    let mut done = 0;
    for n in bounds {
        running +=
            p.narrow(0, done as i64, (n - done) as i64)
                .sum_dim_intlist(0, false, Kind::Float);
        done = n;
        out.push(to_ctd(running.copy())); // a copy: `running` keeps changing in place
    }
    out
}

/// The contraction `Σ g_D·(S − P)` of one pass, summed over its batches.
struct Contraction<'a> {
    model: &'a Gpt2,
    graph: &'a GraphShape,
    pass: &'a PassInput,
    attn_inputs: &'a [Tensor],
    grads: &'a [Tensor],
}

impl Contraction<'_> {
    /// The flat f32 scores of every edge, summed over the pass's batches in batch order, on
    /// the device (sign: `Σ g·(S − P)`).
    ///
    /// The contraction is memory-bound (every source difference is a `[B, T, d]` slab), so
    /// modules that read (almost) the same sources share one GEMM and the slabs are read
    /// once per group: `MLP b` reads sources `0..13(b+1)`, block b+1's Q, K and V read those
    /// plus `MLP b` itself, and `Resid End` reads everything. Each module then keeps its own
    /// rows and its first `n_in` columns.
    fn scores(&self, delta: &Tensor) -> Tensor {
        let nb = self.pass.n_batches();
        let modules = self.graph.modules();
        let token_axis = i64::from(self.graph.seq_len.is_some());
        let heads = self.model.cfg.n_heads as i64;
        let mut pieces: Vec<Tensor> = Vec::with_capacity(modules.len());
        let mut i = 0;
        while i < modules.len() {
            let group = contraction_group(&modules[i..]);
            let n_max = group.iter().map(|m| m.n_in).max().expect("non-empty group");
            // Gradients in module order; a block's head inputs come from one call.
            let mut grads = Vec::with_capacity(2);
            let mut j = 0;
            while j < group.len() {
                if group[j].kind.is_attention() {
                    let kinds: Vec<DestKind> = group[j..]
                        .iter()
                        .take_while(|m| m.kind.is_attention())
                        .map(|m| m.kind)
                        .collect();
                    grads.push(self.head_grads(group[j].block, &kinds));
                    j += kinds.len();
                } else {
                    grads.push(self.dest_grad(group[j]));
                    j += 1;
                }
            }
            let g = if grads.len() == 1 {
                grads.pop().expect("one")
            } else {
                Tensor::cat(&grads, 0)
            }; // [rows, C, T, d]
            drop(grads);
            // [rows, n_max] or [T, rows, n_max], summed over batches in batch order.
            let mut c = self.contract(&g, delta, n_max, 0);
            for n in 1..nb {
                c += self.contract(&g, delta, n_max, n);
            }
            let mut row = 0;
            for m in &group {
                let rows = if m.kind.is_attention() { heads } else { 1 };
                let mine = c.narrow(token_axis, row, rows).narrow(-1, 0, m.n_in as i64);
                pieces.push(mine.reshape([-1]));
                row += rows;
            }
            i += group.len();
        }
        Tensor::cat(&pieces, 0)
    }

    /// `∂loss/∂x̃_D` `[1, C, T, d]` of an MLP input or the final residual.
    fn dest_grad(&self, m: &DestModule) -> Tensor {
        let l = self.graph.n_layers;
        match m.kind {
            DestKind::Mlp => self.grads[3 * l + m.block].unsqueeze(0),
            DestKind::ResidEnd => self.grads[4 * l].unsqueeze(0),
            _ => unreachable!("head inputs go through head_grads"),
        }
    }

    /// Per-head gradients at block `b`'s head inputs, stacked over `kinds`: `[kinds·H, C, T, d]`.
    /// From the gradient of each projection (`[C, H, T, dh]`): `J_LN(x̃)ᵀ · (W[h] · g[h])`; the
    /// shared head input (`HeadInput`) sums the Q, K and V parts.
    fn head_grads(&self, b: usize, kinds: &[DestKind]) -> Tensor {
        let cfg = &self.model.cfg;
        let w = &self.model.w.blocks[b];
        let x = &self.attn_inputs[b]; // [C, T, d]
        let s = x.size();
        let (h, dh) = (cfg.n_heads as i64, cfg.d_head as i64);
        let u_of = |which: usize| {
            let wm = [&w.w_q, &w.w_k, &w.w_v][which]; // [H, d, dh]
            let gh = self.grads[3 * b + which]
                .permute([1, 0, 2, 3])
                .reshape([h, s[0] * s[1], dh]); // [H, C·T, dh]
            gh.bmm(&wm.transpose(1, 2)).view([h, s[0], s[1], s[2]]) // [H, C, T, d]
        };
        let u: Vec<Tensor> = kinds
            .iter()
            .map(|k| match k {
                DestKind::Q => u_of(0),
                DestKind::K => u_of(1),
                DestKind::V => u_of(2),
                DestKind::HeadInput => u_of(0) + u_of(1) + u_of(2),
                _ => unreachable!("not a head input"),
            })
            .collect();
        let mut g = Tensor::cat(&u, 0); // [kinds·H, C, T, d]
        drop(u);
        let c = x - x.mean_dim(-1, true, Kind::Float);
        let sigma = (c.square().mean_dim(-1, true, Kind::Float) + cfg.eps).sqrt(); // [C, T, 1]
        let y = ln_pre(x, cfg.eps); // [C, T, d]
                                    // In place: fresh memory is the expensive resource here (see host_tuning).
        let uy = (&g * &y).mean_dim(-1, true, Kind::Float); // [kinds·H, C, T, 1]
        g -= g.mean_dim(-1, true, Kind::Float);
        g -= y * uy;
        g /= sigma;
        g
    }

    /// Batch `n`'s contraction of `g` `[rows, C, T, d]` with `delta` `[n_src, nb, T, B, d]`:
    /// `[rows, n_in]`, or `[T, rows, n_in]` with token positions.
    fn contract(&self, g: &Tensor, delta: &Tensor, n_in: usize, n: usize) -> Tensor {
        let bs = self.pass.batch_size as i64;
        let gn = g.narrow(1, n as i64 * bs, bs).permute([0, 2, 1, 3]); // [rows, T, B, d]
        let s = gn.size();
        let dn = delta.narrow(0, 0, n_in as i64).select(1, n as i64); // [n_in, T, B, d]
        let n_in = n_in as i64;
        if self.graph.seq_len.is_some() {
            let a = gn.permute([1, 0, 2, 3]).reshape([s[1], s[0], s[2] * s[3]]); // [T, rows, B·d]
            let bm = dn.reshape([n_in, s[1], s[2] * s[3]]).permute([1, 2, 0]); // [T, B·d, n_in]
            a.bmm(&bm)
        } else {
            gn.reshape([s[0], -1]).matmul(&dn.reshape([n_in, -1]).tr()) // [rows, n_in]
        }
    }
}

/// Batches `batches` into one pass input on the model's device.
pub fn pass_input(
    model: &Gpt2,
    batches: &[attrib_datasets::Batch],
    pad_id: i64,
    prepend_bos: bool,
) -> Result<PassInput> {
    let first = batches.first().expect("a pass has at least one batch");
    let (bs, width) = (first.batch_size, first.width);
    let rows = batches.len() * bs;
    let tokens = |side: fn(&attrib_datasets::Batch) -> &[i64]| {
        let ids: Vec<i64> = batches
            .iter()
            .flat_map(|b| side(b).iter().copied())
            .collect();
        TokenBatch::new(
            &ids,
            rows,
            width,
            pad_id,
            prepend_bos,
            &model.cfg,
            model.device,
        )
    };
    Ok(PassInput {
        clean: tokens(|b| &b.clean)?,
        corrupt: tokens(|b| &b.corrupt)?,
        answers: batches
            .iter()
            .map(|b| BatchAnswers::new(&b.answers, &b.wrong_answers, model.device))
            .collect(),
        batch_size: bs,
    })
}
