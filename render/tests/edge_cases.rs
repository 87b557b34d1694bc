//! Inputs AutoCircuit never sees but attrib may: no edges, zero/infinite/NaN scores, names it
//! does not know, a zero cap. The picture is always valid SVG and says what it shows.

mod common;

use attrib_proto::EdgeScore;
use attrib_render::{render_svg, Cap, RenderOptions, Selection};
use common::*;

fn with_edges(edges: Vec<(&str, &str, f64)>) -> attrib_proto::ScoresFile {
    let mut s = golden_scores("quickstart");
    s.edges = edges
        .into_iter()
        .map(|(src, dest, score)| EdgeScore {
            src: src.into(),
            dest: dest.into(),
            seq: None,
            score,
        })
        .collect();
    s.n_edges = s.edges.len();
    s
}

fn all(threshold: f64) -> RenderOptions {
    RenderOptions {
        selection: Selection::Threshold(threshold),
        ..RenderOptions::default()
    }
}

#[test]
fn no_edges_at_all() {
    let r = render_svg(&with_edges(vec![]), &all(0.0));
    assert_eq!(r.n_drawn, 0);
    assert!(r.note.unwrap().contains("no (finite) scores"));
    read_svg(&r.svg);
}

#[test]
fn zero_infinite_and_nan_scores() {
    let s = with_edges(vec![
        ("Resid Start", "A0.0.Q", 0.0),
        ("A0.0", "Resid End", f64::INFINITY),
        ("A0.1", "Resid End", f64::NAN),
        ("A0.2", "MLP 1", -0.5),
    ]);
    let r = render_svg(&s, &all(0.0));
    // NaN is never drawn; zero is (threshold 0), in AutoCircuit's grey.
    assert_eq!((r.n_selected, r.n_drawn), (3, 3));
    let svg = read_svg(&r.svg);
    let edges: Vec<&DrawnEdge> = svg.panels.iter().flat_map(|p| &p.edges).collect();
    let zero = edges.iter().find(|e| e.score == 0.0).unwrap();
    assert_eq!((zero.color.as_str(), zero.width), ("rgba(0,0,0,0.1)", 0.0));
    let inf = edges.iter().find(|e| e.score.is_infinite()).unwrap();
    let half = edges.iter().find(|e| e.score == -0.5).unwrap();
    assert!(inf.width.is_finite() && inf.width >= half.width);
    assert!(!r.svg.contains("NaN"));
}

#[test]
fn unknown_names_are_drawn_in_the_last_layer() {
    let s = with_edges(vec![
        ("Resid Start", "Mystery", 1.0),
        ("A1.3", "Mystery", 0.5),
    ]);
    let r = render_svg(&s, &all(0.1));
    let svg = read_svg(&r.svg);
    let node = svg.panels[0]
        .nodes
        .iter()
        .find(|n| n.name == "Mystery")
        .unwrap();
    assert_eq!(node.layer, 5);
}

#[test]
fn a_zero_cap_draws_nothing_and_says_so() {
    let s = golden_scores("quickstart");
    let r = render_svg(
        &s,
        &RenderOptions {
            max_edges: 0,
            ..all(0.5)
        },
    );
    assert_eq!(
        r.capped,
        Some(Cap {
            selected: 15,
            drawn: 0
        })
    );
    assert!(r.note.unwrap().contains("max_edges = 0"));
    read_svg(&r.svg);
}

#[test]
fn ties_at_the_cap_keep_file_order() {
    let s = with_edges(vec![
        ("Resid Start", "A0.0.Q", 1.0),
        ("Resid Start", "A0.1.Q", -1.0),
        ("Resid Start", "A0.2.Q", 1.0),
        ("Resid Start", "A0.3.Q", 2.0),
    ]);
    let r = render_svg(
        &s,
        &RenderOptions {
            selection: Selection::Top(2),
            ..RenderOptions::default()
        },
    );
    let svg = read_svg(&r.svg);
    let mut dests: Vec<String> = svg.panels[0].edges.iter().map(|e| e.dest.clone()).collect();
    dests.sort();
    assert_eq!(dests, vec!["A0.0.Q", "A0.3.Q"]);
    let capped = render_svg(
        &s,
        &RenderOptions {
            max_edges: 3,
            ..all(0.0)
        },
    );
    let svg = read_svg(&capped.svg);
    let mut dests: Vec<String> = svg.panels[0].edges.iter().map(|e| e.dest.clone()).collect();
    dests.sort();
    assert_eq!(dests, vec!["A0.0.Q", "A0.1.Q", "A0.3.Q"]);
    assert!(capped
        .note
        .unwrap()
        .contains("4 edges pass |score| >= 0; only the 3 largest"));
}
