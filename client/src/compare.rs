//! `attrib compare`: judges attribution methods against a reference attribution (for example
//! EAP-IG's `exact` patching scores) with attrib-render's agreement numbers, and summarises
//! faithfulness curves as MIB's CPR / CMD. The numbers are cheap and computed here, on files
//! (whatever `attrib scores`, `attrib curve` or the EAP-IG golden fixtures left on disk) or
//! on done jobs' scores, fetched from the coordinator only when a job id is named.
//!
//! The scores files are read leniently (edges with an optional `seq`, any `settings`), because
//! the golden fixtures written by the Python reference scripts are not full `ScoresFile`s; the
//! edges are matched by name rather than by position, because files from different tools need
//! not list the edges in the same order.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use attrib_proto::settings::{AttributionSettings, Method};
use attrib_proto::{write_file, FaithfulnessCurve};
use attrib_render::agreement::{
    agreement_svg, agreement_table, aligned_table, edges_at_fraction, format_table,
    mib_faithfulness, table_cells, AgreementRow, MIB_FRACTIONS,
};
use attrib_render::{escape, page_start, XMLNS};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cli::{Cli, CompareArgs};
use crate::exit;
use crate::source::{classify, Input, Jobs};

/// One edge as every scores file names it: AutoCircuit's `src`, `dest` and token position.
type EdgeKey = (String, String, Option<usize>);

/// An edge of a scores file, read leniently: the EAP-IG golden fixtures have no `seq`.
#[derive(Deserialize)]
struct LooseEdge {
    src: String,
    dest: String,
    #[serde(default)]
    seq: Option<usize>,
    /// ACDC's never-removed edges are `"Infinity"`.
    #[serde(with = "attrib_proto::scores::score_json")]
    score: f64,
}

/// The part of a scores file `compare` needs. `settings` stays untyped because the golden
/// fixtures keep free-text settings there, not `AttributionSettings`.
#[derive(Deserialize)]
struct LooseScores {
    edges: Vec<LooseEdge>,
    #[serde(default)]
    settings: Value,
}

/// A loaded scores file, its edges in the file's own order.
struct Scores {
    name: String,
    path: PathBuf,
    edges: Vec<(EdgeKey, f64)>,
}

/// A method's scores put into the reference's edge order.
#[derive(Debug)]
struct Aligned {
    name: String,
    path: PathBuf,
    scores: Vec<f64>,
}

/// A curve with MIB's summary of it.
#[derive(Serialize)]
struct CurveSummary {
    method: String,
    path: PathBuf,
    total_edges: usize,
    cpr: f64,
    cmd: f64,
    per_point: Vec<CurvePointSummary>,
}

/// One (deduplicated) point of a curve as MIB sees it.
#[derive(Serialize)]
struct CurvePointSummary {
    n_edges: usize,
    /// x: the edges requested over all edges (MIB's fraction); `n_edges` were kept.
    fraction: f64,
    mean_logit_diff: f64,
    /// f: MIB's normalised faithfulness (the curve's `fraction_of_gap`).
    faithfulness: f64,
}

/// Everything `compare` reports, as `--json-out` and `--json` write it.
#[derive(Serialize)]
struct Report {
    reference: String,
    reference_path: PathBuf,
    n_edges: usize,
    ks: Vec<usize>,
    rows: Vec<AgreementRow>,
    faithfulness: Vec<CurveSummary>,
    /// The edge counts of MIB's fractions of `n_edges` (`attrib faithfulness --edges`).
    mib_edge_counts: Vec<usize>,
}

/// `attrib compare`: load, align, compute, print and write. Connects only to fetch jobs.
pub async fn run(cli: &Cli, a: &CompareArgs) -> anyhow::Result<u8> {
    let mut jobs = Jobs::new(cli);
    let reference = load_scores(&a.reference, &mut jobs).await?;
    let mut methods = Vec::with_capacity(a.scores.len());
    for arg in &a.scores {
        methods.push(load_scores(arg, &mut jobs).await?);
    }
    check_unique_names(std::iter::once(&reference).chain(&methods))?;
    let n = reference.edges.len();
    check_ks(&a.k, n)?;
    let (ref_scores, aligned) = align(&reference, &methods)?;

    let table_input: Vec<(String, Vec<f64>)> = aligned
        .iter()
        .map(|m| (m.name.clone(), m.scores.clone()))
        .collect();
    let rows = agreement_table(&reference.name, &ref_scores, &table_input, &a.k)
        .with_context(|| format!("comparing with the reference {}", reference.name))?;

    let curves = a
        .curve
        .iter()
        .map(|arg| load_curve(arg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for c in &curves {
        if c.total_edges != n {
            eprintln!(
                "[attrib] note: curve {} ({}) is over {} edges, the scores have {n}",
                c.method,
                c.path.display(),
                c.total_edges
            );
        }
    }

    let report = Report {
        reference: reference.name.clone(),
        reference_path: reference.path.clone(),
        n_edges: n,
        ks: a.k.clone(),
        rows,
        faithfulness: curves,
        mib_edge_counts: mib_edge_counts(n),
    };
    if let Some(out) = &a.html {
        write_file(out, html(&report, &aligned).as_bytes())?;
    }
    if let Some(out) = &a.json_out {
        write_file(out, serde_json::to_string_pretty(&report)?.as_bytes())?;
    }
    if cli.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", text(&report));
        for (what, out) in [("HTML", &a.html), ("JSON", &a.json_out)] {
            if let Some(out) = out {
                println!("{what} written to {}", out.display());
            }
        }
    }
    Ok(exit::OK)
}

/// `NAME=PATH` or `PATH`. A path that exists as given wins, so a file whose name holds `=`
/// is still read as a file.
fn split_name(arg: &str) -> (Option<String>, PathBuf) {
    if !Path::new(arg).exists() {
        if let Some((name, path)) = arg.split_once('=') {
            if !name.is_empty() {
                return (Some(name.to_string()), PathBuf::from(path));
            }
        }
    }
    (None, PathBuf::from(arg))
}

fn read(path: &Path, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {what} {}", path.display()))
}

/// Reads `[NAME=]PATH` as a scores file, or `[NAME=]JOB` as a done job's scores; rejects NaN
/// scores and repeated edges, which would make the ranks (and the alignment by name)
/// meaningless. ACDC's `"Infinity"` ranks first.
async fn load_scores(arg: &str, jobs: &mut Jobs<'_>) -> anyhow::Result<Scores> {
    let (name, path) = split_name(arg);
    let loose: LooseScores = match classify(&path.to_string_lossy())? {
        Input::File(path) => serde_json::from_str(&read(&path, "scores file")?)
            .with_context(|| format!("{} is not a scores file", path.display()))?,
        // The same JSON an `attrib scores` file holds, read the same lenient way.
        Input::Job(job) => serde_json::from_value(serde_json::to_value(jobs.scores(&job).await?)?)
            .with_context(|| format!("the scores of job {job}"))?,
    };
    let name = name.unwrap_or_else(|| default_name(&loose.settings, &path));
    let mut seen = HashSet::with_capacity(loose.edges.len());
    let mut edges = Vec::with_capacity(loose.edges.len());
    for e in loose.edges {
        let key = (e.src, e.dest, e.seq);
        if e.score.is_nan() {
            bail!(
                "{}: edge {} has score {}, expected a number",
                path.display(),
                edge_name(&key),
                e.score
            );
        }
        if !seen.insert(key.clone()) {
            bail!(
                "{} lists the edge {} twice",
                path.display(),
                edge_name(&key)
            );
        }
        edges.push((key, e.score));
    }
    if edges.is_empty() {
        bail!("{} has no edges", path.display());
    }
    Ok(Scores { name, path, edges })
}

/// The method that made the scores (`eap-ig-inputs (5 steps)`), so a table of `attrib scores`
/// files needs no names; files without a method (the golden fixtures) go by their file stem.
fn default_name(settings: &Value, path: &Path) -> String {
    if let Ok(s) = serde_json::from_value::<AttributionSettings>(settings.clone()) {
        return s.method.to_string();
    }
    if let Some(m) = settings
        .get("method")
        .and_then(|m| serde_json::from_value::<Method>(m.clone()).ok())
    {
        return m.to_string();
    }
    path.file_stem().map_or_else(
        || path.display().to_string(),
        |s| s.to_string_lossy().into(),
    )
}

/// Names label table rows, bars and JSON entries, so two inputs must not share one.
fn check_unique_names<'a>(all: impl Iterator<Item = &'a Scores>) -> anyhow::Result<()> {
    let mut seen: HashMap<&str, &Path> = HashMap::new();
    for s in all {
        if let Some(first) = seen.insert(&s.name, &s.path) {
            bail!(
                "two inputs are named {:?} ({} and {}): name them with NAME=FILE",
                s.name,
                first.display(),
                s.path.display()
            );
        }
    }
    Ok(())
}

/// ROC AUC needs positives and negatives: 1 <= k < edges. Checked up front so the message
/// names the flag rather than a method.
fn check_ks(ks: &[usize], n_edges: usize) -> anyhow::Result<()> {
    for &k in ks {
        if k == 0 || k >= n_edges {
            bail!(
                "--k {k}: the top k edges by |reference| are the AUC's positives, so k must be \
                 at least 1 and below the {n_edges} edges the scores have"
            );
        }
    }
    Ok(())
}

/// Every method's scores in the reference's edge order. All files must score exactly the
/// same edges: a missing or extra edge means different graphs (or settings), and comparing
/// them would silently compare different things.
fn align(reference: &Scores, methods: &[Scores]) -> anyhow::Result<(Vec<f64>, Vec<Aligned>)> {
    let index: HashMap<&EdgeKey, usize> = reference
        .edges
        .iter()
        .enumerate()
        .map(|(i, (k, _))| (k, i))
        .collect();
    let aligned = methods
        .iter()
        .map(|m| {
            let mut scores = vec![None; reference.edges.len()];
            for (key, score) in &m.edges {
                match index.get(key) {
                    Some(&i) => scores[i] = Some(*score),
                    None => bail!(
                        "{} has the edge {}, which the reference {} lacks: every file must \
                         score the same edges",
                        m.path.display(),
                        edge_name(key),
                        reference.path.display()
                    ),
                }
            }
            let scores = scores
                .iter()
                .zip(&reference.edges)
                .map(|(s, (key, _))| {
                    s.with_context(|| {
                        format!(
                            "{} lacks the edge {}, which the reference {} has: every file must \
                             score the same edges",
                            m.path.display(),
                            edge_name(key),
                            reference.path.display()
                        )
                    })
                })
                .collect::<anyhow::Result<Vec<f64>>>()?;
            Ok(Aligned {
                name: m.name.clone(),
                path: m.path.clone(),
                scores,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let ref_scores = reference.edges.iter().map(|(_, s)| *s).collect();
    Ok((ref_scores, aligned))
}

/// `src -> dest`, with ` @seq` for token-specific edges (as `attrib scores` prints them).
fn edge_name((src, dest, seq): &EdgeKey) -> String {
    match seq {
        Some(p) => format!("{src} -> {dest} @{p}"),
        None => format!("{src} -> {dest}"),
    }
}

/// Reads `[NAME=]PATH` as a faithfulness curve and computes MIB's CPR / CMD from its own
/// points as MIB does: x = the edges requested / total edges (MIB's fraction; ties can keep
/// more), the metric = the mean logit difference, normalised by the curve's clean (m(N)) and
/// corrupt (m(∅), the empty circuit under tree patching) runs, so f is the curve's
/// fraction_of_gap. The empty circuit is that normalisation's anchor, not a point of MIB's
/// curve (its fractions start at 0.1%), so it is left out. No point is invented: the area
/// spans what was measured.
fn load_curve(arg: &str) -> anyhow::Result<CurveSummary> {
    let (name, path) = split_name(arg);
    let curve: FaithfulnessCurve = serde_json::from_str(&read(&path, "curve file")?)
        .with_context(|| format!("{} is not a curve file", path.display()))?;
    let method = name.unwrap_or_else(|| {
        path.file_stem().map_or_else(
            || path.display().to_string(),
            |s| s.to_string_lossy().into(),
        )
    });
    let total = curve.total_edges;
    if total == 0 {
        bail!("curve {} has total_edges 0", path.display());
    }
    let mut points: Vec<_> = curve.points.iter().collect();
    if let Some(p) = points.iter().find(|p| p.n_edges > total) {
        bail!(
            "curve {} has a point with {} edges of a total of {total}",
            path.display(),
            p.n_edges
        );
    }
    points.retain(|p| p.requested_edges > 0);
    points.sort_by_key(|p| p.requested_edges);
    points.dedup_by_key(|p| p.requested_edges);
    let xy: Vec<(f64, f64)> = points
        .iter()
        .map(|p| {
            (
                p.requested_edges.min(total) as f64 / total as f64,
                p.mean_logit_diff,
            )
        })
        .collect();
    let f = mib_faithfulness(&xy, curve.clean_logit_diff, curve.corrupt_logit_diff)
        .with_context(|| format!("MIB faithfulness of curve {}", path.display()))?;
    let per_point = points
        .iter()
        .zip(&xy)
        .zip(&f.per_point)
        .map(|((p, &(x, m)), &fv)| CurvePointSummary {
            n_edges: p.n_edges,
            fraction: x,
            mean_logit_diff: m,
            faithfulness: fv,
        })
        .collect();
    Ok(CurveSummary {
        method,
        path,
        total_edges: total,
        cpr: f.cpr,
        cmd: f.cmd,
        per_point,
    })
}

/// The circuit sizes MIB evaluates for `n_edges` edges, in `attrib faithfulness --edges`
/// form: 0 dropped (attrib always adds the empty circuit) and repeats removed (small graphs
/// truncate several fractions to the same count).
fn mib_edge_counts(n_edges: usize) -> Vec<usize> {
    let mut counts: Vec<usize> = MIB_FRACTIONS
        .iter()
        .map(|&f| edges_at_fraction(n_edges, f))
        .filter(|&k| k > 0)
        .collect();
    counts.dedup();
    counts
}

fn join(xs: &[usize]) -> String {
    xs.iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The faithfulness table's cells: method, points, CPR, CMD.
fn faithfulness_cells(c: &CurveSummary) -> Vec<String> {
    vec![
        c.method.clone(),
        c.per_point.len().to_string(),
        format!("{:.3}", c.cpr),
        format!("{:.3}", c.cmd),
    ]
}

const FAITHFULNESS_HEADER: [&str; 4] = ["method", "points", "CPR", "CMD"];

/// What `attrib compare` prints without `--json`.
fn text(r: &Report) -> String {
    let mut out = format!(
        "{} edges; reference {} ({})\n",
        r.n_edges,
        r.reference,
        r.reference_path.display()
    );
    out += &format_table(&r.rows, &r.ks);
    if !r.faithfulness.is_empty() {
        out += "\nMIB faithfulness: x = edges requested / all edges, f = (m - corrupt) / (clean - corrupt); \
                CPR = area under f (higher is better), CMD = area under |1 - f| (lower is better)\n";
        let header: Vec<String> = FAITHFULNESS_HEADER.map(String::from).to_vec();
        let body: Vec<Vec<String>> = r.faithfulness.iter().map(faithfulness_cells).collect();
        out += &aligned_table(&header, &body);
    }
    let _ = writeln!(
        out,
        "\nhint: MIB evaluates circuits at {} of the edges; for {} edges: \
         attrib faithfulness JOB --edges {}",
        fractions_text(),
        r.n_edges,
        join(&r.mib_edge_counts)
    );
    out
}

/// `0.1%, 0.2%, …, 100%`.
fn fractions_text() -> String {
    MIB_FRACTIONS
        .iter()
        .map(|f| format!("{}%", f * 100.0))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An HTML table, every cell escaped; cells from column `numbers_from` on are numbers
/// (right-aligned).
fn html_table(
    h: &mut String,
    class: &str,
    header: &[String],
    body: &[Vec<String>],
    numbers_from: usize,
) {
    let _ = write!(h, "<table class=\"{class}\">\n<thead><tr>");
    for cell in header {
        let _ = write!(h, "<th>{}</th>", escape(cell));
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for cells in body {
        h.push_str("<tr>");
        for (i, cell) in cells.iter().enumerate() {
            let class = if i < numbers_from {
                ""
            } else {
                " class=\"num\""
            };
            let _ = write!(h, "<td{class}>{}</td>", escape(cell));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody>\n</table>\n");
}

/// One self-contained page (no scripts, styles or links from elsewhere): inputs, the
/// agreement table and bar chart, and the faithfulness table when curves were given.
fn html(r: &Report, methods: &[Aligned]) -> String {
    let mut h = page_start(&format!("attrib compare: agreement with {}", r.reference));

    h.push_str("<h2>Inputs</h2>\n");
    let header: Vec<String> = ["role", "name", "file"].map(String::from).to_vec();
    let mut body = vec![vec![
        "reference".to_string(),
        r.reference.clone(),
        r.reference_path.display().to_string(),
    ]];
    body.extend(methods.iter().map(|m| {
        vec![
            "method".into(),
            m.name.clone(),
            m.path.display().to_string(),
        ]
    }));
    body.extend(r.faithfulness.iter().map(|c| {
        vec![
            "curve".into(),
            c.method.clone(),
            c.path.display().to_string(),
        ]
    }));
    html_table(&mut h, "inputs", &header, &body, header.len());

    h.push_str("<h2>Agreement</h2>\n");
    let reference = escape(&r.reference);
    let _ = writeln!(
        h,
        "<p>{} edges. Spearman: rank correlation of |score| with |{reference}|. AUC@k: ROC AUC of \
         |score| with positives = the top k edges by |{reference}|. Magnitudes throughout: an edge \
         matters whichever way it pushes the metric.</p>",
        r.n_edges
    );
    let (header, body) = table_cells(&r.rows, &r.ks);
    html_table(&mut h, "agreement", &header, &body, 1);
    h.push_str("<div class=\"figure\">\n");
    h.push_str(&agreement_svg(&r.rows, &r.ks).replacen(XMLNS, "", 1));
    h.push_str("</div>\n");

    h.push_str("<h2>Faithfulness</h2>\n");
    if r.faithfulness.is_empty() {
        h.push_str("<p class=\"hint\">No faithfulness curve was given.</p>\n");
    } else {
        h.push_str(
            "<p>MIB's normalised faithfulness f = (m &minus; corrupt) / (clean &minus; corrupt) \
             against x = edges requested / all edges, over each curve's own points (the empty \
             circuit is the normalisation's anchor, not a point). CPR: area under f \
             (higher is better). CMD: area under |1 &minus; f| (lower is better).</p>\n",
        );
        let header: Vec<String> = FAITHFULNESS_HEADER.map(String::from).to_vec();
        let body: Vec<Vec<String>> = r.faithfulness.iter().map(faithfulness_cells).collect();
        html_table(&mut h, "faithfulness", &header, &body, 1);
    }
    let _ = writeln!(
        h,
        "<p class=\"hint\">MIB evaluates circuits at {} of the edges: <code>attrib faithfulness JOB \
         --edges {}</code></p>",
        fractions_text(),
        join(&r.mib_edge_counts)
    );
    h.push_str("</body>\n</html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(name: &str, edges: &[(&str, f64)]) -> Scores {
        Scores {
            name: name.into(),
            path: PathBuf::from(format!("{name}.json")),
            edges: edges
                .iter()
                .map(|&(d, s)| (("Resid Start".to_string(), d.to_string(), None), s))
                .collect(),
        }
    }

    #[test]
    fn align_follows_the_reference_order() {
        let r = scores("ref", &[("a", 1.0), ("b", 2.0), ("c", 3.0)]);
        let m = scores("m", &[("c", 30.0), ("a", 10.0), ("b", 20.0)]);
        let (ref_scores, aligned) = align(&r, &[m]).unwrap();
        assert_eq!(ref_scores, [1.0, 2.0, 3.0]);
        assert_eq!(aligned[0].scores, [10.0, 20.0, 30.0]);
    }

    #[test]
    fn align_names_missing_and_extra_edges() {
        let r = scores("ref", &[("a", 1.0), ("b", 2.0)]);
        let missing = align(&r, &[scores("m", &[("a", 1.0)])]).unwrap_err();
        assert!(
            format!("{missing:#}").contains("m.json lacks the edge Resid Start -> b"),
            "{missing:#}"
        );
        let extra = align(&r, &[scores("m", &[("a", 1.0), ("b", 1.0), ("z", 1.0)])]).unwrap_err();
        assert!(
            format!("{extra:#}").contains("m.json has the edge Resid Start -> z"),
            "{extra:#}"
        );
    }

    #[test]
    fn names_come_from_the_method_then_the_stem() {
        let stem = default_name(
            &serde_json::json!({"library": "EAP-IG"}),
            Path::new("x/golden_eapig_exact.json"),
        );
        assert_eq!(stem, "golden_eapig_exact");
        let ig = default_name(
            &serde_json::json!({"method": {"eap_ig_inputs": {"steps": 5}}}),
            Path::new("s.json"),
        );
        assert_eq!(ig, "eap-ig-inputs (5 steps)");
        let eap = default_name(&serde_json::json!({"method": "eap"}), Path::new("s.json"));
        assert_eq!(eap, "eap");
    }

    #[test]
    fn name_split_prefers_existing_files() {
        assert_eq!(
            split_name("EAP=/no/such/x.json"),
            (Some("EAP".into()), PathBuf::from("/no/such/x.json"))
        );
        assert_eq!(
            split_name("/no/such/x.json"),
            (None, "/no/such/x.json".into())
        );
        assert_eq!(split_name("=x.json"), (None, "=x.json".into()));
    }

    #[test]
    fn mib_counts_drop_zero_and_repeats() {
        assert_eq!(mib_edge_counts(110), [1, 2, 5, 11, 22, 55, 110]);
        assert_eq!(
            mib_edge_counts(32491),
            [32, 64, 162, 324, 649, 1624, 3249, 6498, 16245, 32491]
        );
    }

    #[test]
    fn ks_must_leave_positives_and_negatives() {
        assert!(check_ks(&[1, 109], 110).is_ok());
        for k in [0, 110, 500] {
            let e = check_ks(&[5, k], 110).unwrap_err().to_string();
            assert!(e.contains(&format!("--k {k}")) && e.contains("110"), "{e}");
        }
    }

    #[test]
    fn escape_covers_markup() {
        assert_eq!(escape("a<b & \"c\"'"), "a&lt;b &amp; &quot;c&quot;&#39;");
    }
}
