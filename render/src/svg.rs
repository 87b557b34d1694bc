//! Writes a [`Layout`] as an SVG document. Every link, node and panel carries `data-*` marks
//! (AutoCircuit's names, the exact score, the band width) so tests and scripts can read the
//! picture back without guessing from geometry. Colours use `fill` + `fill-opacity` (the
//! spec's `rgba(...)` string is kept in `data-color`): every SVG renderer understands that.

use std::fmt::Write;

use attrib_proto::ScoresFile;

use crate::layout::{
    Band, Layout, NodeBox, Panel, CAPTION_HEIGHT, FONT_SIZE, NODE_THICKNESS, SMALL_FONT_SIZE,
    TITLE_FONT_SIZE,
};
use crate::select::Selected;
use crate::text::{escape, px, short_num, text_width};
use crate::{Orientation, RenderOptions};

/// The font stack: the embedded DejaVu Sans first, so the PNG and the browser agree.
pub const FONT_FAMILY: &str = "DejaVu Sans, Arial, sans-serif";
/// The exact namespace attribute written; the HTML report removes it for inline use.
pub const XMLNS: &str = r#" xmlns="http://www.w3.org/2000/svg""#;
/// Arrow tip length along the flow (plotly: 25 px at its default spacing; ours is tighter).
const ARROW: f64 = 15.0;

/// AutoCircuit's link colour for a score (spec 7.1), as `(rgb, opacity, rgba string)`.
pub fn link_colour(score: f64) -> (&'static str, &'static str, &'static str) {
    if score > 0.0 {
        ("rgb(0,0,255)", "0.3", "rgba(0,0,255,0.3)")
    } else if score < 0.0 {
        ("rgb(255,0,0)", "0.3", "rgba(255,0,0,0.3)")
    } else {
        ("rgb(0,0,0)", "0.1", "rgba(0,0,0,0.1)")
    }
}

/// The two caption lines: how to read the colours, and how much of the selection is shown.
pub fn caption_lines(scores: &ScoresFile, sel: &Selected, opts: &RenderOptions) -> Vec<String> {
    let mut second = format!(
        "{} of {} edges drawn ({})",
        sel.drawn.len(),
        scores.edges.len(),
        sel.selection
    );
    if let Some(cap) = sel.capped() {
        let _ = write!(
            second,
            "; capped at max_edges = {}: {} selected, the {} largest |score| drawn (|score| >= {})",
            opts.max_edges,
            cap.selected,
            cap.drawn,
            sel.min_drawn.map_or("-".into(), short_num)
        );
    }
    vec![
        "blue: positive score, red: negative; width \u{221d} |score|".to_string(),
        second,
    ]
}

/// Width the caption (and an empty picture's message) needs.
pub fn caption_width(lines: &[String], message: Option<&str>) -> f64 {
    let caption = lines
        .iter()
        .map(|l| text_width(l, SMALL_FONT_SIZE, false))
        .fold(0.0_f64, f64::max);
    let msg = message.map_or(0.0, |m| text_width(m, FONT_SIZE, false));
    caption.max(msg) + 40.0
}

pub fn write(
    scores: &ScoresFile,
    layout: &Layout,
    caption: &[String],
    message: Option<&str>,
) -> String {
    let (w, h) = (px(layout.width), px(layout.height));
    let mut s = String::with_capacity(1024 + layout.panels.len() * 4096);
    let _ = writeln!(
        s,
        r#"<svg{XMLNS} width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="{FONT_FAMILY}" data-px-per-score="{}">"#,
        sig6(layout.scale)
    );
    let _ = writeln!(
        s,
        r#"<rect class="background" x="0" y="0" width="{w}" height="{h}" fill="white"/>"#
    );
    for (i, panel) in layout.panels.iter().enumerate() {
        if i > 0 {
            let y = px(panel.top - 12.0);
            let _ = writeln!(
                s,
                r#"<line class="panel-sep" x1="10" y1="{y}" x2="{}" y2="{y}" stroke="rgb(220,220,220)" stroke-width="1"/>"#,
                px(layout.width - 10.0)
            );
        }
        write_panel(&mut s, scores, layout, panel);
    }
    if let Some(m) = message {
        let _ = writeln!(
            s,
            r#"<text class="message" x="{}" y="{}" text-anchor="middle" font-size="{FONT_SIZE}" fill="rgb(60,60,60)">{}</text>"#,
            px(layout.width / 2.0),
            px((layout.height - CAPTION_HEIGHT) / 2.0),
            escape(m)
        );
    }
    for (k, line) in caption.iter().enumerate() {
        let y = layout.height - CAPTION_HEIGHT + 18.0 + 18.0 * k as f64;
        let _ = writeln!(
            s,
            r#"<text class="caption" x="20" y="{}" font-size="{SMALL_FONT_SIZE}" fill="rgb(60,60,60)">{}</text>"#,
            px(y),
            escape(line)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn write_panel(s: &mut String, scores: &ScoresFile, layout: &Layout, panel: &Panel) {
    s.push_str(r#"<g class="panel""#);
    if let Some(p) = panel.seq {
        let _ = write!(s, r#" data-seq="{p}""#);
    }
    if let Some(l) = &panel.label {
        let _ = write!(s, r#" data-label="{}""#, escape(l));
    }
    s.push_str(">\n");
    if let Some(title) = &panel.title {
        let (main, sub) = (&title.main, &title.sub);
        let x = px(layout.left - 20.0);
        let lines = if sub.is_some() { 2.0 } else { 1.0 };
        let y0 = panel.top + panel.height / 2.0 - (lines - 1.0) * 9.0 + 0.35 * TITLE_FONT_SIZE;
        let _ = write!(
            s,
            r#"<text class="panel-title" x="{x}" y="{}" text-anchor="end" font-size="{TITLE_FONT_SIZE}" font-weight="bold" fill="rgb(42,63,95)">{}"#,
            px(y0),
            escape(main)
        );
        if let Some(sub) = sub {
            let _ = write!(
                s,
                r#"<tspan x="{x}" dy="20" font-size="{SMALL_FONT_SIZE}" font-weight="normal">{}</tspan>"#,
                escape(sub)
            );
        }
        s.push_str("</text>\n");
    }
    s.push_str("<g class=\"edges\">\n");
    for band in &panel.bands {
        write_band(s, scores, layout, band);
    }
    s.push_str("</g>\n");
    for node in &panel.nodes {
        write_node(s, layout, node);
    }
    s.push_str("</g>\n");
}

/// A filled cubic ribbon from the source box to the destination box, ending in an arrow tip
/// whose point touches the destination (the flow's direction).
fn write_band(s: &mut String, scores: &ScoresFile, layout: &Layout, b: &Band) {
    let e = &scores.edges[b.edge];
    let (rgb, opacity, rgba) = link_colour(e.score);
    let len = b.dst_u - b.src_u;
    let arrow = ARROW.min(0.3 * len.abs()).min(b.width.max(4.0) * 1.5);
    let ue = b.dst_u - arrow;
    let um = (b.src_u + ue) / 2.0;
    let p = |u: f64, c: f64| {
        let (x, y) = layout.xy(u, c);
        format!("{} {}", px(x), px(y))
    };
    let (c0, c1, w) = (b.src_c, b.dst_c, b.width);
    let d = format!(
        "M{}C{} {} {}L{}L{}C{} {} {}Z",
        p(b.src_u, c0),
        p(um, c0),
        p(um, c1),
        p(ue, c1),
        p(b.dst_u, c1 + w / 2.0),
        p(ue, c1 + w),
        p(um, c1 + w),
        p(um, c0 + w),
        p(b.src_u, c0 + w),
    );
    let _ = write!(
        s,
        r#"<path class="edge" data-src="{}" data-dest="{}""#,
        escape(&e.src),
        escape(&e.dest)
    );
    if let Some(q) = e.seq {
        let _ = write!(s, r#" data-seq="{q}""#);
    }
    let _ = writeln!(
        s,
        r#" data-score="{}" data-width="{}" data-color="{rgba}" fill="{rgb}" fill-opacity="{opacity}" d="{d}"><title>{}</title></path>"#,
        e.score,
        sig6(w),
        escape(&format!("{}->{}\nNone\n{:.2}", e.src, e.dest, e.score)),
    );
}

/// The box and its label: right of the box when layers are columns, centred on it when they
/// are rows. The label is drawn twice, first as a thick white outline, so it stays legible
/// over bands.
fn write_node(s: &mut String, layout: &Layout, n: &NodeBox) {
    let (x, y) = layout.xy(n.u, n.c);
    let (bw, bh) = match layout.orientation {
        Orientation::Horizontal => (NODE_THICKNESS, n.len),
        Orientation::Vertical => (n.len, NODE_THICKNESS),
    };
    let (tx, ty, anchor) = match layout.orientation {
        Orientation::Horizontal => (x + bw + 6.0, y + bh / 2.0 + 0.35 * FONT_SIZE, "start"),
        Orientation::Vertical => (x + bw / 2.0, y + bh / 2.0 + 0.35 * FONT_SIZE, "middle"),
    };
    let name = escape(&n.name);
    let _ = writeln!(
        s,
        r#"<g class="node" data-name="{name}" data-layer="{}"><rect x="{}" y="{}" width="{}" height="{}" fill="{}" stroke="rgb(68,68,68)" stroke-width="0.5"/><text class="halo" x="{tx}" y="{ty}" text-anchor="{anchor}" font-size="{FONT_SIZE}" fill="white" stroke="white" stroke-width="4" stroke-linejoin="round" stroke-opacity="0.85">{name}</text><text class="label" x="{tx}" y="{ty}" text-anchor="{anchor}" font-size="{FONT_SIZE}" fill="rgb(42,63,95)">{name}</text></g>"#,
        n.layer,
        px(x),
        px(y),
        px(bw),
        px(bh),
        n.color,
        tx = px(tx),
        ty = px(ty),
    );
}

/// Six significant digits: the band width as data (px rounding would blur small ratios).
fn sig6(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let mag = x.abs().log10().floor() as i32;
    let decimals = (5 - mag).clamp(0, 15) as usize;
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}
