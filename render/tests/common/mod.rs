//! Shared by the tests and the example: the golden AutoCircuit fixtures as `ScoresFile`s, and
//! a reader for the marks `render_svg` leaves in its SVG.
#![allow(dead_code)]

use std::collections::BTreeMap;

use attrib_proto::{
    AttributionSettings, DataSettings, EdgeScore, GraphShape, ModelRecord, ScoresFile,
};
use serde_json::Value;

#[allow(unused_imports)] // not every test binary of this crate compares lists
pub use attrib_fuzz::zip_eq;

pub fn fixture_path(name: &str) -> String {
    format!(
        "{}/../tests/fixtures/golden-tiny/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

pub fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture_path(name)).expect("golden fixture");
    serde_json::from_str(&text).expect("golden fixture is JSON")
}

/// `golden_<variant>.json` as attrib's scores file; token-wise ones get the seq labels the
/// draw golden was made with.
pub fn golden_scores(variant: &str) -> ScoresFile {
    let g = fixture(&format!("golden_{variant}.json"));
    let edges: Vec<EdgeScore> = g["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| EdgeScore {
            src: e["src"].as_str().unwrap().to_string(),
            dest: e["dest"].as_str().unwrap().to_string(),
            seq: e["seq"].as_u64().map(|p| p as usize),
            score: e["score"].as_f64().unwrap(),
        })
        .collect();
    let token = edges.iter().any(|e| e.seq.is_some());
    let seq_labels = token.then(|| {
        fixture("golden_draw_tokenwise_0.5.json")["seq_labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    });
    ScoresFile {
        n_edges: edges.len(),
        clean_logit_diff: g["clean_logit_diff"].as_f64().unwrap_or(0.0),
        settings: AttributionSettings {
            token_positions: token,
            ..AttributionSettings::default()
        },
        data: DataSettings {
            files: vec!["ioi_vanilla_template_prompts.json".into()],
            batch_size: 16,
            train_size: 128,
            test_size: 128,
            prepend_bos: true,
            seed: 42,
            width: 15,
            seq_labels,
            batches_per_unit: 1,
        },
        model: ModelRecord {
            path: "tests/fixtures/golden-tiny".into(),
            n_layers: 2,
            n_heads: 4,
            d_model: 32,
        },
        device_class: String::new(),
        edges,
    }
}

/// Deterministic scores in (-1, 1) with a heavy tail (xorshift; no rand dependency).
pub fn gpt2_scores(seq_len: Option<usize>) -> ScoresFile {
    let shape = GraphShape {
        n_layers: 12,
        n_heads: 12,
        separate_qkv: true,
        seq_len,
    };
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let edges: Vec<EdgeScore> = shape
        .named_edges()
        .into_iter()
        .map(|e| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
            let score = (2.0 * u - 1.0).powi(5);
            EdgeScore {
                src: e.src,
                dest: e.dest,
                seq: e.seq,
                score,
            }
        })
        .collect();
    ScoresFile {
        n_edges: edges.len(),
        clean_logit_diff: 3.0,
        settings: AttributionSettings {
            token_positions: seq_len.is_some(),
            ..AttributionSettings::default()
        },
        data: DataSettings {
            files: vec![],
            batch_size: 16,
            train_size: 128,
            test_size: 128,
            prepend_bos: true,
            seed: 42,
            width: 15,
            batches_per_unit: 1,
            seq_labels: seq_len.map(|n| (0..n).map(|p| format!("tok{p}")).collect()),
        },
        model: ModelRecord {
            path: "gpt2".into(),
            n_layers: 12,
            n_heads: 12,
            d_model: 768,
        },
        device_class: String::new(),
        edges,
    }
}

/// One `<path class="edge">` read back.
#[derive(Debug, Clone)]
pub struct DrawnEdge {
    pub src: String,
    pub dest: String,
    pub seq: Option<usize>,
    pub score: f64,
    pub width: f64,
    pub color: String,
    pub fill: String,
    pub fill_opacity: String,
    pub title: String,
    pub d: String,
}

/// One `<g class="node">` read back.
#[derive(Debug, Clone)]
pub struct DrawnNode {
    pub name: String,
    pub layer: usize,
    pub label: String,
    pub rect: [f64; 4],
}

/// One `<g class="panel">` read back.
#[derive(Debug, Clone, Default)]
pub struct DrawnPanel {
    pub seq: Option<usize>,
    pub title: Option<String>,
    pub edges: Vec<DrawnEdge>,
    pub nodes: Vec<DrawnNode>,
}

#[derive(Debug, Clone)]
pub struct DrawnSvg {
    pub width: f64,
    pub height: f64,
    pub view_box: String,
    pub panels: Vec<DrawnPanel>,
    pub messages: Vec<String>,
    pub captions: Vec<String>,
}

fn f(n: roxmltree::Node, a: &str) -> f64 {
    n.attribute(a).unwrap().parse().unwrap()
}

fn text_of(n: roxmltree::Node) -> String {
    n.descendants()
        .filter(|d| d.is_text())
        .filter_map(|d| d.text())
        .collect::<Vec<_>>()
        .join(" ")
}

fn class_is(n: &roxmltree::Node, c: &str) -> bool {
    n.is_element() && n.attribute("class") == Some(c)
}

/// Parses the SVG with a real XML parser and collects the marks.
pub fn read_svg(svg: &str) -> DrawnSvg {
    let doc = roxmltree::Document::parse(svg).expect("the SVG is well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://www.w3.org/2000/svg")
    );
    let mut panels = Vec::new();
    for p in root.descendants().filter(|n| class_is(n, "panel")) {
        let mut panel = DrawnPanel {
            seq: p.attribute("data-seq").map(|s| s.parse().unwrap()),
            title: p
                .descendants()
                .find(|n| class_is(n, "panel-title"))
                .map(text_of),
            ..Default::default()
        };
        for e in p.descendants().filter(|n| class_is(n, "edge")) {
            assert_eq!(e.tag_name().name(), "path");
            let a = |k: &str| {
                e.attribute(k)
                    .unwrap_or_else(|| panic!("edge lacks {k}"))
                    .to_string()
            };
            panel.edges.push(DrawnEdge {
                src: a("data-src"),
                dest: a("data-dest"),
                seq: e.attribute("data-seq").map(|s| s.parse().unwrap()),
                score: a("data-score").parse().unwrap(),
                width: a("data-width").parse().unwrap(),
                color: a("data-color"),
                fill: a("fill"),
                fill_opacity: a("fill-opacity"),
                title: e
                    .children()
                    .find(|c| c.has_tag_name("title"))
                    .map(text_of)
                    .unwrap_or_default(),
                d: a("d"),
            });
        }
        for g in p.descendants().filter(|n| class_is(n, "node")) {
            let rect = g.children().find(|c| c.has_tag_name("rect")).unwrap();
            let label = g
                .children()
                .find(|c| class_is(c, "label"))
                .map(text_of)
                .unwrap();
            panel.nodes.push(DrawnNode {
                name: g.attribute("data-name").unwrap().to_string(),
                layer: g.attribute("data-layer").unwrap().parse().unwrap(),
                label,
                rect: [
                    f(rect, "x"),
                    f(rect, "y"),
                    f(rect, "width"),
                    f(rect, "height"),
                ],
            });
        }
        panels.push(panel);
    }
    let texts = |c: &str| -> Vec<String> {
        root.descendants()
            .filter(|n| class_is(n, c))
            .map(text_of)
            .collect()
    };
    DrawnSvg {
        width: f(root, "width"),
        height: f(root, "height"),
        view_box: root.attribute("viewBox").unwrap().to_string(),
        panels,
        messages: texts("message"),
        captions: texts("caption"),
    }
}

/// The golden links of one trace: `(edge name, colour, signed-less value)`.
pub fn golden_links(trace: &Value) -> Vec<(String, String, f64)> {
    trace["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["edge"].as_str().unwrap().to_string(),
                l["color"].as_str().unwrap().to_string(),
                l["value"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// Multiset helper.
pub fn counts<T: Ord + Clone>(items: impl IntoIterator<Item = T>) -> BTreeMap<T, usize> {
    let mut m = BTreeMap::new();
    for i in items {
        *m.entry(i).or_insert(0) += 1;
    }
    m
}

/// Every number of a path's `d`, as (x, y) pairs.
pub fn path_points(d: &str) -> Vec<(f64, f64)> {
    let nums: Vec<f64> = d
        .split(|c: char| c.is_ascii_alphabetic() || c == ' ' || c == ',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    nums.chunks(2).map(|c| (c[0], c[1])).collect()
}
