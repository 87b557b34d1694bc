//! Graph topology of AutoCircuit's factorized patchable GPT-2 (spec section 3): sources,
//! destination modules (one mask tensor each), edges, their names and their flat order.
//!
//! Flat edge order (the order of every score vector attrib produces or sends): destination
//! modules block by block (`Q`, `K`, `V` or the one head input, then `MLP`), then `Resid End`;
//! inside a module the C order of its mask tensor `[(seq), (head), src]`. This is exactly the
//! order of AutoCircuit's PruneScores tensors and of the golden files.

use serde::{Deserialize, Serialize};

use crate::settings::AttributionSettings;

/// What a destination module feeds: a head's query/key/value input, all three at once
/// (`separate_qkv = false`), an MLP input, or the final residual stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DestKind {
    Q,
    K,
    V,
    /// One input per head shared by Q, K and V (`--no-separate-qkv`).
    HeadInput,
    Mlp,
    ResidEnd,
}

impl DestKind {
    pub fn is_attention(self) -> bool {
        matches!(
            self,
            DestKind::Q | DestKind::K | DestKind::V | DestKind::HeadInput
        )
    }
}

/// One mask tensor: all edges into one kind of input of one block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestModule {
    pub kind: DestKind,
    /// Transformer block (for `ResidEnd`: the last block).
    pub block: usize,
    /// Number of sources feeding it; they are always sources `0..n_in`.
    pub n_in: usize,
    /// Offset of this module's first entry in the flat score vector.
    pub offset: usize,
    /// Mask shape `[(seq), (head), n_in]`.
    pub shape: Vec<usize>,
}

impl DestModule {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// TransformerLens hook name, which is AutoCircuit's PruneScores key.
    pub fn hook_name(&self) -> String {
        let b = self.block;
        match self.kind {
            DestKind::Q => format!("blocks.{b}.hook_q_input"),
            DestKind::K => format!("blocks.{b}.hook_k_input"),
            DestKind::V => format!("blocks.{b}.hook_v_input"),
            DestKind::HeadInput => format!("blocks.{b}.hook_attn_in"),
            DestKind::Mlp => format!("blocks.{b}.hook_mlp_in"),
            DestKind::ResidEnd => format!("blocks.{b}.hook_resid_post"),
        }
    }
}

/// One edge, located in the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    pub src: usize,
    pub module: usize,
    pub head: Option<usize>,
    pub seq: Option<usize>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TopologyError {
    #[error("edge index {index} is out of range: the graph has {n_edges} edges")]
    EdgeOutOfRange { index: usize, n_edges: usize },
    #[error("unknown node name {0:?}")]
    UnknownNode(String),
}

/// Everything that decides the graph: model depth and width in heads, Q/K/V split, and the
/// number of token positions when edges are token-specific.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GraphShape {
    pub n_layers: usize,
    pub n_heads: usize,
    pub separate_qkv: bool,
    /// `Some(T)`: one edge per token position (AutoCircuit's `seq_len`).
    pub seq_len: Option<usize>,
}

impl GraphShape {
    /// The graph attributed with `settings` on a model of `n_layers` blocks of `n_heads` heads,
    /// on prompts `width` tokens wide (the width matters only for token-specific edges). The
    /// one constructor every role uses, so a worker, the coordinator and a scores file agree.
    pub fn new(
        n_layers: usize,
        n_heads: usize,
        settings: &AttributionSettings,
        width: usize,
    ) -> GraphShape {
        GraphShape {
            n_layers,
            n_heads,
            separate_qkv: settings.separate_qkv,
            seq_len: settings.token_positions.then_some(width),
        }
    }

    /// Sources: `Resid Start`, then per block its heads and its MLP.
    pub fn n_src(&self) -> usize {
        1 + self.n_layers * (self.n_heads + 1)
    }

    /// `src_idx` of head `h` of block `b` (spec 3.1).
    pub fn head_src(&self, block: usize, head: usize) -> usize {
        1 + block * (self.n_heads + 1) + head
    }

    /// `src_idx` of `MLP b`.
    pub fn mlp_src(&self, block: usize) -> usize {
        (block + 1) * (self.n_heads + 1)
    }

    /// Number of sources read by the attention inputs of block `b` (all earlier blocks).
    pub fn attn_n_in(&self, block: usize) -> usize {
        1 + block * (self.n_heads + 1)
    }

    /// Number of sources read by `MLP b` (earlier blocks plus this block's heads).
    pub fn mlp_n_in(&self, block: usize) -> usize {
        (block + 1) * (self.n_heads + 1)
    }

    pub fn src_name(&self, src: usize) -> String {
        if src == 0 {
            return "Resid Start".to_string();
        }
        let block = (src - 1) / (self.n_heads + 1);
        let h = (src - 1) % (self.n_heads + 1);
        if h == self.n_heads {
            format!("MLP {block}")
        } else {
            format!("A{block}.{h}")
        }
    }

    /// AutoCircuit's "layer" of a source: 0 embeddings, 2b+1 heads of block b, 2b+2 MLP b.
    pub fn src_layer(&self, src: usize) -> usize {
        if src == 0 {
            return 0;
        }
        let block = (src - 1) / (self.n_heads + 1);
        let h = (src - 1) % (self.n_heads + 1);
        2 * block + if h == self.n_heads { 2 } else { 1 }
    }

    /// Index of a source by its name (`Resid Start`, `A1.2`, `MLP 0`).
    pub fn src_by_name(&self, name: &str) -> Result<usize, TopologyError> {
        (0..self.n_src())
            .find(|&s| self.src_name(s) == name)
            .ok_or_else(|| TopologyError::UnknownNode(name.to_string()))
    }

    /// Destination modules in flat order, with their offsets.
    pub fn modules(&self) -> Vec<DestModule> {
        let mut out = Vec::new();
        let mut offset = 0;
        let mut push = |kind: DestKind, block: usize, n_in: usize, out: &mut Vec<DestModule>| {
            let mut shape = Vec::new();
            shape.extend(self.seq_len);
            if kind.is_attention() {
                shape.push(self.n_heads);
            }
            shape.push(n_in);
            let m = DestModule {
                kind,
                block,
                n_in,
                offset,
                shape,
            };
            offset += m.len();
            out.push(m);
        };
        let attn_kinds: &[DestKind] = if self.separate_qkv {
            &[DestKind::Q, DestKind::K, DestKind::V]
        } else {
            &[DestKind::HeadInput]
        };
        for b in 0..self.n_layers {
            for &k in attn_kinds {
                push(k, b, self.attn_n_in(b), &mut out);
            }
            push(DestKind::Mlp, b, self.mlp_n_in(b), &mut out);
        }
        push(
            DestKind::ResidEnd,
            self.n_layers.saturating_sub(1),
            self.n_src(),
            &mut out,
        );
        out
    }

    pub fn n_edges(&self) -> usize {
        self.modules().iter().map(DestModule::len).sum()
    }

    /// Every edge in flat order.
    pub fn edges(&self) -> Vec<Edge> {
        let mut out = Vec::with_capacity(self.n_edges());
        for (mi, m) in self.modules().iter().enumerate() {
            let seqs: Vec<Option<usize>> = match self.seq_len {
                Some(t) => (0..t).map(Some).collect(),
                None => vec![None],
            };
            let heads: Vec<Option<usize>> = if m.kind.is_attention() {
                (0..self.n_heads).map(Some).collect()
            } else {
                vec![None]
            };
            for &seq in &seqs {
                for &head in &heads {
                    for src in 0..m.n_in {
                        out.push(Edge {
                            src,
                            module: mi,
                            head,
                            seq,
                        });
                    }
                }
            }
        }
        out
    }

    /// AutoCircuit's destination node name of an edge.
    pub fn dest_name(&self, module: &DestModule, head: Option<usize>) -> String {
        let b = module.block;
        let h = head.unwrap_or(0);
        match module.kind {
            DestKind::Q => format!("A{b}.{h}.Q"),
            DestKind::K => format!("A{b}.{h}.K"),
            DestKind::V => format!("A{b}.{h}.V"),
            DestKind::HeadInput => format!("A{b}.{h}"),
            DestKind::Mlp => format!("MLP {b}"),
            DestKind::ResidEnd => "Resid End".to_string(),
        }
    }

    /// AutoCircuit's "layer" of a destination: 2b+1 head inputs, 2b+2 MLP, 2L+1 Resid End.
    pub fn dest_layer(&self, module: &DestModule) -> usize {
        match module.kind {
            DestKind::Mlp => 2 * module.block + 2,
            DestKind::ResidEnd => 2 * self.n_layers + 1,
            _ => 2 * module.block + 1,
        }
    }
}

/// Names of every edge, resolved once (`src`, `dest`, `seq`), for output and lookups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedEdge {
    pub src: String,
    pub dest: String,
    pub seq: Option<usize>,
}

impl GraphShape {
    pub fn named_edges(&self) -> Vec<NamedEdge> {
        let modules = self.modules();
        self.edges()
            .into_iter()
            .map(|e| NamedEdge {
                src: self.src_name(e.src),
                dest: self.dest_name(&modules[e.module], e.head),
                seq: e.seq,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpt2(separate_qkv: bool, seq_len: Option<usize>) -> GraphShape {
        GraphShape {
            n_layers: 12,
            n_heads: 12,
            separate_qkv,
            seq_len,
        }
    }

    #[test]
    fn gpt2_small_counts_match_the_spec() {
        assert_eq!(gpt2(true, None).n_src(), 157);
        assert_eq!(gpt2(true, None).modules().len(), 49);
        assert_eq!(gpt2(false, None).modules().len(), 25);
        assert_eq!(gpt2(true, None).n_edges(), 32_491);
        assert_eq!(gpt2(false, None).n_edges(), 11_611);
        assert_eq!(gpt2(true, Some(15)).n_edges(), 487_365);
        assert_eq!(gpt2(false, Some(15)).n_edges(), 174_165);
        assert_eq!(gpt2(true, Some(13)).n_edges(), 422_383);
    }

    #[test]
    fn worked_index_examples_of_spec_3_5() {
        let g = gpt2(true, None);
        assert_eq!(g.head_src(5, 2), 68);
        assert_eq!(g.mlp_src(2), 39);
        assert_eq!(g.mlp_src(1), 26);
        assert_eq!(g.head_src(2, 4), 31);
        assert_eq!(g.src_name(68), "A5.2");
        assert_eq!(g.src_name(39), "MLP 2");
        assert_eq!(g.src_by_name("A2.4"), Ok(31));
        let m = g.modules();
        let q7 = m
            .iter()
            .find(|m| m.kind == DestKind::Q && m.block == 7)
            .unwrap();
        assert_eq!(q7.shape, vec![12, 92]);
        assert_eq!(q7.hook_name(), "blocks.7.hook_q_input");
        let end = m.last().unwrap();
        assert_eq!(end.shape, vec![157]);
        assert_eq!(end.hook_name(), "blocks.11.hook_resid_post");
        let tw = gpt2(true, Some(15));
        assert_eq!(tw.modules().last().unwrap().shape, vec![15, 157]);
    }

    #[test]
    fn flat_order_is_module_then_c_order() {
        let g = GraphShape {
            n_layers: 2,
            n_heads: 4,
            separate_qkv: true,
            seq_len: None,
        };
        let e = g.named_edges();
        assert_eq!(e.len(), 110);
        assert_eq!(
            (e[0].src.as_str(), e[0].dest.as_str()),
            ("Resid Start", "A0.0.Q")
        );
        assert_eq!(e[4].dest, "A0.0.K"); // 4 heads x 1 source of Q, then K
        assert_eq!(e[12].dest, "MLP 0");
        assert_eq!(e.last().unwrap().src, "MLP 1");
        assert_eq!(e.last().unwrap().dest, "Resid End");
        let offsets: Vec<usize> = g.modules().iter().map(|m| m.offset).collect();
        assert_eq!(offsets, vec![0, 4, 8, 12, 17, 41, 65, 89, 99]);
    }

    #[test]
    fn layers_follow_autocircuit() {
        let g = gpt2(true, None);
        assert_eq!(g.src_layer(0), 0);
        assert_eq!(g.src_layer(g.head_src(3, 1)), 7);
        assert_eq!(g.src_layer(g.mlp_src(3)), 8);
        let m = g.modules();
        assert_eq!(g.dest_layer(m.last().unwrap()), 25);
    }
}
