//! Exact edge patching (the EAP-IG library's `exact`): each edge's effect on the metric with
//! that edge alone patched. On the clean prompts, the edge's destination input gets
//! `P[src] − S[src]` added (the corrupt prompt's source output replaces the clean one there
//! and nowhere else); the score is the mean over prompts of `metric(clean) − metric(patched)`,
//! EAP-IG's `M(every edge but e) − M(clean)` for its loss `−metric`. Forward passes only.
//!
//! Edges share forward passes: the unit's prompts are repeated once per edge of a chunk
//! (`exact_edges_per_pass`), and each copy patches its own edge, so one pass measures the
//! whole chunk. A pass starts at
//! the first block its chunk patches, from the clean residual stream there: nothing before
//! it changes.

use std::ops::Range;

use attrib_proto::memory::exact_edges_per_pass;
use attrib_proto::{AttributionSettings, DestKind, DestModule, Edge, GraphShape};
use tch::{Kind, Tensor};

use super::mask_gradient::{PassInput, UnitScores};
use super::metric::apply_grad_function;
use crate::device::download_f32;
use crate::model::gpt2::repeat_rows;
use crate::model::{ln_pre, CleanRun, Gpt2, HeadInputs, Patcher};
use crate::Result;

/// Per edge of `edges` (flat indices of `graph`), Σ over the unit's prompts of
/// `metric(clean) − metric(edge patched)`, placed in a full-length score vector (zeros
/// elsewhere, so a unit of some edges folds like any other). The clean logit differences
/// come with the unit that measures edge 0 only, so that each prompt counts once.
pub fn exact_scores(
    model: &Gpt2,
    graph: &GraphShape,
    pass: &PassInput,
    settings: &AttributionSettings,
    edges: Range<usize>,
    between_passes: &dyn Fn() -> Result<()>,
) -> Result<UnitScores> {
    tch::no_grad(|| {
        let all = graph.edges();
        let modules = graph.modules();
        let patch = model.source_outputs(graph.n_src(), &pass.corrupt); // [n_src, C, T, d]
        let (clean, clean_logits) = CleanRun::record(model, graph.n_src(), &pass.clean);
        let clean_metric = per_prompt_metric(pass, settings, &clean_logits); // [C]
        let rows = pass.clean.batch;
        // Passes cover aligned chunks of the flat edge order, whatever the unit's edges, so
        // that a cluster's units (whose edge groups are multiples of the chunk) and one
        // process run the same passes.
        let chunk = exact_edges_per_pass(rows, pass.clean.width);
        let passes = (edges.start / chunk..edges.end.div_ceil(chunk))
            .map(|c| (c * chunk).max(edges.start)..((c + 1) * chunk).min(edges.end));
        let mut effects: Vec<Tensor> = Vec::with_capacity(edges.len());
        for (i, range) in passes.enumerate() {
            if i > 0 {
                between_passes()?;
            }
            let mine: Vec<Edge> = all[range].to_vec();
            let start = mine
                .iter()
                .map(|e| start_block(graph, &modules[e.module]))
                .min()
                .expect("a chunk has edges");
            let mut patcher = EdgePatcher::new(model, graph, &mine, &patch, &clean, start);
            let tokens = pass.clean.repeat(mine.len());
            let resid = repeat_rows(&clean.block_inputs[start], mine.len());
            let out = model.forward_last_from(&tokens, start, resid, &mut patcher);
            let logits = model.unembed(&out);
            for r in 0..mine.len() as i64 {
                let copy = logits.narrow(0, r * rows as i64, rows as i64);
                let patched = per_prompt_metric(pass, settings, &copy);
                effects.push((&clean_metric - patched).sum(Kind::Float));
            }
        }
        let mut scores = vec![0f32; graph.n_edges()];
        if !effects.is_empty() {
            let values = download_f32(&Tensor::stack(&effects, 0));
            scores[edges.clone()].copy_from_slice(&values);
        }
        // The coordinator expects the prompts with edge group 0 only (`JobPlan::unit_prompts`).
        let clean_logit_diffs = if edges.start == 0 {
            download_f32(&pass.logit_diffs(&clean_logits))
        } else {
            Vec::new()
        };
        Ok(UnitScores {
            scores,
            clean_logit_diffs,
        })
    })
}

/// The block a pass patching a destination of `module` starts at: its own block, or past the
/// last one for `Resid End`.
pub(crate) fn start_block(graph: &GraphShape, module: &DestModule) -> usize {
    match module.kind {
        DestKind::ResidEnd => graph.n_layers,
        _ => module.block,
    }
}

/// The job's metric per prompt `[C]`: its answer function of its grad function's values.
fn per_prompt_metric(pass: &PassInput, settings: &AttributionSettings, logits: &Tensor) -> Tensor {
    let bs = pass.batch_size as i64;
    let per_batch: Vec<Tensor> = pass
        .answers
        .iter()
        .enumerate()
        .map(|(n, ans)| {
            let z = logits.narrow(0, n as i64 * bs, bs);
            ans.per_prompt(
                &apply_grad_function(settings.grad_function, &z),
                settings.answer_function,
            )
        })
        .collect();
    Tensor::cat(&per_batch, 0)
}

/// Patches edge `edges[r]` in row block `r` of a repeated batch.
struct EdgePatcher<'a> {
    model: &'a Gpt2,
    kinds: Vec<(DestKind, usize)>,
    edges: &'a [Edge],
    patch: &'a Tensor,
    rows: i64,
    /// Per copy, `P[src] − S[src]` `[C, T, d]` (only at the edge's position when token-wise),
    /// once its source has run.
    deltas: Vec<Option<Tensor>>,
    /// The current block's shared head input, for recomputing a patched head's projection.
    attn_x: Option<Tensor>,
}

impl<'a> EdgePatcher<'a> {
    /// For a pass starting at block `start`: the Δ of edges from sources before it come from
    /// the clean run, the others from the pass as it goes.
    fn new(
        model: &'a Gpt2,
        graph: &GraphShape,
        edges: &'a [Edge],
        patch: &'a Tensor,
        clean: &CleanRun,
        start: usize,
    ) -> Self {
        let mut p = EdgePatcher {
            model,
            kinds: graph.modules().iter().map(|m| (m.kind, m.block)).collect(),
            edges,
            patch,
            rows: clean.sources.buf.size()[1],
            deltas: edges.iter().map(|_| None).collect(),
            attn_x: None,
        };
        let computed = match start {
            s if s < graph.n_layers => graph.head_src(s, 0),
            _ => graph.n_src(),
        };
        for (r, e) in edges.iter().enumerate() {
            if e.src < computed {
                p.deltas[r] = Some(p.delta(e, &clean.sources.buf.get(e.src as i64)));
            }
        }
        p
    }

    /// `P[src] − S[src]` `[C, T, d]` for `current` = S, only at the edge's position when
    /// token-wise.
    fn delta(&self, e: &Edge, current: &Tensor) -> Tensor {
        let delta = self.patch.get(e.src as i64) - current;
        match e.seq {
            Some(t) => {
                let only = delta.zeros_like();
                let mut at = only.narrow(1, t as i64, 1);
                at.copy_(&delta.narrow(1, t as i64, 1));
                only
            }
            None => delta,
        }
    }

    /// The copies whose edge goes into a module matching `pred`, with their Δ.
    fn copies_into(&self, pred: impl Fn(DestKind, usize) -> bool) -> Vec<(usize, &Tensor)> {
        self.edges
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                let (kind, block) = self.kinds[e.module];
                pred(kind, block)
            })
            .map(|(r, _)| (r, self.deltas[r].as_ref().expect("sources run first")))
            .collect()
    }

    fn rows_of(&self, x: &Tensor, r: usize) -> Tensor {
        x.narrow(0, r as i64 * self.rows, self.rows)
    }

    /// `x` with each listed copy's Δ added to its rows.
    fn add_deltas(&self, x: &Tensor, copies: &[(usize, &Tensor)]) -> Tensor {
        if copies.is_empty() {
            return x.shallow_clone();
        }
        let out = x.copy();
        for (r, delta) in copies {
            let mut rows = self.rows_of(&out, *r);
            rows += *delta;
        }
        out
    }
}

impl Patcher for EdgePatcher<'_> {
    fn record_sources(&mut self, first: usize, outs: &Tensor) {
        let n = outs.size()[0] as usize;
        for (r, e) in self.edges.iter().enumerate() {
            if !(first..first + n).contains(&e.src) {
                continue;
            }
            let current = self.rows_of(&outs.get((e.src - first) as i64), r);
            self.deltas[r] = Some(self.delta(e, &current));
        }
    }

    fn attn_input(&mut self, _block: usize, resid: &Tensor) -> HeadInputs {
        self.attn_x = Some(resid.shallow_clone());
        HeadInputs::Shared(resid.shallow_clone())
    }

    /// A patched head input changes only that head's projection(s): they are recomputed
    /// from the patched input for the copy's rows and written over the shared result.
    fn qkv(&mut self, block: usize, q: Tensor, k: Tensor, v: Tensor) -> (Tensor, Tensor, Tensor) {
        let copies = self.copies_into(|kind, b| kind.is_attention() && b == block);
        if copies.is_empty() {
            return (q, k, v);
        }
        let w = &self.model.w.blocks[block];
        let x = self.attn_x.as_ref().expect("head input seen");
        for (r, delta) in copies {
            let e = &self.edges[r];
            let h = e.head.expect("a head edge") as i64;
            let y = ln_pre(&(self.rows_of(x, r) + delta), self.model.cfg.eps); // [C, T, d]
            let kind = self.kinds[e.module].0;
            let targets: Vec<(&Tensor, &Tensor, &Tensor)> = match kind {
                DestKind::Q => vec![(&q, &w.w_q, &w.b_q)],
                DestKind::K => vec![(&k, &w.w_k, &w.b_k)],
                DestKind::V => vec![(&v, &w.w_v, &w.b_v)],
                _ => vec![
                    (&q, &w.w_q, &w.b_q),
                    (&k, &w.w_k, &w.b_k),
                    (&v, &w.w_v, &w.b_v),
                ],
            };
            for (out, wm, bias) in targets {
                let proj = y.matmul(&wm.get(h)) + bias.get(h); // [C, T, dh]
                let mut head = self.rows_of(out, r).select(1, h);
                head.copy_(&proj);
            }
        }
        (q, k, v)
    }

    fn mlp_input(&mut self, block: usize, resid_mid: &Tensor) -> Tensor {
        let copies = self.copies_into(|kind, b| kind == DestKind::Mlp && b == block);
        self.add_deltas(resid_mid, &copies)
    }

    fn final_input(&mut self, resid: &Tensor) -> Tensor {
        let copies = self.copies_into(|kind, _| kind == DestKind::ResidEnd);
        self.add_deltas(resid, &copies)
    }
}
