//! ACDC as AutoCircuit 1.0.1 runs it (`acdc_prune_scores`, KL target): on one batch, for one
//! τ, every edge is visited once, by destination layer with the last layer first: a stable
//! sort of the flat edge order by AutoCircuit's key (`sorted(edges, key=dest.layer,
//! reverse=True)`). Inside a layer AutoCircuit's own order follows Python's set hashing,
//! which changes between processes; attrib uses the flat order, as the golden does. The visited edge is patched (its destination gets the corrupt
//! prompt's source output) on top of the edges removed so far; if the KL divergence of the
//! patched output from the clean one grew by less than τ since the last removal, the edge
//! stays removed, else it is restored. Each step is one forward pass from the visited edge's
//! block on (AutoCircuit's `start_at_layer`) and depends on the previous ones, so a τ is
//! sequential; different τ are independent work units.

use attrib_proto::GraphShape;
use tch::{Kind, Tensor};

use super::exact::start_block;
use super::mask_gradient::PassInput;
use crate::model::{CleanRun, Gpt2, TreePatcher};
use crate::Result;

/// One visited edge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AcdcStep {
    /// Flat edge index.
    pub edge: usize,
    /// KL(clean ‖ patched) with this edge and every edge removed before it patched, the
    /// mean over the batch's prompts (AutoCircuit's `multibatch_kl_div`).
    pub kl: f64,
    pub removed: bool,
}

/// AutoCircuit's visit order: flat edge indices by destination layer, last layer first,
/// the flat order inside a layer.
pub fn visit_order(graph: &GraphShape) -> Vec<usize> {
    let modules = graph.modules();
    let mut order: Vec<(usize, usize)> = graph
        .edges()
        .iter()
        .enumerate()
        .map(|(i, e)| (graph.dest_layer(&modules[e.module]), i))
        .collect();
    order.sort_by_key(|&(layer, _)| std::cmp::Reverse(layer)); // stable
    order.into_iter().map(|(_, i)| i).collect()
}

/// ACDC at `tau` on `pass` (AutoCircuit uses the first train batch): every step, in visit
/// order. `between_passes` runs before each step after the first (cancellation).
pub fn acdc_steps(
    model: &Gpt2,
    graph: &GraphShape,
    pass: &PassInput,
    tau: f64,
    between_passes: &dyn Fn() -> Result<()>,
) -> Result<Vec<AcdcStep>> {
    tch::no_grad(|| {
        let patch = model.source_outputs(graph.n_src(), &pass.corrupt);
        let (clean_run, clean_logits) = CleanRun::record(model, graph.n_src(), &pass.clean);
        let clean = clean_logits.log_softmax(-1, Kind::Float);
        // P − S for every source, clean S: a step recomputes (and rewrites) only the sources
        // from its start block on. Removed edges all lead into blocks at or after the visited
        // one (the visit goes backwards), so earlier sources are clean in every step.
        let scratch = &patch - &clean_run.sources.buf;
        let modules = graph.modules();
        let edges = graph.edges();
        // Masks per module, created when an edge of the module is first patched.
        let mut masks: Vec<Option<Tensor>> = modules.iter().map(|_| None).collect();
        let set = |masks: &mut Vec<Option<Tensor>>, edge: usize, value: f64| {
            let m = &modules[edges[edge].module];
            let shape: Vec<i64> = m.shape.iter().map(|&s| s as i64).collect();
            let mask = masks[edges[edge].module]
                .get_or_insert_with(|| Tensor::zeros(shape, (Kind::Float, model.device)));
            let _ = mask.view([-1]).get((edge - m.offset) as i64).fill_(value);
        };
        let mut steps = Vec::with_capacity(edges.len());
        let mut prev_kl = 0.0;
        for (i, edge) in visit_order(graph).into_iter().enumerate() {
            if i > 0 {
                between_passes()?;
            }
            set(&mut masks, edge, 1.0);
            let start = start_block(graph, &modules[edges[edge].module]);
            let mut patcher = TreePatcher::new(*graph, &masks, &patch, &scratch);
            let resid = clean_run.block_inputs[start].shallow_clone();
            let out = model.forward_last_from(&pass.clean, start, resid, &mut patcher);
            let out = model.unembed(&out);
            let kl = kl_div(&clean, &out.log_softmax(-1, Kind::Float));
            let removed = kl - prev_kl < tau;
            if removed {
                prev_kl = kl;
            } else {
                set(&mut masks, edge, 0.0);
            }
            steps.push(AcdcStep { edge, kl, removed });
        }
        Ok(steps)
    })
}

/// `Σ exp(c)·(c − o)` over the vocabulary, mean over prompts: KL(clean ‖ out) from log
/// probabilities `[B, V]`. The elementwise terms in f32 as PyTorch's `kl_div` computes them,
/// summed in f64.
fn kl_div(clean: &Tensor, out: &Tensor) -> f64 {
    let terms = clean.exp() * (clean - out);
    terms.sum(Kind::Double).double_value(&[]) / clean.size()[0] as f64
}
