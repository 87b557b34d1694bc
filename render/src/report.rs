//! One self-contained HTML page per job: what was computed (settings, data, model, job facts),
//! the circuit picture inline, a sortable table of the top edges and the faithfulness curve.
//! Self-contained means no request at all when opened (no scripts, styles, fonts or images
//! from elsewhere, no links out): it is meant to be mailed, archived and opened offline.

use std::fmt::Write;

use attrib_proto::{FaithfulnessCurve, ScoresFile};
use serde_json::Value;

use crate::svg::XMLNS;
use crate::text::{escape, short_num};
use crate::Rendered;

/// What goes into a report.
#[derive(Debug, Clone)]
pub struct ReportInput<'a> {
    pub title: String,
    pub scores: &'a ScoresFile,
    /// The picture to embed (from [`crate::render_svg`] on `scores`).
    pub rendered: &'a Rendered,
    /// Rows of the edge table: the largest |score| first.
    pub top_edges: usize,
    pub curve: Option<&'a FaithfulnessCurve>,
    /// Extra facts shown first, in order: job id, state, timings, ...
    pub job: Vec<(String, String)>,
}

const STYLE: &str = "body{font-family:'DejaVu Sans',Arial,sans-serif;margin:24px;color:#2a3f5f}\
h1{font-size:22px}h2{font-size:18px;margin-top:28px}\
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}\
th{background:#f3f5f9}table.sortable th{cursor:pointer;user-select:none}\
td.num{text-align:right;font-variant-numeric:tabular-nums}\
.figure{overflow:auto;max-width:100%;border:1px solid #eee}.note{color:#a33}.hint{color:#555}\
code{background:#f3f5f9;padding:1px 4px}";

/// Sorts a `table.sortable` by the clicked column (numbers by `data-v`), toggling direction.
const SCRIPT: &str = r#"document.querySelectorAll('table.sortable th').forEach(function (th) {
  th.addEventListener('click', function () {
    var i = th.cellIndex, body = th.closest('table').tBodies[0];
    var num = th.getAttribute('data-type') === 'num';
    var dir = th.getAttribute('data-dir') === 'asc' ? -1 : 1;
    th.setAttribute('data-dir', dir === 1 ? 'asc' : 'desc');
    var key = function (row) {
      var c = row.cells[i], v = c.getAttribute('data-v');
      if (v === null) v = c.textContent;
      if (!num) return v;
      var x = parseFloat(v);
      return isNaN(x) ? -Infinity : x;
    };
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a), y = key(b);
      return (x < y ? -1 : x > y ? 1 : 0) * dir;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});"#;

/// The start of a self-contained attrib page (the report, `attrib compare`'s): doctype, the
/// shared style, and `title` (escaped here) as title and heading.
pub fn page_start(title: &str) -> String {
    let title = escape(title);
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>\n"
    )
}

/// The report page. Everything that comes from data is escaped.
pub fn report_html(input: &ReportInput) -> String {
    let scores = input.scores;
    let mut h = String::with_capacity(input.rendered.svg.len() + 64 * 1024);
    h.push_str(&page_start(&input.title));

    if !input.job.is_empty() {
        h.push_str("<h2>Job</h2>\n");
        facts_table(&mut h, "job", input.job.iter().cloned());
    }

    h.push_str("<h2>Attribution</h2>\n");
    let mut facts = vec![
        ("edges".to_string(), scores.n_edges.to_string()),
        (
            "clean logit diff (train, mean)".to_string(),
            scores.clean_logit_diff.to_string(),
        ),
    ];
    for (prefix, v) in [
        ("settings", serde_json::to_value(&scores.settings)),
        ("data", serde_json::to_value(&scores.data)),
        ("model", serde_json::to_value(&scores.model)),
    ] {
        flatten(prefix, &v.unwrap_or(Value::Null), &mut facts);
    }
    facts_table(&mut h, "settings", facts.into_iter());

    let r = input.rendered;
    h.push_str("<h2>Circuit</h2>\n");
    let _ = writeln!(
        h,
        "<p>{} of {} edges drawn ({} selected); blue: positive score, red: negative; band width \u{221d} |score|.</p>",
        r.n_drawn, scores.n_edges, r.n_selected
    );
    if let Some(note) = &r.note {
        let _ = writeln!(h, "<p class=\"note\">{}</p>", escape(note));
    }
    h.push_str("<div class=\"figure\">\n");
    // Inline SVG needs no namespace in HTML, and the report must not name any URL.
    h.push_str(&r.svg.replacen(XMLNS, "", 1));
    h.push_str("</div>\n");

    edge_table(&mut h, scores, input.top_edges);

    h.push_str("<h2>Faithfulness</h2>\n");
    match input.curve {
        Some(c) => curve_section(&mut h, c),
        None => h.push_str(
            "<p class=\"hint\">No faithfulness curve was given. Compute one with \
             <code>attrib faithfulness JOB --edges 10,100,1000</code> and pass it to the report.</p>\n",
        ),
    }

    let _ = write!(h, "<script>\n{SCRIPT}\n</script>\n</body>\n</html>\n");
    h
}

/// Flattens JSON into `a.b.c -> value` rows (strings unquoted, lists of scalars joined).
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                flatten(&format!("{prefix}.{k}"), x, out);
            }
        }
        Value::Array(a) if a.iter().all(|x| !x.is_object() && !x.is_array()) => {
            let items: Vec<String> = a.iter().map(scalar).collect();
            out.push((prefix.to_string(), format!("[{}]", items.join(", "))));
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), x, out);
            }
        }
        x => out.push((prefix.to_string(), scalar(x))),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "none".into(),
        x => x.to_string(),
    }
}

fn facts_table(h: &mut String, class: &str, rows: impl Iterator<Item = (String, String)>) {
    let _ = writeln!(h, "<table class=\"{class}\">");
    for (k, v) in rows {
        let _ = writeln!(h, "<tr><th>{}</th><td>{}</td></tr>", escape(&k), escape(&v));
    }
    h.push_str("</table>\n");
}

/// A score for people: 4 decimals in the usual range, scientific notation outside it.
/// A number as JavaScript's `parseFloat` reads it (Rust writes `inf`, JavaScript needs
/// `Infinity`: ACDC's never-removed edges must sort first).
fn js_number(x: f64) -> String {
    match x {
        f64::INFINITY => "Infinity".into(),
        f64::NEG_INFINITY => "-Infinity".into(),
        x => x.to_string(),
    }
}

fn fmt_score(x: f64) -> String {
    let a = x.abs();
    if x == 0.0 || !x.is_finite() || (1e-3..1e5).contains(&a) {
        format!("{x:.4}")
    } else {
        format!("{x:.3e}")
    }
}

fn edge_table(h: &mut String, scores: &ScoresFile, n: usize) {
    let top = scores.top(n);
    let _ = writeln!(
        h,
        "<h2>Top {} edges by |score|</h2>\n<p class=\"hint\">Click a column header to sort.</p>",
        top.len()
    );
    h.push_str(
        "<table class=\"sortable edges\">\n<thead><tr><th data-type=\"num\">rank</th><th>src</th><th>dest</th>\
         <th data-type=\"num\">seq</th><th data-type=\"num\">score</th><th data-type=\"num\">|score|</th></tr></thead>\n<tbody>\n",
    );
    for (rank, e) in top.iter().enumerate() {
        let seq = e.seq.map_or(String::new(), |p| p.to_string());
        let _ = writeln!(
            h,
            "<tr class=\"edge\"><td class=\"num\">{}</td><td>{}</td><td>{}</td><td class=\"num\">{seq}</td>\
             <td class=\"num\" data-v=\"{}\">{}</td><td class=\"num\" data-v=\"{}\">{}</td></tr>",
            rank + 1,
            escape(&e.src),
            escape(&e.dest),
            js_number(e.score),
            fmt_score(e.score),
            js_number(e.score.abs()),
            fmt_score(e.score.abs()),
        );
    }
    h.push_str("</tbody>\n</table>\n");
}

fn curve_section(h: &mut String, c: &FaithfulnessCurve) {
    let _ = writeln!(
        h,
        "<p>Circuits chosen on the train prompts by |score| and judged on the {} split ({} prompts), \
         every edge outside the circuit patched: {}. Scores from <code>{}</code>.</p>",
        escape(&c.split),
        c.n_prompts,
        escape(&c.patch),
        escape(&c.scores_from)
    );
    h.push_str(&curve_svg(c));
    h.push_str(
        "<table class=\"curve\">\n<thead><tr><th>edges requested</th><th>edges kept</th><th>threshold</th>\
         <th>mean logit diff</th><th>fraction of gap</th></tr></thead>\n<tbody>\n",
    );
    for p in &c.points {
        let _ = writeln!(
            h,
            "<tr><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.4}</td><td class=\"num\">{:.4}</td></tr>",
            p.requested_edges,
            p.n_edges,
            p.threshold.map_or("none".into(), fmt_score),
            no_neg_zero(p.mean_logit_diff),
            no_neg_zero(p.fraction_of_gap)
        );
    }
    h.push_str("</tbody>\n</table>\n");
}

/// Values that print as `-0.0000` at 4 decimals print as `0.0000`.
fn no_neg_zero(x: f64) -> f64 {
    if x.abs() < 5e-5 {
        0.0
    } else {
        x
    }
}

/// One measured point of the curve: (x = log10(1 + edges), mean logit diff, the point).
type Plotted<'a> = (f64, f64, &'a attrib_proto::CurvePoint);

/// The curve's frame: canvas size, margins and the data ranges the axes span.
struct Frame {
    w: f64,
    hgt: f64,
    l: f64,
    r: f64,
    t: f64,
    b: f64,
    xmax: f64,
    ylo: f64,
    yhi: f64,
}

impl Frame {
    /// A frame spanning the points, the whole model's edge count and the two reference values
    /// (8% padding above and below).
    fn new(c: &FaithfulnessCurve, pts: &[Plotted]) -> Self {
        let (w, hgt, l, r, t, b) = (680.0, 360.0, 70.0, 110.0, 20.0, 50.0);
        let xmax = pts
            .iter()
            .map(|p| p.0)
            .fold((1.0 + c.total_edges as f64).log10(), f64::max)
            .max(1e-9);
        let ys = pts
            .iter()
            .map(|p| p.1)
            .chain([c.clean_logit_diff, c.corrupt_logit_diff])
            .filter(|y| y.is_finite());
        let (mut ylo, mut yhi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| {
            (a.min(y), b.max(y))
        });
        if !ylo.is_finite() {
            (ylo, yhi) = (0.0, 1.0);
        }
        let pad = ((yhi - ylo) * 0.08).max(1e-6);
        let (ylo, yhi) = (ylo - pad, yhi + pad);
        Frame {
            w,
            hgt,
            l,
            r,
            t,
            b,
            xmax,
            ylo,
            yhi,
        }
    }

    /// Canvas x of a data x.
    fn sx(&self, x: f64) -> f64 {
        self.l + x / self.xmax * (self.w - self.l - self.r)
    }

    /// Canvas y of a data y.
    fn sy(&self, y: f64) -> f64 {
        self.t + (self.yhi - y) / (self.yhi - self.ylo) * (self.hgt - self.t - self.b)
    }
}

/// Mean logit difference against edges kept (x = log10(1 + edges), so 0 has a place), with
/// dashed reference lines at the clean (whole model) and corrupt (empty circuit) values.
fn curve_svg(c: &FaithfulnessCurve) -> String {
    let mut pts: Vec<Plotted> = c
        .points
        .iter()
        .filter(|p| p.mean_logit_diff.is_finite())
        .map(|p| ((1.0 + p.n_edges as f64).log10(), p.mean_logit_diff, p))
        .collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    let f = Frame::new(c, &pts);
    let (w, hgt, l, r, t, b) = (f.w, f.hgt, f.l, f.r, f.t, f.b);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg class="curve" width="{w}" height="{hgt}" viewBox="0 0 {w} {hgt}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r#"<rect x="{l}" y="{t}" width="{}" height="{}" fill="white" stroke="rgb(200,200,200)"/>"#,
        w - l - r,
        hgt - t - b
    );
    write_curve_axes(&mut s, &f, &pts);
    write_reference_lines(&mut s, &f, c);
    write_curve_line(&mut s, &f, &pts);
    s.push_str("</svg>\n");
    s
}

/// The y ticks, the x ticks at the measured edge counts (skipping labels that would collide)
/// and both axis titles.
fn write_curve_axes(s: &mut String, f: &Frame, pts: &[Plotted]) {
    let (w, hgt, l, r, t, b) = (f.w, f.hgt, f.l, f.r, f.t, f.b);
    for k in 0..=4 {
        let y = f.ylo + (f.yhi - f.ylo) * k as f64 / 4.0;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            l - 6.0,
            f.sy(y) + 4.0,
            escape(&short_num(y))
        );
    }
    let mut last_x = f64::NEG_INFINITY;
    for (x, _, p) in pts {
        let px = f.sx(*x);
        if px - last_x >= 34.0 {
            let _ = writeln!(
                s,
                r#"<text x="{px:.1}" y="{}" text-anchor="middle">{}</text>"#,
                hgt - b + 16.0,
                p.n_edges
            );
            last_x = px;
        }
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">edges kept (log scale)</text>"#,
        l + (w - l - r) / 2.0,
        hgt - 12.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(16 {}) rotate(-90)" text-anchor="middle">mean logit diff</text>"#,
        t + (hgt - t - b) / 2.0
    );
}

/// Dashed lines at the clean (whole model) and corrupt (empty circuit) values, where finite.
fn write_reference_lines(s: &mut String, f: &Frame, c: &FaithfulnessCurve) {
    let (w, l, r) = (f.w, f.l, f.r);
    for (name, v, colour) in [
        ("clean", c.clean_logit_diff, "rgb(0,140,0)"),
        ("corrupt", c.corrupt_logit_diff, "rgb(200,0,0)"),
    ] {
        if v.is_finite() {
            let y = f.sy(v);
            let _ = writeln!(
                s,
                r#"<line class="ref-{name}" x1="{l}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="{colour}" stroke-dasharray="6 4"/><text x="{}" y="{:.1}" fill="{colour}">{name} {}</text>"#,
                w - r,
                w - r + 6.0,
                y + 4.0,
                escape(&short_num(v))
            );
        }
    }
}

/// The curve itself: a polyline through the points and a dot with a tooltip at each.
fn write_curve_line(s: &mut String, f: &Frame, pts: &[Plotted]) {
    let line: Vec<String> = pts
        .iter()
        .map(|(x, y, _)| format!("{:.1},{:.1}", f.sx(*x), f.sy(*y)))
        .collect();
    let _ = writeln!(
        s,
        r#"<polyline class="curve-line" points="{}" fill="none" stroke="rgb(55,126,184)" stroke-width="2"/>"#,
        line.join(" ")
    );
    for (x, y, p) in pts {
        let _ = writeln!(
            s,
            r#"<circle class="curve-point" cx="{:.1}" cy="{:.1}" r="3.5" fill="rgb(55,126,184)"><title>{} edges: mean logit diff {:.4}, fraction of gap {:.4}</title></circle>"#,
            f.sx(*x),
            f.sy(*y),
            p.n_edges,
            p.mean_logit_diff,
            p.fraction_of_gap
        );
    }
}
