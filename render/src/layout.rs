//! Where everything goes: panels (one per token position), columns (one per layer), node
//! boxes and the two ends of every band. Positions are computed on two axes, `u` along the flow
//! (layers) and `c` across it, so one layout serves both orientations; [`Layout::xy`] maps them
//! to the canvas.
//!
//! Plotly relaxes node positions iteratively and in Python set order; that cannot (and need
//! not) be matched. What is kept (spec 7.4): a column per layer, in layer order; node length
//! = max(in-flow, out-flow) at one px-per-score scale for the whole picture; band thickness
//! = |score| at that scale; nodes 20 px thick, at least 20 px apart; panels stacked top to
//! bottom with heights proportional to their weight (spec 7.2). Added: room so that no two
//! labels overlap, whatever the number of nodes.

use std::collections::BTreeMap;

use attrib_proto::ScoresFile;

use crate::names::{node_key, Layers, NodeKey};
use crate::select::Selected;
use crate::text::{text_width, visible_label};
use crate::{Orientation, RenderOptions, Selection};

mod bands;
use bands::place_bands;

/// Node thickness along the flow (plotly's default).
pub const NODE_THICKNESS: f64 = 20.0;
/// Least gap between two nodes of a layer (plotly's default padding).
pub const NODE_GAP: f64 = 20.0;
/// Node label font size (the plotly template AutoCircuit uses: 19).
pub const FONT_SIZE: f64 = 19.0;
/// Panel titles, caption.
pub const TITLE_FONT_SIZE: f64 = 19.0;
pub const SMALL_FONT_SIZE: f64 = 13.0;
/// Shortest node, so that a node with tiny flows stays visible.
const MIN_NODE_LENGTH: f64 = 4.0;
/// Length of the longest stack of nodes in a layer, before gaps: sets px per score.
const FLOW_EXTENT: f64 = 300.0;
/// Free space along the flow between a node (with its label) and the next layer.
const LINK_ROOM_H: f64 = 50.0;
const LINK_ROOM_V: f64 = 70.0;
/// Padding inside a panel, gap between panels, outer margin.
const PANEL_PAD: f64 = 20.0;
const PANEL_GAP: f64 = 24.0;
const MARGIN: f64 = 20.0;
/// A panel is never shorter than this, however small its weight.
const MIN_PANEL: f64 = 90.0;
/// Room for the two caption lines at the bottom.
pub const CAPTION_HEIGHT: f64 = 50.0;

/// The 9-colour palette of spec 7.1. AutoCircuit picks a node's colour by the index of the
/// last link touching it (set order, so random); attrib colours by layer (`layer mod 9`), so
/// a block's heads share a colour and neighbouring layers differ.
pub const PALETTE: [&str; 9] = [
    "rgb(55,126,184)",
    "rgb(255,127,0)",
    "rgb(77,175,74)",
    "rgb(247,129,191)",
    "rgb(228,26,28)",
    "rgb(152,78,163)",
    "rgb(166,86,40)",
    "rgb(153,153,153)",
    "rgb(222,222,0)",
];

/// One drawn box.
#[derive(Debug, Clone)]
pub struct NodeBox {
    pub name: String,
    pub layer: usize,
    /// Start of the box along the flow and across it; the box is `NODE_THICKNESS` x `len`.
    pub u: f64,
    pub c: f64,
    pub len: f64,
    pub color: &'static str,
}

/// One band: it leaves the source box at `(src_u, src_c..src_c+width)` and enters the
/// destination box at `(dst_u, dst_c..dst_c+width)`.
#[derive(Debug, Clone)]
pub struct Band {
    /// Index into `ScoresFile::edges`.
    pub edge: usize,
    pub width: f64,
    pub src_u: f64,
    pub src_c: f64,
    pub dst_u: f64,
    pub dst_c: f64,
}

/// A panel's title: a bold line (the token label, or `pos p`) and a small second line.
#[derive(Debug, Clone)]
pub struct Title {
    pub main: String,
    pub sub: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Panel {
    pub seq: Option<usize>,
    pub title: Option<Title>,
    /// The raw token label, for the `data-label` mark.
    pub label: Option<String>,
    /// Vertical extent on the canvas (panels always stack top to bottom).
    pub top: f64,
    pub height: f64,
    pub nodes: Vec<NodeBox>,
    pub bands: Vec<Band>,
}

#[derive(Debug, Clone)]
pub struct Layout {
    pub orientation: Orientation,
    pub width: f64,
    pub height: f64,
    /// Left edge of the drawing area (right of the panel titles).
    pub left: f64,
    pub panels: Vec<Panel>,
    /// px per unit of |score|.
    pub scale: f64,
}

impl Layout {
    /// Canvas coordinates of a point given along (`u`) and across (`c`) the flow.
    pub fn xy(&self, u: f64, c: f64) -> (f64, f64) {
        match self.orientation {
            Orientation::Horizontal => (u, c),
            Orientation::Vertical => (c, u),
        }
    }
}

/// Score magnitudes used for geometry: |score|, with infinite ones drawn as large as the
/// largest finite one (they would otherwise flatten every other band to nothing).
fn magnitudes(scores: &ScoresFile, sel: &Selected) -> BTreeMap<usize, f64> {
    let finite_max = sel
        .drawn
        .iter()
        .map(|&i| scores.edges[i].score.abs())
        .filter(|s| s.is_finite())
        .fold(0.0_f64, f64::max);
    let inf_as = if finite_max > 0.0 { finite_max } else { 1.0 };
    sel.drawn
        .iter()
        .map(|&i| {
            let a = scores.edges[i].score.abs();
            (i, if a.is_finite() { a } else { inf_as })
        })
        .collect()
}

/// Per-panel node flows (in score units): `(in, out)` per box.
type Flows = BTreeMap<NodeKey, (f64, f64)>;

/// One column of a panel: `(key, len)` per box, in (rank, name) order.
type Column = Vec<(NodeKey, f64)>;

/// The drawn edges, keyed by their boxes and grouped by panel: what every layout step reads.
struct Drawn {
    /// Score magnitude used for geometry, per drawn edge.
    mag: BTreeMap<usize, f64>,
    /// Source and destination box per drawn edge.
    keys: BTreeMap<usize, (NodeKey, NodeKey)>,
    /// Panels in increasing position; the drawn edges of each, largest first.
    by_seq: BTreeMap<Option<usize>, Vec<usize>>,
}

impl Drawn {
    /// Keys and groups the drawn edges of `sel`.
    fn new(scores: &ScoresFile, sel: &Selected) -> Self {
        let mag = magnitudes(scores, sel);
        let keys = sel
            .drawn
            .iter()
            .map(|&i| {
                let e = &scores.edges[i];
                (i, (node_key(&e.src), node_key(&e.dest)))
            })
            .collect();
        let mut by_seq: BTreeMap<Option<usize>, Vec<usize>> = BTreeMap::new();
        for &i in &sel.drawn {
            by_seq.entry(scores.edges[i].seq).or_default().push(i);
        }
        Drawn { mag, keys, by_seq }
    }

    /// Node flows per panel, in panel order.
    fn flows(&self) -> Vec<Flows> {
        self.by_seq
            .values()
            .map(|edges| {
                let mut f = Flows::new();
                for i in edges {
                    let (s, d) = &self.keys[i];
                    f.entry(s.clone()).or_default().1 += self.mag[i];
                    f.entry(d.clone()).or_default().0 += self.mag[i];
                }
                f
            })
            .collect()
    }

    /// Panel weights (spec 7.2): Σ max(|s| − thr, 0); with top-k, Σ |s|.
    fn weights(&self, selection: Selection) -> Vec<f64> {
        self.by_seq
            .values()
            .map(|edges| {
                edges
                    .iter()
                    .map(|i| match selection {
                        Selection::Threshold(t) => (self.mag[i] - t).max(0.0),
                        Selection::Top(_) => self.mag[i],
                    })
                    .sum()
            })
            .collect()
    }
}

/// The columns (one per layer) and the room a node needs across the flow.
struct Grid {
    orient: Orientation,
    layers: Layers,
    /// The layer of each column, in order: every layer, or only those with a drawn node.
    col_layers: Vec<usize>,
}

impl Grid {
    /// Columns for every layer (`layer_spacing`) or only for the layers `drawn` uses.
    fn new(scores: &ScoresFile, drawn: &Drawn, opts: &RenderOptions) -> Self {
        let layers = Layers::new(
            scores.model.n_layers,
            drawn.keys.values().flat_map(|(a, b)| [a.layer, b.layer]),
        );
        let used: std::collections::BTreeSet<usize> = drawn
            .keys
            .values()
            .flat_map(|(a, b)| [layers.of(a), layers.of(b)])
            .collect();
        let col_layers = if opts.layer_spacing {
            (0..layers.n).collect()
        } else {
            used.iter().copied().collect()
        };
        Grid {
            orient: opts.orientation,
            layers,
            col_layers,
        }
    }

    /// The column box `k` sits in.
    fn col_of(&self, k: &NodeKey) -> usize {
        let layer = self.layers.of(k);
        self.col_layers
            .iter()
            .position(|&l| l == layer)
            .unwrap_or(0)
    }

    /// Across the flow each node needs its own length or its label's extent, whichever is more.
    fn cross_need(&self, k: &NodeKey, len: f64) -> f64 {
        match self.orient {
            Orientation::Horizontal => len.max(FONT_SIZE * 1.2),
            Orientation::Vertical => len.max(label_width(&k.name) + 8.0),
        }
    }

    /// Room a column's nodes take across the flow, gaps included.
    fn extent(&self, col: &[(NodeKey, f64)]) -> f64 {
        let n = col.len() as f64;
        col.iter().map(|(k, l)| self.cross_need(k, *l)).sum::<f64>() + NODE_GAP * (n - 1.0).max(0.0)
    }

    /// The one px-per-score scale of the picture: the longest column stack fills `FLOW_EXTENT`.
    fn scale(&self, flows: &[Flows]) -> f64 {
        let max_stack = flows
            .iter()
            .flat_map(|f| {
                let mut per_col = vec![0.0; self.col_layers.len()];
                for (k, (i, o)) in f {
                    per_col[self.col_of(k)] += i.max(*o);
                }
                per_col
            })
            .fold(0.0_f64, f64::max);
        if max_stack > 0.0 {
            FLOW_EXTENT / max_stack
        } else {
            1.0
        }
    }

    /// Each panel's column stacks at `scale`, boxes in (rank, name) order.
    fn stacks(&self, flows: &[Flows], scale: f64) -> Vec<Vec<Column>> {
        flows
            .iter()
            .map(|f| {
                let mut cols = vec![Vec::new(); self.col_layers.len()];
                for (k, (i, o)) in f {
                    let len = (i.max(*o) * scale).max(MIN_NODE_LENGTH);
                    cols[self.col_of(k)].push((k.clone(), len));
                }
                for c in &mut cols {
                    c.sort_by(|a: &(NodeKey, f64), b| {
                        (a.0.rank, &a.0.name).cmp(&(b.0.rank, &b.0.name))
                    });
                }
                cols
            })
            .collect()
    }

    /// Lays one panel's columns out: column `k` at `u0 + k * pitch` along the flow, each
    /// column centred in `cross_lo..cross_lo + cross_len` across it. Also returns each box's
    /// index by key.
    fn place_nodes(
        &self,
        cols: &[Column],
        u0: f64,
        pitch: f64,
        cross_lo: f64,
        cross_len: f64,
    ) -> (Vec<NodeBox>, BTreeMap<NodeKey, usize>) {
        let mut nodes: Vec<NodeBox> = Vec::new();
        let mut index: BTreeMap<NodeKey, usize> = BTreeMap::new();
        for (k, col) in cols.iter().enumerate() {
            let ext = self.extent(col);
            let mut c = cross_lo + (cross_len - ext).max(0.0) / 2.0;
            for (key, len) in col {
                let need = self.cross_need(key, *len);
                let layer = self.layers.of(key);
                index.insert(key.clone(), nodes.len());
                nodes.push(NodeBox {
                    name: key.name.clone(),
                    layer,
                    u: u0 + k as f64 * pitch,
                    c: c + (need - len) / 2.0,
                    len: *len,
                    color: PALETTE[layer % PALETTE.len()],
                });
                c += need + NODE_GAP;
            }
        }
        (nodes, index)
    }
}

/// Width of a node label.
fn label_width(name: &str) -> f64 {
    text_width(name, FONT_SIZE, false)
}

/// The widest node label of any panel.
fn max_label_width(flows: &[Flows]) -> f64 {
    flows
        .iter()
        .flat_map(|f| f.keys().map(|k| label_width(&k.name)))
        .fold(0.0_f64, f64::max)
}

/// Left edge of the drawing area: right of the widest panel title, if any.
fn drawing_left(titles: &[(Option<Title>, Option<String>)]) -> f64 {
    let title_w = titles
        .iter()
        .filter_map(|(t, _)| t.as_ref())
        .map(|t| {
            text_width(&t.main, TITLE_FONT_SIZE, true).max(
                t.sub
                    .as_ref()
                    .map_or(0.0, |b| text_width(b, SMALL_FONT_SIZE, false)),
            )
        })
        .fold(0.0_f64, f64::max);
    if title_w > 0.0 {
        MARGIN + title_w + 20.0
    } else {
        MARGIN
    }
}

/// The canvas: its size, each panel's height and the room right of the drawing.
struct Canvas {
    width: f64,
    height: f64,
    heights: Vec<f64>,
    right_room: f64,
}

/// What sizes the canvas, measured on the panels.
struct Needs<'a> {
    /// Left edge of the drawing area.
    left: f64,
    /// Widest node label.
    max_label: f64,
    /// Each panel's widest column extent across the flow.
    cross_extent: &'a [f64],
    /// Each panel's weight (spec 7.2).
    weights: &'a [f64],
    /// The caption's width.
    min_width: f64,
}

impl Grid {
    /// Panel heights and canvas size (AutoCircuit's sizes, spec 7.3, are floors).
    fn canvas(&self, needs: &Needs) -> Canvas {
        let orient = self.orient;
        let n_panels = needs.weights.len();
        let n_cols = self.col_layers.len().max(1);
        let total_w: f64 = needs.weights.iter().sum();
        // Along the flow: the least pitch between layers.
        let min_pitch = match orient {
            Orientation::Horizontal => NODE_THICKNESS + 6.0 + needs.max_label + LINK_ROOM_H,
            Orientation::Vertical => NODE_THICKNESS + LINK_ROOM_V,
        };
        let flow_need = (n_cols - 1) as f64 * min_pitch + NODE_THICKNESS;
        let (floor_total_h, floor_w) = match orient {
            Orientation::Horizontal => (
                (250.0 * n_panels as f64).max(400.0),
                (50.0 * n_cols as f64).max(600.0),
            ),
            Orientation::Vertical => ((50.0 * n_cols as f64).max(600.0) * n_panels as f64, 800.0),
        };
        let heights: Vec<f64> = (0..n_panels)
            .map(|p| {
                let need = match orient {
                    Orientation::Horizontal => needs.cross_extent[p],
                    Orientation::Vertical => flow_need,
                } + 2.0 * PANEL_PAD;
                let share = if total_w > 0.0 {
                    floor_total_h * needs.weights[p] / total_w
                } else {
                    floor_total_h / n_panels as f64
                };
                need.max(share).max(MIN_PANEL)
            })
            .collect();
        let right_room = match orient {
            Orientation::Horizontal => 6.0 + needs.max_label + MARGIN,
            Orientation::Vertical => MARGIN,
        };
        let width_need = needs.left
            + right_room
            + match orient {
                Orientation::Horizontal => flow_need,
                Orientation::Vertical => needs.cross_extent.iter().fold(0.0_f64, |a, &b| a.max(b)),
            };
        let width = width_need.max(floor_w).max(needs.min_width);
        let height = if n_panels == 0 {
            match orient {
                Orientation::Horizontal => 400.0,
                Orientation::Vertical => 600.0,
            }
        } else {
            MARGIN
                + heights.iter().sum::<f64>()
                + PANEL_GAP * (n_panels - 1) as f64
                + CAPTION_HEIGHT
        };
        Canvas {
            width,
            height,
            heights,
            right_room,
        }
    }

    /// For a panel at `top`, `h` high: where the first layer sits along the flow, the span the
    /// layers share, and the range across the flow that the nodes are centred in.
    fn panel_frame(&self, canvas: &Canvas, left: f64, top: f64, h: f64) -> (f64, f64, f64, f64) {
        let (width, right_room) = (canvas.width, canvas.right_room);
        match self.orient {
            Orientation::Horizontal => (
                left,
                width - left - right_room - NODE_THICKNESS,
                top + PANEL_PAD,
                h - 2.0 * PANEL_PAD,
            ),
            Orientation::Vertical => (
                top + PANEL_PAD,
                h - 2.0 * PANEL_PAD - NODE_THICKNESS,
                left,
                width - left - right_room,
            ),
        }
    }
}

/// Lays out the drawn edges of `sel`; the canvas is at least `min_width` wide (the caption's
/// width, measured by the caller).
pub fn layout(scores: &ScoresFile, sel: &Selected, opts: &RenderOptions, min_width: f64) -> Layout {
    let drawn = Drawn::new(scores, sel);
    let grid = Grid::new(scores, &drawn, opts);
    let flows = drawn.flows();
    let scale = grid.scale(&flows);
    let titles: Vec<(Option<Title>, Option<String>)> = drawn
        .by_seq
        .keys()
        .map(|seq| panel_title(scores, *seq, opts.token_labels))
        .collect();
    let left = drawing_left(&titles);
    let stacks = grid.stacks(&flows, scale);
    let cross_extent: Vec<f64> = stacks
        .iter()
        .map(|cols| cols.iter().map(|c| grid.extent(c)).fold(0.0_f64, f64::max))
        .collect();
    let weights = drawn.weights(sel.selection);
    let canvas = grid.canvas(&Needs {
        left,
        max_label: max_label_width(&flows),
        cross_extent: &cross_extent,
        weights: &weights,
        min_width,
    });
    let n_cols = grid.col_layers.len().max(1);

    // Place panels, nodes and bands.
    let mut panels = Vec::with_capacity(drawn.by_seq.len());
    let mut top = MARGIN;
    for (p, (seq, edges)) in drawn.by_seq.iter().enumerate() {
        let h = canvas.heights[p];
        let (u0, span, cross_lo, cross_len) = grid.panel_frame(&canvas, left, top, h);
        let pitch = if n_cols > 1 {
            span / (n_cols - 1) as f64
        } else {
            0.0
        };
        let (nodes, index) = grid.place_nodes(&stacks[p], u0, pitch, cross_lo, cross_len);
        let bands = place_bands(edges, &drawn.keys, &index, &nodes, &drawn.mag, scale);
        let (title, label) = titles[p].clone();
        panels.push(Panel {
            seq: *seq,
            title,
            label,
            top,
            height: h,
            nodes,
            bands,
        });
        top += h + PANEL_GAP;
    }

    Layout {
        orientation: opts.orientation,
        width: canvas.width,
        height: canvas.height,
        left,
        panels,
        scale,
    }
}

/// The title lines and raw label of the panel of position `seq` (none without positions).
fn panel_title(
    scores: &ScoresFile,
    seq: Option<usize>,
    token_labels: bool,
) -> (Option<Title>, Option<String>) {
    let Some(p) = seq else {
        return (None, None);
    };
    let label = scores
        .data
        .seq_labels
        .as_ref()
        .and_then(|l| l.get(p))
        .cloned();
    match (token_labels, &label) {
        (true, Some(l)) => (
            Some(Title {
                main: visible_label(l),
                sub: Some(format!("pos {p}")),
            }),
            label.clone(),
        ),
        _ => (
            Some(Title {
                main: format!("pos {p}"),
                sub: None,
            }),
            label,
        ),
    }
}
