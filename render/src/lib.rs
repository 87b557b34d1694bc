//! Pictures and reports of attribution scores, drawn as AutoCircuit's `draw_seq_graph` draws
//! them (spec 7): one Sankey-style panel per token position, a column (or row) per layer,
//! links as ribbons whose thickness is proportional to |score|, blue for positive scores and
//! red for negative ones. Pure Rust (no tch, no plotly, no browser), so the thin client can
//! draw what the cluster computed.
//!
//! * [`render_svg`] draws a [`ScoresFile`] as a standalone SVG whose elements carry
//!   machine-readable `data-*` marks (tests, and anyone post-processing the picture, read them);
//! * [`svg_to_png`] rasterizes it with resvg and the embedded DejaVu fonts (works on machines
//!   without any system font);
//! * [`report_html`] writes one self-contained HTML page: settings, picture, sortable top-edge
//!   table and the faithfulness curve.
//!
//! Differences from AutoCircuit, on purpose: nodes are placed deterministically (AutoCircuit's
//! order follows Python set iteration), the number of drawn links is capped so GPT-2-scale
//! pictures stay small, an empty selection gives a picture that says so (AutoCircuit divides
//! by zero), and `Resid End` is labelled "Unembed" in both orientations (AutoCircuit's empty
//! label in orientation "h" is a plotly quirk: `""` there only keeps plotly from printing the
//! node's name over the last column).

pub mod agreement;
mod font;
mod layout;
mod names;
mod png;
mod report;
mod select;
mod svg;
mod text;

use std::fmt;
use std::str::FromStr;

use attrib_proto::ScoresFile;

pub use crate::png::{svg_to_png, Error};
pub use crate::report::{page_start, report_html, ReportInput};
pub use crate::svg::XMLNS;
pub use crate::text::escape;

/// Which way the flow runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Orientation {
    /// AutoCircuit's `"h"` (its default): layers are columns, flow left to right.
    #[default]
    Horizontal,
    /// AutoCircuit's `"v"` (its README demo): layers are rows, flow top to bottom.
    Vertical,
}

impl FromStr for Orientation {
    type Err = String;

    /// Accepts AutoCircuit's `h`/`v` and the long names.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "h" | "horizontal" => Ok(Orientation::Horizontal),
            "v" | "vertical" => Ok(Orientation::Vertical),
            _ => Err(format!(
                "unknown orientation {s:?}; expected h, v, horizontal or vertical"
            )),
        }
    }
}

/// Which edges are drawn (before the [`RenderOptions::max_edges`] cap).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Selection {
    /// Every edge with `|score| >= threshold` (AutoCircuit's `score_threshold`).
    Threshold(f64),
    /// The `k` edges of largest |score|, ties broken by file order (AutoCircuit has no such
    /// option; it is the natural way to ask for "a readable picture" of a large model).
    Top(usize),
}

impl fmt::Display for Selection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Selection::Threshold(t) => write!(f, "|score| >= {}", text::short_num(t)),
            Selection::Top(k) => write!(f, "top {k} by |score|"),
        }
    }
}

/// How to draw. [`Default`] is AutoCircuit's `draw_seq_graph` defaults (threshold 1e-2,
/// orientation "h") except `layer_spacing`, which its demos turn on, plus attrib's cap.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderOptions {
    pub selection: Selection,
    pub orientation: Orientation,
    /// Every layer gets its own column (row), even when nothing is drawn in it.
    pub layer_spacing: bool,
    /// Title token-specific panels with `data.seq_labels[p]` (else `pos p`).
    pub token_labels: bool,
    /// At most this many links over all panels; the largest |score| are kept.
    pub max_edges: usize,
}

/// Default cap on drawn links: enough for any circuit a person reads, small enough that a
/// GPT-2 picture stays well under 5 MB and opens at once in a browser.
pub const DEFAULT_MAX_EDGES: usize = 2000;

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            selection: Selection::Threshold(1e-2),
            orientation: Orientation::Horizontal,
            layer_spacing: true,
            token_labels: true,
            max_edges: DEFAULT_MAX_EDGES,
        }
    }
}

/// The cap was hit: `selected` edges passed the selection, only the `drawn` largest are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    pub selected: usize,
    pub drawn: usize,
}

/// A drawn picture and what it shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// A standalone SVG document (with `xmlns`, `width`, `height`, `viewBox`).
    pub svg: String,
    /// Edges that passed the selection.
    pub n_selected: usize,
    /// Edges drawn as links (`n_selected` unless capped).
    pub n_drawn: usize,
    /// The panels, top to bottom: the token position of each, `None` for non-token scores.
    pub panels: Vec<Option<usize>>,
    /// Set when [`RenderOptions::max_edges`] cut the selection.
    pub capped: Option<Cap>,
    /// Something the reader must know: the cap, or why the picture is empty.
    pub note: Option<String>,
    /// Canvas size in px.
    pub width: f64,
    pub height: f64,
}

/// Draws `scores` as AutoCircuit's `draw_seq_graph` would (see the crate docs). Never fails:
/// an empty selection gives a valid picture with a message.
pub fn render_svg(scores: &ScoresFile, opts: &RenderOptions) -> Rendered {
    let selected = select::select(scores, opts.selection, opts.max_edges);
    let message = selected
        .drawn
        .is_empty()
        .then(|| selected.empty_message(scores));
    let caption = svg::caption_lines(scores, &selected, opts);
    let min_width = svg::caption_width(&caption, message.as_deref());
    let layout = layout::layout(scores, &selected, opts, min_width);
    let svg = svg::write(scores, &layout, &caption, message.as_deref());
    let capped = selected.capped();
    let note = if let Some(m) = message {
        Some(m)
    } else {
        capped.map(|c| {
            format!(
                "{} edges pass {}; only the {} largest |score| are drawn (max_edges)",
                c.selected, opts.selection, c.drawn
            )
        })
    };
    Rendered {
        svg,
        n_selected: selected.n_selected,
        n_drawn: selected.drawn.len(),
        panels: layout.panels.iter().map(|p| p.seq).collect(),
        capped,
        note,
        width: layout.width,
        height: layout.height,
    }
}
