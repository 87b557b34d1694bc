//! The slow edge-attribution-patching reference (spec 5.4), kept as an independent check of
//! the fast mask-gradient path: run the plain model on clean with a zero leaf added at every
//! destination input (a private copy per head, as TransformerLens makes), backpropagate, and
//! contract each input's gradient with (corrupt − clean) source outputs. Ignores positions.

use attrib_proto::{AnswerFunction, DestKind, GradFunction, GraphShape};
use tch::{Kind, Tensor};

use super::metric::{apply_grad_function, BatchAnswers};
use super::uniform_patcher::tap;
use crate::model::{Gpt2, HeadInputs, Patcher, SourceBuffer, SourceLayout, TokenBatch};

struct Taps {
    sources: SourceBuffer,
    leaves: Vec<Tensor>, // one per destination module, in graph module order
    separate_qkv: bool,
    n_heads: i64,
}

impl Taps {
    fn leaf(&mut self, x: Tensor) -> Tensor {
        let (x, leaf) = tap(x);
        self.leaves.push(leaf);
        x
    }

    /// A private copy of the residual per head: `[B, T, H, d]`.
    fn per_head(&mut self, resid: &Tensor) -> Tensor {
        let s = resid.size();
        let rep = resid
            .unsqueeze(2)
            .expand([s[0], s[1], self.n_heads, s[2]], false);
        self.leaf(rep)
    }
}

impl Patcher for Taps {
    fn record_sources(&mut self, first: usize, outs: &Tensor) {
        self.sources.store(first, outs);
    }

    fn attn_input(&mut self, _block: usize, resid: &Tensor) -> HeadInputs {
        HeadInputs::per_head(self.separate_qkv, |_| self.per_head(resid))
    }

    fn mlp_input(&mut self, _block: usize, resid_mid: &Tensor) -> Tensor {
        self.leaf(resid_mid.shallow_clone())
    }

    fn final_input(&mut self, resid: &Tensor) -> Tensor {
        self.leaf(resid.shallow_clone())
    }
}

/// EAP scores of one batch (flat, graph order; the graph must have no token positions).
pub fn eap_batch_scores(
    model: &Gpt2,
    graph: &GraphShape,
    clean: &TokenBatch,
    corrupt: &TokenBatch,
    answers: &BatchAnswers,
    answer_function: AnswerFunction,
) -> Vec<f64> {
    assert!(graph.seq_len.is_none(), "EAP ignores positions");
    let cfg = &model.cfg;
    let corrupt_src = model.source_outputs(graph.n_src(), corrupt); // [n_src, B, T, d]
    let sources = SourceBuffer::new(
        graph.n_src(),
        clean.batch,
        clean.width,
        cfg.d_model,
        SourceLayout::Plain,
        model.device,
    );
    let mut taps = Taps {
        sources,
        leaves: Vec::new(),
        separate_qkv: graph.separate_qkv,
        n_heads: cfg.n_heads as i64,
    };
    let logits = model.unembed(&model.forward_last(clean, &mut taps));
    let loss = -answers.value(
        &apply_grad_function(GradFunction::Logit, &logits),
        answer_function,
    );
    let grads = Tensor::run_backward(&[loss], &taps.leaves, false, false);
    let diff = corrupt_src - &taps.sources.buf; // [n_src, B, T, d]
    let mut out = Vec::new();
    for (m, g) in graph.modules().iter().zip(&grads) {
        let d = diff.narrow(0, 0, m.n_in as i64);
        let eq = if m.kind == DestKind::Mlp || m.kind == DestKind::ResidEnd {
            "btd,sbtd->s"
        } else {
            "bthd,sbtd->hs"
        };
        let s = Tensor::einsum(eq, &[g, &d], None::<i64>)
            .to_kind(Kind::Double)
            .to_device(tch::Device::Cpu);
        out.extend(Vec::<f64>::try_from(s.reshape([-1])).expect("f64 scores"));
    }
    out
}
