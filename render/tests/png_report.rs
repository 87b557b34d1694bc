//! The PNG (resvg with the embedded fonts) and the self-contained HTML report.

mod common;

use attrib_proto::{CurvePoint, FaithfulnessCurve};
use attrib_render::{
    render_svg, report_html, svg_to_png, Orientation, RenderOptions, ReportInput, Selection,
};
use common::*;
use resvg::tiny_skia::Pixmap;

fn quickstart() -> (attrib_proto::ScoresFile, attrib_render::Rendered) {
    let scores = golden_scores("quickstart");
    let r = render_svg(
        &scores,
        &RenderOptions {
            selection: Selection::Threshold(0.5),
            orientation: Orientation::Vertical,
            ..RenderOptions::default()
        },
    );
    (scores, r)
}

/// Counts pixels by colour class: bluish (positive bands), reddish (negative bands), dark
/// (text and outlines).
fn census(p: &Pixmap) -> (usize, usize, usize) {
    let (mut blue, mut red, mut dark) = (0, 0, 0);
    for px in p.pixels() {
        let (r, g, b) = (px.red() as i32, px.green() as i32, px.blue() as i32);
        if b > r + 40 && b > g + 40 {
            blue += 1;
        }
        if r > b + 40 && r > g + 40 {
            red += 1;
        }
        if r + g + b < 250 {
            dark += 1;
        }
    }
    (blue, red, dark)
}

#[test]
fn png_has_the_svg_size_and_shows_bands_and_text() {
    let (_, r) = quickstart();
    let png = svg_to_png(&r.svg, 1.0).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let p = Pixmap::decode_png(&png).unwrap();
    assert_eq!(
        (p.width() as f64, p.height() as f64),
        (r.width.ceil(), r.height.ceil())
    );
    let (blue, red, dark) = census(&p);
    assert!(blue > 500 && red > 500, "blue {blue} red {red}");
    assert!(dark > 300, "text pixels: {dark}");
    // The corner is the white background.
    let c = p.pixel(0, 0).unwrap();
    assert_eq!(
        (c.red(), c.green(), c.blue(), c.alpha()),
        (255, 255, 255, 255)
    );

    let twice = Pixmap::decode_png(&svg_to_png(&r.svg, 2.0).unwrap()).unwrap();
    assert_eq!(twice.width(), (r.width * 2.0).ceil() as u32);
}

#[test]
fn png_of_an_empty_picture_still_has_its_message() {
    let scores = golden_scores("tokenwise");
    let r = render_svg(
        &scores,
        &RenderOptions {
            selection: Selection::Threshold(3.5),
            ..RenderOptions::default()
        },
    );
    let p = Pixmap::decode_png(&svg_to_png(&r.svg, 1.0).unwrap()).unwrap();
    let (blue, red, dark) = census(&p);
    assert_eq!((blue, red), (0, 0));
    assert!(dark > 100, "the message is drawn: {dark}");
}

#[test]
fn png_refuses_bad_scales_and_bad_svg() {
    let (_, r) = quickstart();
    assert!(svg_to_png(&r.svg, 0.0).is_err());
    assert!(svg_to_png(&r.svg, f32::NAN).is_err());
    assert!(svg_to_png(&r.svg, 1000.0)
        .unwrap_err()
        .to_string()
        .contains("too large"));
    assert!(svg_to_png("<svg", 1.0).is_err());
}

/// The golden quickstart faithfulness curve (AutoCircuit's `run_circuits` on the test split).
fn curve() -> FaithfulnessCurve {
    let g = fixture("golden_faithfulness.json");
    let clean = g["clean_logit_diff"].as_f64().unwrap();
    let corrupt = g["corrupt_logit_diff"].as_f64().unwrap();
    let points = g["circuits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let m = p["mean_logit_diff"].as_f64().unwrap();
            CurvePoint {
                requested_edges: p["requested_edge_count"].as_u64().unwrap() as usize,
                n_edges: p["n_edges"].as_u64().unwrap() as usize,
                threshold: p["threshold_abs_score"].as_f64(),
                mean_logit_diff: m,
                fraction_of_gap: (m - corrupt) / (clean - corrupt),
            }
        })
        .collect();
    FaithfulnessCurve {
        scores_from: "golden_quickstart.json".into(),
        split: "test".into(),
        patch: "tree (resample from corrupt)".into(),
        n_prompts: 128,
        total_edges: g["total_edges"].as_u64().unwrap() as usize,
        clean_logit_diff: clean,
        corrupt_logit_diff: corrupt,
        points,
    }
}

/// Attribute values that would make the browser fetch something.
fn external_refs(html: &str) -> Vec<String> {
    let lower = html.to_ascii_lowercase();
    let mut bad = Vec::new();
    for needle in ["http://", "https://", "@import", "url(", "<link", "//cdn"] {
        if lower.contains(needle) {
            bad.push(needle.to_string());
        }
    }
    // `src=` / `href=` as attributes (not `data-src=`).
    for attr in ["src=", "href="] {
        let mut from = 0;
        while let Some(i) = lower[from..].find(attr) {
            let at = from + i;
            let before = lower[..at].chars().last().unwrap_or(' ');
            if before.is_whitespace() {
                bad.push(lower[at..(at + 40).min(lower.len())].to_string());
            }
            from = at + attr.len();
        }
    }
    bad
}

#[test]
fn report_is_self_contained_and_complete() {
    let (scores, r) = quickstart();
    let curve = curve();
    let html = report_html(&ReportInput {
        title: "job 7 <quickstart> & co".into(),
        scores: &scores,
        rendered: &r,
        top_edges: 20,
        curve: Some(&curve),
        job: vec![("job".into(), "7".into()), ("state".into(), "done".into())],
    });
    assert_eq!(external_refs(&html), Vec::<String>::new());
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<title>job 7 &lt;quickstart&gt; &amp; co</title>"));
    assert!(html.contains("<th>state</th><td>done</td>"));
    assert!(html.contains("<th>settings.grad_function</th><td>logit</td>"));
    assert!(html.contains("<th>model.n_layers</th><td>2</td>"));
    // The picture, inline and without a namespace URL.
    assert!(html.contains("<svg width="));
    assert_eq!(html.matches("class=\"edge\" data-src=").count(), 15);
    // The table: 20 rows, largest first.
    assert_eq!(html.matches("<tr class=\"edge\">").count(), 20);
    let top = scores.top(1)[0];
    let first_row = html.find("<tr class=\"edge\">").unwrap();
    let row = &html[first_row..first_row + 300];
    assert!(
        row.contains("Resid Start") && row.contains("A1.0.K"),
        "{row}"
    );
    assert!(row.contains(&format!("data-v=\"{}\"", top.score)));
    assert!(html.contains("<script>") && html.contains("table.sortable"));
    // The curve chart.
    assert!(html.contains("class=\"curve\""));
    assert!(html.contains("class=\"ref-clean\"") && html.contains("class=\"ref-corrupt\""));
    assert_eq!(
        html.matches("class=\"curve-point\"").count(),
        curve.points.len()
    );
    // Everything outside the <script> parses as HTML-compatible XML? At least the chart does.
    let chart_at = html.find("<svg class=\"curve\"").unwrap();
    let chart_end = chart_at + html[chart_at..].find("</svg>").unwrap() + 6;
    roxmltree::Document::parse(&html[chart_at..chart_end]).unwrap();
}

#[test]
fn report_without_curve_says_how_to_get_one() {
    let scores = golden_scores("tokenwise");
    let r = render_svg(&scores, &RenderOptions::default());
    let html = report_html(&ReportInput {
        title: "tokenwise".into(),
        scores: &scores,
        rendered: &r,
        top_edges: 5,
        curve: None,
        job: vec![],
    });
    assert_eq!(external_refs(&html), Vec::<String>::new());
    assert!(html.contains("attrib faithfulness JOB --edges 10,100,1000"));
    assert!(!html.contains("class=\"curve\""));
    assert_eq!(html.matches("<tr class=\"edge\">").count(), 5);
    // Token labels are escaped in the settings table.
    assert!(html.contains("&lt;|BOS|&gt;"));
    assert!(!html.contains("<|BOS|>"));
}
