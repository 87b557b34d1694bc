//! Writes example outputs from the golden AutoCircuit scores, for a person to look at:
//! `quickstart_0.5.svg/.png` (orientation v, as AutoCircuit's README demo),
//! `tokenwise_0.5.svg/.png` (orientation h, token labels), `report.html`, and GPT-2-scale
//! timings. Usage: `cargo run --release -p attrib-render --example golden_pictures [OUT_DIR]`
//! (default `/tmp/render-examples`).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use attrib_proto::{CurvePoint, FaithfulnessCurve};
use attrib_render::{
    render_svg, report_html, svg_to_png, Orientation, RenderOptions, ReportInput, Selection,
};

fn main() {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/tmp/render-examples".into());
    std::fs::create_dir_all(&out).unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = format!("{out}/{name}");
        std::fs::write(&path, bytes).unwrap();
        println!("wrote {path} ({} bytes)", bytes.len());
    };

    let quick = common::golden_scores("quickstart");
    let q = render_svg(
        &quick,
        &RenderOptions {
            selection: Selection::Threshold(0.5),
            orientation: Orientation::Vertical,
            ..RenderOptions::default()
        },
    );
    write("quickstart_0.5.svg", q.svg.as_bytes());
    write("quickstart_0.5.png", &svg_to_png(&q.svg, 1.0).unwrap());

    let tok = common::golden_scores("tokenwise");
    let t = render_svg(
        &tok,
        &RenderOptions {
            selection: Selection::Threshold(0.5),
            ..RenderOptions::default()
        },
    );
    write("tokenwise_0.5.svg", t.svg.as_bytes());
    write("tokenwise_0.5.png", &svg_to_png(&t.svg, 1.0).unwrap());

    let e = render_svg(
        &tok,
        &RenderOptions {
            selection: Selection::Threshold(3.5),
            ..RenderOptions::default()
        },
    );
    write("tokenwise_3.5.png", &svg_to_png(&e.svg, 1.0).unwrap());

    let h = render_svg(
        &quick,
        &RenderOptions {
            selection: Selection::Threshold(0.5),
            ..RenderOptions::default()
        },
    );
    write("quickstart_0.5_h.png", &svg_to_png(&h.svg, 1.0).unwrap());

    let g = common::fixture("golden_faithfulness.json");
    let clean = g["clean_logit_diff"].as_f64().unwrap();
    let corrupt = g["corrupt_logit_diff"].as_f64().unwrap();
    let curve = FaithfulnessCurve {
        scores_from: "golden_quickstart.json".into(),
        split: "test".into(),
        patch: "tree (resample from corrupt)".into(),
        n_prompts: 128,
        total_edges: 110,
        clean_logit_diff: clean,
        corrupt_logit_diff: corrupt,
        points: g["circuits"]
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
            .collect(),
    };
    let html = report_html(&ReportInput {
        title: "golden quickstart (AutoCircuit tiny model)".into(),
        scores: &quick,
        rendered: &q,
        top_edges: 25,
        curve: Some(&curve),
        job: vec![
            ("job".into(), "example".into()),
            ("state".into(), "done".into()),
        ],
    });
    write("report.html", html.as_bytes());

    // GPT-2 small shapes with pseudo-random scores, everything selected (capped at 2000).
    for (name, seq_len, orientation, scale) in [
        ("gpt2_h", None, Orientation::Horizontal, 0.5),
        ("gpt2_v", None, Orientation::Vertical, 0.5),
        ("gpt2_tokens_h", Some(15), Orientation::Horizontal, 0.25),
    ] {
        let scores = common::gpt2_scores(seq_len);
        let start = Instant::now();
        let r = render_svg(
            &scores,
            &RenderOptions {
                selection: Selection::Threshold(0.0),
                orientation,
                ..RenderOptions::default()
            },
        );
        let took = start.elapsed();
        println!(
            "{name}: {} edges, {} drawn, SVG {:.2} MB, {:.0} x {:.0} px, render {took:.2?}",
            scores.edges.len(),
            r.n_drawn,
            r.svg.len() as f64 / 1e6,
            r.width,
            r.height
        );
        write(&format!("{name}.svg"), r.svg.as_bytes());
        let start = Instant::now();
        let png = svg_to_png(&r.svg, scale).unwrap();
        println!("{name}: PNG at scale {scale} in {:.2?}", start.elapsed());
        write(&format!("{name}.png"), &png);
        // The top-left corner at full size: are the labels readable?
        let head = r.svg.lines().next().unwrap();
        let crop = r#"<svg xmlns="http://www.w3.org/2000/svg" width="1400" height="700" viewBox="0 0 1400 700" font-family="DejaVu Sans, Arial, sans-serif">"#;
        let cropped = r.svg.replacen(head, crop, 1);
        write(
            &format!("{name}_corner.png"),
            &svg_to_png(&cropped, 1.0).unwrap(),
        );
    }

    let start = Instant::now();
    let rendered = render_svg(&tok, &RenderOptions::default());
    println!(
        "tokenwise at the default threshold: {} of {} drawn in {:.2?}",
        rendered.n_drawn,
        tok.edges.len(),
        start.elapsed()
    );
}
