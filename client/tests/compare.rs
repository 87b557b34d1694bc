//! `attrib compare` end to end, through the built binary and with no coordinator: the trained
//! IOI model's agreement table from the EAP-IG golden fixtures, the refusals, the HTML page
//! and MIB's CPR / CMD of a hand-made curve.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

/// Nothing listens there: `compare` must never try to connect.
const NOWHERE: &str = "http://127.0.0.1:9";

fn fixture(variant: &str) -> String {
    format!(
        "{}/../tests/fixtures/ioi-2l4h64/golden_eapig_{variant}.json",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn attrib(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_attrib"))
        .args(args)
        .env("ATTRIB_COORDINATOR", NOWHERE)
        .env_remove("ATTRIB_TOKEN")
        .output()
        .expect("run attrib")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

use attrib_fuzz::zip_eq;

/// A fresh folder under the system temp dir, unique to this test and process.
fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("attrib-compare-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The four methods of the model's README table, named as it names them.
fn golden_methods() -> Vec<String> {
    [
        ("EAP", "eap"),
        ("clean-corrupted", "clean_corrupted"),
        ("EAP-IG-inputs", "eap_ig_inputs"),
        ("EAP-IG-activations", "eap_ig_activations"),
    ]
    .iter()
    .map(|(name, variant)| format!("{name}={}", fixture(variant)))
    .collect()
}

/// method, Spearman, AUC@5/10/20 as printed in the trained model's README.
const README: [(&str, [&str; 4]); 4] = [
    ("EAP", ["0.878", "0.714", "0.756", "0.873"]),
    ("clean-corrupted", ["0.916", "0.886", "0.926", "0.952"]),
    ("EAP-IG-inputs", ["0.949", "1.000", "0.975", "0.978"]),
    ("EAP-IG-activations", ["0.955", "0.975", "0.949", "0.964"]),
];

#[test]
fn golden_files_reproduce_the_readme_table() {
    let dir = temp_dir("golden");
    let json_out = dir.join("out/compare.json");
    let reference = fixture("exact");
    let mut args = vec!["compare", "--reference", &reference];
    let methods = golden_methods();
    args.extend(methods.iter().map(String::as_str));
    args.extend(["--json-out", json_out.to_str().unwrap()]);
    let o = attrib(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    println!("{text}");

    // The printed table, read cell by cell.
    for (method, want) in README {
        let cells: Vec<&str> = text
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|cells| cells.first() == Some(&method))
            .unwrap_or_else(|| panic!("no row {method} in\n{text}"))[1..]
            .to_vec();
        assert_eq!(cells, want, "row {method}");
    }
    assert!(
        text.contains("golden_eapig_exact"),
        "reference named by its stem"
    );
    assert!(
        text.contains("--edges 1,2,5,11,22,55,110"),
        "MIB's fractions of 110 edges:\n{text}"
    );

    // The same numbers in the JSON file.
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json_out).unwrap()).unwrap();
    assert_eq!(report["reference"], "golden_eapig_exact");
    assert_eq!(report["n_edges"], 110);
    assert_eq!(report["ks"], json!([5, 10, 20]));
    let rows = report["rows"].as_array().unwrap();
    for (row, (method, want)) in zip_eq(rows, README, "report rows and README rows") {
        assert_eq!(row["method"], method);
        let mut got = vec![&row["spearman"]];
        got.extend(row["auc"].as_array().unwrap());
        for (g, w) in zip_eq(got, want, "Spearman and AUCs") {
            let (g, w) = (g.as_f64().unwrap(), w.parse::<f64>().unwrap());
            assert!((g - w).abs() <= 0.0005, "{method}: {g} vs README {w}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_global_json_flag_prints_the_report() {
    let reference = fixture("exact");
    let eap = fixture("eap");
    let o = attrib(&[
        "--json",
        "compare",
        "--reference",
        &reference,
        &eap,
        "--k",
        "3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: Value = serde_json::from_str(&stdout(&o)).expect("one JSON object on stdout");
    assert_eq!(report["ks"], json!([3]));
    // Golden files carry no method, so the file stem names them.
    assert_eq!(report["rows"][0]["method"], "golden_eapig_eap");
}

fn write_json(path: &Path, v: &Value) {
    std::fs::write(path, serde_json::to_string(v).unwrap()).unwrap();
}

#[test]
fn mismatched_edges_a_large_k_and_missing_files_are_refused() {
    let dir = temp_dir("refusals");
    let reference = fixture("exact");

    // A method file missing one edge (and the rest in reverse order: order does not matter).
    let mut eap: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("eap")).unwrap()).unwrap();
    let edges = eap["edges"].as_array_mut().unwrap();
    edges.reverse();
    let dropped = edges.remove(7);
    let short = dir.join("short.json");
    write_json(&short, &eap);
    let o = attrib(&[
        "compare",
        "--reference",
        &reference,
        short.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert_ne!(o.status.code(), Some(0));
    let err = stderr(&o);
    let edge = format!(
        "{} -> {}",
        dropped["src"].as_str().unwrap(),
        dropped["dest"].as_str().unwrap()
    );
    assert!(
        err.contains(&edge) && err.contains("short.json"),
        "names {edge} and the file: {err}"
    );
    assert!(err.starts_with("error: "), "{err}");

    // The reversed but complete file is fine.
    edges_push_back(&mut eap, dropped);
    let reversed = dir.join("reversed.json");
    write_json(&reversed, &eap);
    let o = attrib(&[
        "compare",
        "--reference",
        &reference,
        reversed.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("0.878"), "{}", stdout(&o));

    // k larger than the edge count.
    let o = attrib(&[
        "compare",
        "--reference",
        &reference,
        reversed.to_str().unwrap(),
        "--k",
        "5,500",
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("500") && err.contains("110"), "{err}");

    // A file that is not there.
    let missing = dir.join("no-such-scores.json");
    let named = format!("EAP={}", missing.display());
    let o = attrib(&["compare", "--reference", &reference, &named]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains(missing.to_str().unwrap()), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn edges_push_back(scores: &mut Value, edge: Value) {
    scores["edges"].as_array_mut().unwrap().push(edge);
}

#[test]
fn html_page_and_curve_summary() {
    let dir = temp_dir("html");
    let html = dir.join("compare.html");
    // clean 3, corrupt 1; requested 11, 20 (22 kept: a tie), 22, 110 of 110 edges (and the
    // empty circuit, MIB's anchor, not a point), so x = 0.1, 2/11, 0.2, 1 and
    // f = 0.5, 0.75, 0.75, 1.
    let point = |requested: usize, kept: usize, m: f64| {
        json!({"requested_edges": requested, "n_edges": kept, "threshold": null,
               "mean_logit_diff": m, "fraction_of_gap": (m - 1.0) / 2.0})
    };
    let curve = json!({
        "scores_from": "job-000001", "split": "test", "patch": "tree (resample from corrupt)",
        "n_prompts": 16, "total_edges": 110, "clean_logit_diff": 3.0, "corrupt_logit_diff": 1.0,
        // Out of order on purpose, with a repeated circuit.
        "points": [point(110, 110, 3.0), point(0, 0, 1.0), point(20, 22, 2.5),
                   point(11, 11, 2.0), point(22, 22, 2.5)],
    });
    let curve_path = dir.join("curve.json");
    write_json(&curve_path, &curve);
    let curve_arg = format!("EAP <b>={}", curve_path.display());
    let reference = fixture("exact");
    let mut args = vec!["compare", "--reference", &reference];
    let methods = golden_methods();
    args.extend(methods.iter().map(String::as_str));
    args.extend(["--curve", &curve_arg, "--html", html.to_str().unwrap()]);
    let o = attrib(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    println!("{text}");

    // CPR: (0.9/11)·(0.5 + 0.75)/2 + (0.2/11)·0.75 + 0.8·(0.75 + 1)/2
    // CMD: (0.9/11)·(0.5 + 0.25)/2 + (0.2/11)·0.25 + 0.8·(0.25 + 0)/2
    let cpr = 0.9 / 11.0 * 0.625 + 0.2 / 11.0 * 0.75 + 0.7;
    let cmd = 0.9 / 11.0 * 0.375 + 0.2 / 11.0 * 0.25 + 0.1;
    let row: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("EAP <b>"))
        .unwrap_or_else(|| panic!("no curve row in\n{text}"))
        .split_whitespace()
        .collect();
    // method (two words here), points, CPR, CMD; 3 decimals, so within half a unit of the last.
    assert_eq!(row[2], "4", "four circuits requested: {row:?}");
    let printed: Vec<f64> = row[3..].iter().map(|x| x.parse().unwrap()).collect();
    assert!((printed[0] - cpr).abs() <= 0.0005 + 1e-12, "{row:?}");
    assert!((printed[1] - cmd).abs() <= 0.0005 + 1e-12, "{row:?}");

    // The exact numbers, through the JSON report.
    let o = attrib(&[
        "--json",
        "compare",
        "--reference",
        &reference,
        &methods[0],
        "--curve",
        &curve_arg,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let f = &report["faithfulness"][0];
    assert_eq!(f["method"], "EAP <b>");
    assert!((f["cpr"].as_f64().unwrap() - cpr).abs() < 1e-12, "{f}");
    assert!((f["cmd"].as_f64().unwrap() - cmd).abs() < 1e-12, "{f}");
    let fractions: Vec<f64> = f["per_point"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["fraction"].as_f64().unwrap())
        .collect();
    let want = [11.0 / 110.0, 20.0 / 110.0, 22.0 / 110.0, 1.0];
    assert!(
        fractions.len() == 4
            && fractions
                .iter()
                .zip(want)
                .all(|(a, b)| (a - b).abs() < 1e-12),
        "{fractions:?}"
    );

    // The page: self-contained, the chart inline, every name there and escaped.
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg"), "inline chart");
    for (method, _) in README {
        assert!(page.contains(method), "{method} missing from the page");
    }
    assert!(page.contains("golden_eapig_exact"));
    assert!(page.contains("EAP &lt;b&gt;") && !page.contains("EAP <b>"));
    assert!(!page.contains("http://") && !page.contains("https://"));
    let _ = std::fs::remove_dir_all(&dir);
}
