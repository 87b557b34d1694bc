//! The picture against AutoCircuit's own `draw_seq_graph` output on the tiny golden model
//! (tests/fixtures/golden-tiny/golden_draw_*.json): same links, colours, relative widths,
//! panels and node labels.

mod common;

use attrib_render::{render_svg, Orientation, RenderOptions, Selection};
use common::*;

fn opts(threshold: f64, orientation: Orientation) -> RenderOptions {
    RenderOptions {
        selection: Selection::Threshold(threshold),
        orientation,
        layer_spacing: true,
        token_labels: true,
        ..RenderOptions::default()
    }
}

/// AutoCircuit's calls: quickstart with orientation "v", token-wise with the default "h".
fn golden_call(variant: &str, threshold: f64) -> (attrib_render::Rendered, DrawnSvg) {
    let (scores, orientation) = match variant {
        "quickstart" => (golden_scores("quickstart"), Orientation::Vertical),
        _ => (golden_scores("tokenwise"), Orientation::Horizontal),
    };
    let r = render_svg(&scores, &opts(threshold, orientation));
    let drawn = read_svg(&r.svg);
    (r, drawn)
}

/// The display name AutoCircuit gives a node (with "Unembed" for its empty "h" label).
fn display(name: &str) -> String {
    match name {
        "Resid Start" => "Embed".into(),
        "Resid End" => "Unembed".into(),
        n if n.starts_with('A')
            && (n.ends_with(".Q") || n.ends_with(".K") || n.ends_with(".V")) =>
        {
            n[..n.len() - 2].to_string()
        }
        n => n.to_string(),
    }
}

fn check_links_match(panel: &DrawnPanel, trace: &serde_json::Value) {
    let golden = golden_links(trace);
    let drawn_names = counts(panel.edges.iter().map(|e| format!("{}->{}", e.src, e.dest)));
    let golden_names = counts(golden.iter().map(|g| g.0.clone()));
    assert_eq!(drawn_names, golden_names, "panel {:?}", panel.seq);
    for e in &panel.edges {
        let name = format!("{}->{}", e.src, e.dest);
        let g = golden.iter().find(|g| g.0 == name).unwrap();
        assert_eq!(e.color, g.1, "{name}");
        let (fill, opacity) = match g.1.as_str() {
            "rgba(0,0,255,0.3)" => ("rgb(0,0,255)", "0.3"),
            "rgba(255,0,0,0.3)" => ("rgb(255,0,0)", "0.3"),
            _ => ("rgb(0,0,0)", "0.1"),
        };
        assert_eq!((e.fill.as_str(), e.fill_opacity.as_str()), (fill, opacity));
        assert_eq!(
            e.score < 0.0,
            g.1.starts_with("rgba(255,0,0"),
            "{name} sign"
        );
        assert!(
            (e.score.abs() - g.2).abs() < 1e-6,
            "{name}: {} vs {}",
            e.score,
            g.2
        );
        assert_eq!(e.seq, trace["seq_idx"].as_u64().map(|p| p as usize));
        // AutoCircuit's hover label, with newlines for <br>.
        let label = trace["links"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["edge"] == name.as_str())
            .unwrap()["label"]
            .as_str()
            .unwrap()
            .replace("<br>", "\n");
        assert_eq!(e.title, label);
    }
}

fn check_widths(panels: &[DrawnPanel]) {
    let all: Vec<&DrawnEdge> = panels.iter().flat_map(|p| &p.edges).collect();
    let ratio = all[0].width / all[0].score.abs();
    for e in &all {
        let r = e.width / e.score.abs();
        assert!(
            (r - ratio).abs() <= 1e-3 * ratio,
            "{} {} vs {}",
            e.src,
            r,
            ratio
        );
    }
    for a in &all {
        for b in &all {
            if a.score.abs() > b.score.abs() {
                assert!(a.width >= b.width);
            }
        }
    }
}

/// The arrow tip touches the destination box and the band leaves the source box: along the
/// flow, a band spans exactly from the source box's far side to the destination box's near side.
fn check_direction(panel: &DrawnPanel, orientation: Orientation) {
    let node = |name: &str| {
        panel
            .nodes
            .iter()
            .find(|n| n.name == display(name))
            .unwrap()
    };
    for e in &panel.edges {
        let along: Vec<f64> = path_points(&e.d)
            .into_iter()
            .map(|(x, y)| match orientation {
                Orientation::Horizontal => x,
                Orientation::Vertical => y,
            })
            .collect();
        let (lo, hi) = along
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        let (s, d) = (node(&e.src).rect, node(&e.dest).rect);
        let (s_end, d_start) = match orientation {
            Orientation::Horizontal => (s[0] + s[2], d[0]),
            Orientation::Vertical => (s[1] + s[3], d[1]),
        };
        assert!(
            (lo - s_end).abs() < 0.15,
            "{}->{}: starts {lo}, box ends {s_end}",
            e.src,
            e.dest
        );
        assert!(
            (hi - d_start).abs() < 0.15,
            "{}->{}: tip {hi}, box {d_start}",
            e.src,
            e.dest
        );
        // The tip is a single point: the last-but-one vertex before the return curve.
        let pts = path_points(&e.d);
        let tip = pts[4];
        let tip_along = match orientation {
            Orientation::Horizontal => tip.0,
            Orientation::Vertical => tip.1,
        };
        assert!((tip_along - d_start).abs() < 0.15);
    }
}

#[test]
fn quickstart_at_half_draws_exactly_autocircuits_links() {
    let golden = fixture("golden_draw_quickstart_0.5.json");
    let (r, svg) = golden_call("quickstart", 0.5);
    assert_eq!(r.n_drawn, 15);
    assert_eq!(r.n_selected, 15);
    assert_eq!(r.panels, vec![None]);
    assert!(r.capped.is_none() && r.note.is_none());
    assert_eq!(svg.panels.len(), 1);
    let panel = &svg.panels[0];
    assert_eq!(panel.seq, None);
    assert_eq!(panel.title, None, "no title without positions");
    check_links_match(panel, &golden["traces"][0]);
    check_widths(&svg.panels);
    check_direction(panel, Orientation::Vertical);
    // Node labels: AutoCircuit's set (every node is touched here).
    let want = counts(
        golden["traces"][0]["node_labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_string()),
    );
    assert_eq!(counts(panel.nodes.iter().map(|n| n.label.clone())), want);
    assert!(panel.nodes.iter().all(|n| n.label == n.name));
    // Layers: 0 Embed, 2b+1 heads, 2b+2 MLP, 5 Unembed.
    for n in &panel.nodes {
        let want = match n.name.as_str() {
            "Embed" => 0,
            "Unembed" => 5,
            "MLP 0" => 2,
            "MLP 1" => 4,
            a if a.starts_with("A0.") => 1,
            _ => 3,
        };
        assert_eq!(n.layer, want, "{}", n.name);
    }
    // Orientation v: each layer is a row, rows in layer order, top to bottom.
    for a in &panel.nodes {
        for b in &panel.nodes {
            if a.layer < b.layer {
                assert!(a.rect[1] < b.rect[1]);
            }
            if a.layer == b.layer {
                assert_eq!(a.rect[1], b.rect[1]);
            }
        }
    }
    assert!(
        svg.width >= 800.0 && svg.height >= 600.0,
        "AutoCircuit's size is a floor"
    );
    assert_eq!(svg.view_box, format!("0 0 {} {}", svg.width, svg.height));
    assert!(svg
        .captions
        .iter()
        .any(|c| c.contains("15 of 110 edges drawn (|score| >= 0.5)")));
}

#[test]
fn tokenwise_at_half_draws_three_titled_panels() {
    let golden = fixture("golden_draw_tokenwise_0.5.json");
    let (r, svg) = golden_call("tokenwise", 0.5);
    assert_eq!(r.n_drawn, 16);
    assert_eq!(r.panels, vec![Some(2), Some(10), Some(14)]);
    let seqs: Vec<Option<usize>> = svg.panels.iter().map(|p| p.seq).collect();
    assert_eq!(seqs, vec![Some(2), Some(10), Some(14)]);
    let traces = golden["traces"].as_array().unwrap();
    assert_eq!(traces.len(), 3);
    let panels = zip_eq(&svg.panels, traces, "drawn and golden panels");
    for ((panel, trace), word) in zip_eq(panels, ["Mary", "John", "to"], "panels and words") {
        assert_eq!(trace["seq_label"], word);
        let title = panel.title.as_deref().unwrap();
        assert!(title.starts_with(word), "{title}");
        assert!(
            title.contains(&format!("pos {}", panel.seq.unwrap())),
            "{title}"
        );
        check_links_match(panel, trace);
        check_direction(panel, Orientation::Horizontal);
        // Node labels: the golden set, with "" (Unembed's label in "h") read as "Unembed".
        let mut want: Vec<String> = trace["node_labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_string())
            .collect();
        if trace["links"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["target"] == "")
        {
            want.push("Unembed".into());
        }
        let got: Vec<String> = panel.nodes.iter().map(|n| n.label.clone()).collect();
        assert_eq!(counts(got), counts(want), "panel {word}");
    }
    check_widths(&svg.panels);
    // Panels stack top to bottom; within a panel, a column per layer, left to right.
    for p in &svg.panels {
        for a in &p.nodes {
            for b in &p.nodes {
                if a.layer < b.layer {
                    assert!(a.rect[0] < b.rect[0]);
                }
            }
        }
    }
    let tops: Vec<f64> = svg
        .panels
        .iter()
        .map(|p| p.nodes.iter().map(|n| n.rect[1]).fold(f64::MAX, f64::min))
        .collect();
    assert!(tops.windows(2).all(|w| w[0] < w[1]), "{tops:?}");
    assert!(svg.width >= 600.0 && svg.height >= 750.0);
}

#[test]
fn panels_can_be_titled_by_position() {
    let scores = golden_scores("tokenwise");
    let r = render_svg(
        &scores,
        &RenderOptions {
            token_labels: false,
            ..opts(0.5, Orientation::Horizontal)
        },
    );
    let svg = read_svg(&r.svg);
    let titles: Vec<String> = svg
        .panels
        .iter()
        .map(|p| p.title.clone().unwrap())
        .collect();
    assert_eq!(titles, vec!["pos 2", "pos 10", "pos 14"]);
}

#[test]
fn nothing_above_threshold_gives_an_empty_valid_picture() {
    for variant in ["quickstart", "tokenwise"] {
        let (r, svg) = golden_call(variant, 3.5);
        assert_eq!((r.n_selected, r.n_drawn), (0, 0), "{variant}");
        assert!(r.panels.is_empty() && svg.panels.is_empty());
        let note = r.note.expect("an empty picture says why");
        assert!(
            note.starts_with("no edge with |score| >= 3.5 (max |score| "),
            "{note}"
        );
        assert_eq!(svg.messages, vec![note.clone()]);
        assert!(svg.width > 0.0 && svg.height > 0.0);
        if variant == "quickstart" {
            assert_eq!(note, "no edge with |score| >= 3.5 (max |score| 1.58)");
        }
    }
    // The golden agrees there is nothing to draw (AutoCircuit: 0 links, or a division by zero).
    assert_eq!(
        fixture("golden_draw_quickstart_3.5.json")["n_edge_links"],
        0
    );
    assert!(fixture("golden_draw_tokenwise_3.5.json")["error"]
        .as_str()
        .unwrap()
        .contains("ZeroDivisionError"));
}

#[test]
fn top_k_draws_the_k_largest() {
    for variant in ["quickstart", "tokenwise"] {
        let scores = golden_scores(variant);
        let r = render_svg(
            &scores,
            &RenderOptions {
                selection: Selection::Top(5),
                ..RenderOptions::default()
            },
        );
        let svg = read_svg(&r.svg);
        let drawn = counts(
            svg.panels
                .iter()
                .flat_map(|p| &p.edges)
                .map(|e| (e.src.clone(), e.dest.clone(), e.seq)),
        );
        let want = counts(
            scores
                .top(5)
                .iter()
                .map(|e| (e.src.clone(), e.dest.clone(), e.seq)),
        );
        assert_eq!(drawn, want, "{variant}");
        assert_eq!((r.n_selected, r.n_drawn), (5, 5));
        assert!(svg
            .captions
            .iter()
            .any(|c| c.contains("(top 5 by |score|)")));
    }
}

#[test]
fn without_layer_spacing_only_used_layers_get_columns() {
    let scores = golden_scores("tokenwise");
    let r = render_svg(
        &scores,
        &RenderOptions {
            layer_spacing: false,
            ..opts(0.5, Orientation::Horizontal)
        },
    );
    let svg = read_svg(&r.svg);
    let layers: std::collections::BTreeSet<usize> = svg
        .panels
        .iter()
        .flat_map(|p| p.nodes.iter().map(|n| n.layer))
        .collect();
    let xs: std::collections::BTreeSet<i64> = svg
        .panels
        .iter()
        .flat_map(|p| p.nodes.iter().map(|n| (n.rect[0] * 10.0) as i64))
        .collect();
    assert_eq!(xs.len(), layers.len());
    // With spacing every one of the 6 layers has a column even if a panel leaves it empty:
    // the "John" panel (layers 0, 1, 2, 3) sits in the same columns as the others.
    let spaced = read_svg(&render_svg(&scores, &opts(0.5, Orientation::Horizontal)).svg);
    let x_of =
        |p: &DrawnPanel, layer: usize| p.nodes.iter().find(|n| n.layer == layer).map(|n| n.rect[0]);
    assert_eq!(x_of(&spaced.panels[1], 3), x_of(&spaced.panels[0], 3));
}

#[test]
fn labels_with_markup_are_escaped() {
    let mut scores = golden_scores("tokenwise");
    let labels = scores.data.seq_labels.as_mut().unwrap();
    labels[2] = "<|endoftext|> & \"q\"".into();
    let r = render_svg(&scores, &opts(0.5, Orientation::Horizontal));
    let svg = read_svg(&r.svg);
    assert!(svg.panels[0]
        .title
        .as_deref()
        .unwrap()
        .starts_with("<|endoftext|> & \"q\""));
}
