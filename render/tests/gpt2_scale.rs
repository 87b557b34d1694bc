//! GPT-2 small shapes (12 layers x 12 heads: 32,491 edges; token-specific over 15 positions:
//! 487,365 edges) at threshold 0, i.e. everything selected: the cap must hold the picture to a
//! readable, small SVG whose labels do not collide.

mod common;

use std::time::Instant;

use attrib_render::{render_svg, Cap, Orientation, RenderOptions, Selection, DEFAULT_MAX_EDGES};
use common::*;

fn check(seq_len: Option<usize>, n_edges: usize, orientation: Orientation) {
    let scores = gpt2_scores(seq_len);
    assert_eq!(scores.edges.len(), n_edges);
    let t = Instant::now();
    let r = render_svg(
        &scores,
        &RenderOptions {
            selection: Selection::Threshold(0.0),
            orientation,
            ..RenderOptions::default()
        },
    );
    let took = t.elapsed();
    eprintln!(
        "GPT-2 small {:?} {orientation:?}: {n_edges} edges, {} panels, SVG {:.2} MB ({:.0} x {:.0} px) in {:.2?}",
        seq_len,
        r.panels.len(),
        r.svg.len() as f64 / 1e6,
        r.width,
        r.height,
        took
    );
    assert_eq!(
        r.capped,
        Some(Cap {
            selected: n_edges,
            drawn: DEFAULT_MAX_EDGES
        })
    );
    assert_eq!(r.n_selected, n_edges);
    assert_eq!(r.n_drawn, DEFAULT_MAX_EDGES);
    assert!(r.note.as_deref().unwrap().contains("only the 2000 largest"));
    assert!(r.svg.len() < 5_000_000, "{} bytes", r.svg.len());

    let svg = read_svg(&r.svg);
    let drawn: Vec<&DrawnEdge> = svg.panels.iter().flat_map(|p| &p.edges).collect();
    assert_eq!(drawn.len(), DEFAULT_MAX_EDGES);
    assert!(svg
        .captions
        .iter()
        .any(|c| c.contains("capped at max_edges = 2000")));
    // The drawn ones are the largest.
    let smallest_drawn = drawn.iter().map(|e| e.score.abs()).fold(f64::MAX, f64::min);
    let bigger = scores
        .edges
        .iter()
        .filter(|e| e.score.abs() > smallest_drawn)
        .count();
    assert!(bigger < DEFAULT_MAX_EDGES);
    // 26 layers with layer spacing.
    assert!(svg
        .panels
        .iter()
        .flat_map(|p| &p.nodes)
        .any(|n| n.layer == 25));
    // Boxes of one layer never touch: >= 20 px apart across the flow, and (in "v", where
    // labels sit on the boxes) far enough apart for their labels.
    for p in &svg.panels {
        if orientation == Orientation::Horizontal {
            // Labels sit right of their box and end before the next layer's boxes begin.
            let mut xs: Vec<f64> = p.nodes.iter().map(|n| n.rect[0]).collect();
            xs.sort_by(f64::total_cmp);
            xs.dedup();
            for n in &p.nodes {
                let end = n.rect[0] + 26.0 + 0.62 * 19.0 * n.name.len() as f64;
                if let Some(next) = xs.iter().find(|&&x| x > n.rect[0]) {
                    assert!(end < *next, "label of {} runs into the next layer", n.name);
                }
            }
        }
        for layer in 0..26 {
            let mut boxes: Vec<&DrawnNode> = p.nodes.iter().filter(|n| n.layer == layer).collect();
            let (pos, len) = match orientation {
                Orientation::Horizontal => (1, 3),
                Orientation::Vertical => (0, 2),
            };
            boxes.sort_by(|a, b| a.rect[pos].total_cmp(&b.rect[pos]));
            for w in boxes.windows(2) {
                let gap = w[1].rect[pos] - (w[0].rect[pos] + w[0].rect[len]);
                assert!(
                    gap >= 19.8,
                    "layer {layer}: {} and {} {gap} px apart",
                    w[0].name,
                    w[1].name
                );
                if orientation == Orientation::Vertical {
                    let centres =
                        (w[1].rect[0] + w[1].rect[2] / 2.0) - (w[0].rect[0] + w[0].rect[2] / 2.0);
                    let labels = 0.62 * 19.0 * (w[0].name.len() + w[1].name.len()) as f64 / 2.0;
                    assert!(
                        centres >= labels,
                        "labels of {} and {} overlap",
                        w[0].name,
                        w[1].name
                    );
                }
            }
        }
    }
}

#[test]
fn gpt2_small_is_capped_and_small() {
    check(None, 32_491, Orientation::Horizontal);
    check(None, 32_491, Orientation::Vertical);
}

#[test]
fn gpt2_small_token_specific_is_capped_and_small() {
    check(Some(15), 487_365, Orientation::Horizontal);
}
