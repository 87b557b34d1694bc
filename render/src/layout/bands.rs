//! Where the bands meet the boxes: each node's outgoing and incoming bands stacked side by
//! side along it, in an order that keeps crossings down.

use std::collections::BTreeMap;

use super::{Band, NodeBox, NODE_THICKNESS};
use crate::names::NodeKey;

/// Stacks each node's outgoing bands (ordered by where they go) and incoming bands (ordered by
/// where they come from) centred along the node, so bands cross as little as a simple rule
/// allows.
pub(super) fn place_bands(
    edges: &[usize],
    keys: &BTreeMap<usize, (NodeKey, NodeKey)>,
    index: &BTreeMap<NodeKey, usize>,
    nodes: &[NodeBox],
    mag: &BTreeMap<usize, f64>,
    scale: f64,
) -> Vec<Band> {
    let centre = |n: usize| nodes[n].c + nodes[n].len / 2.0;
    let ends: Vec<(usize, usize, usize, f64)> = edges
        .iter()
        .map(|&i| {
            let (s, d) = &keys[&i];
            (i, index[s], index[d], mag[&i] * scale)
        })
        .collect();
    let mut out: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut inc: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (j, &(_, s, d, _)) in ends.iter().enumerate() {
        out.entry(s).or_default().push(j);
        inc.entry(d).or_default().push(j);
    }
    let mut src_c = vec![0.0; ends.len()];
    let mut dst_c = vec![0.0; ends.len()];
    let key_of = |n: usize| (centre(n), nodes[n].u);
    for (&n, js) in out.iter_mut() {
        js.sort_by(|&a, &b| key_of(ends[a].2).partial_cmp(&key_of(ends[b].2)).unwrap());
        stack(nodes, n, js, &ends, &mut src_c);
    }
    for (&n, js) in inc.iter_mut() {
        js.sort_by(|&a, &b| key_of(ends[a].1).partial_cmp(&key_of(ends[b].1)).unwrap());
        stack(nodes, n, js, &ends, &mut dst_c);
    }
    ends.iter()
        .enumerate()
        .map(|(j, &(edge, s, d, width))| Band {
            edge,
            width,
            src_u: nodes[s].u + NODE_THICKNESS,
            src_c: src_c[j],
            dst_u: nodes[d].u,
            dst_c: dst_c[j],
        })
        .collect()
}

/// Lays the bands `js` side by side, centred on node `n`.
fn stack(
    nodes: &[NodeBox],
    n: usize,
    js: &[usize],
    ends: &[(usize, usize, usize, f64)],
    at: &mut [f64],
) {
    let total: f64 = js.iter().map(|&j| ends[j].3).sum();
    let mut c = nodes[n].c + (nodes[n].len - total) / 2.0;
    for &j in js {
        at[j] = c;
        c += ends[j].3;
    }
}
