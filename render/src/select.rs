//! Which edges become links: AutoCircuit's `|score| >= threshold` (or attrib's top-k), then
//! the cap that keeps GPT-2-scale pictures readable and small.

use attrib_proto::ScoresFile;

use crate::text::short_num;
use crate::{Cap, Selection};

/// The edges to draw, as indices into `ScoresFile::edges`.
#[derive(Debug, Clone)]
pub struct Selected {
    pub selection: Selection,
    /// Edges that passed the selection.
    pub n_selected: usize,
    /// The drawn edges, largest |score| first (ties in file order).
    pub drawn: Vec<usize>,
    /// Smallest drawn |score|: what the caption calls the effective threshold.
    pub min_drawn: Option<f64>,
}

impl Selected {
    pub fn capped(&self) -> Option<Cap> {
        (self.drawn.len() < self.n_selected).then_some(Cap {
            selected: self.n_selected,
            drawn: self.drawn.len(),
        })
    }

    /// Why nothing is drawn, in words (AutoCircuit divides by zero here instead).
    pub fn empty_message(&self, scores: &ScoresFile) -> String {
        let max = scores
            .edges
            .iter()
            .map(|e| e.score.abs())
            .filter(|s| !s.is_nan())
            .fold(None, |m: Option<f64>, s| Some(m.map_or(s, |m| m.max(s))));
        if self.n_selected > 0 {
            return format!(
                "{} edges pass {}, but max_edges = 0 draws none",
                self.n_selected, self.selection
            );
        }
        match (self.selection, max) {
            (_, None) => "no edge to draw: the scores file has no (finite) scores".into(),
            (Selection::Threshold(t), Some(max)) => format!(
                "no edge with |score| >= {} (max |score| {})",
                short_num(t),
                short_num(max)
            ),
            (Selection::Top(k), Some(_)) => format!("no edge to draw (top {k})"),
        }
    }
}

/// Applies the selection, then keeps the `max_edges` largest |score|. NaN scores are never
/// drawn (they have no size); infinite ones (ACDC's never-removed edges) are.
pub fn select(scores: &ScoresFile, selection: Selection, max_edges: usize) -> Selected {
    let abs = |i: usize| scores.edges[i].score.abs();
    let mut order: Vec<usize> = (0..scores.edges.len())
        .filter(|&i| !abs(i).is_nan())
        .collect();
    // Stable: ties keep file order, as `ScoresFile::top` does.
    order.sort_by(|&a, &b| abs(b).total_cmp(&abs(a)));
    let n_selected = match selection {
        Selection::Threshold(t) => order.partition_point(|&i| abs(i) >= t),
        Selection::Top(k) => k.min(order.len()),
    };
    order.truncate(n_selected.min(max_edges));
    Selected {
        selection,
        n_selected,
        min_drawn: order.last().map(|&i| abs(i)),
        drawn: order,
    }
}
