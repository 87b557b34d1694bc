//! `attrib render` and `attrib report`: draw scores from a file (offline) or from a done job
//! (fetched from the coordinator) with attrib-render, and write SVG, PNG or HTML.

use std::path::Path;

use anyhow::Context;
use attrib_proto::{v1, write_file, FaithfulnessCurve, ScoresFile};
use attrib_render::{render_svg, report_html, svg_to_png, RenderOptions, ReportInput, Selection};

use crate::cli::{Cli, DrawArgs, RenderArgs, ReportArgs};
use crate::faithfulness::fetch_curve;
use crate::{connect, exit, fetch_scores, output, Client};

/// Edges drawn when neither --threshold nor --top is given: a readable picture at any scale.
const DEFAULT_TOP: usize = 50;

fn options(d: &DrawArgs) -> RenderOptions {
    RenderOptions {
        selection: match (d.threshold, d.top) {
            (Some(t), _) => Selection::Threshold(t),
            (None, k) => Selection::Top(k.unwrap_or(DEFAULT_TOP)),
        },
        orientation: d.orientation,
        layer_spacing: !d.no_layer_spacing,
        token_labels: d.token_labels,
        max_edges: d.max_edges,
    }
}

/// The input is a file when one exists at that path; otherwise it names a job.
enum Source {
    File(ScoresFile),
    Job {
        client: Box<Client>,
        id: String,
        scores: ScoresFile,
    },
}

async fn load(cli: &Cli, input: &str, dataset: Option<u32>) -> anyhow::Result<Source> {
    let path = Path::new(input);
    if path.exists() {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let scores: ScoresFile = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a scores file", path.display()))?;
        anyhow::ensure!(
            dataset.is_none(),
            "--dataset picks a dataset of a job; a scores file holds one"
        );
        return Ok(Source::File(scores));
    }
    // A missing file must not turn into a confusing "coordinator unreachable".
    if input.ends_with(".json") || input.contains('/') {
        anyhow::bail!("no scores file {input}");
    }
    let mut client = connect(cli).await?;
    let scores = fetch_scores(&mut client, input, dataset).await?;
    Ok(Source::Job {
        client: Box::new(client),
        id: input.to_string(),
        scores,
    })
}

pub async fn render(cli: &Cli, a: &RenderArgs) -> anyhow::Result<u8> {
    let scores = match load(cli, &a.input, a.draw.dataset).await? {
        Source::File(s) | Source::Job { scores: s, .. } => s,
    };
    let r = render_svg(&scores, &options(&a.draw));
    let png = a
        .out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if png {
        write_file(&a.out, &svg_to_png(&r.svg, a.scale)?)?;
    } else {
        write_file(&a.out, r.svg.as_bytes())?;
    }
    if let Some(note) = &r.note {
        eprintln!("[attrib] note: {note}");
    }
    if cli.json {
        println!(
            "{}",
            serde_json::json!({"out": a.out, "n_selected": r.n_selected, "n_drawn": r.n_drawn,
                "panels": r.panels, "note": r.note})
        );
    } else {
        println!(
            "{} of {} edges drawn in {} panel(s); written to {}",
            r.n_drawn,
            scores.n_edges,
            r.panels.len(),
            a.out.display()
        );
    }
    Ok(exit::OK)
}

pub async fn report(cli: &Cli, a: &ReportArgs) -> anyhow::Result<u8> {
    let mut facts = Vec::new();
    let mut curve: Option<FaithfulnessCurve> = match &a.curve {
        Some(p) => Some(
            serde_json::from_str(
                &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
            )
            .with_context(|| format!("{} is not a curve file", p.display()))?,
        ),
        None => None,
    };
    let (scores, title) = match load(cli, &a.input, a.draw.dataset).await? {
        Source::File(s) => {
            facts.push(("scores file".to_string(), a.input.clone()));
            (s, format!("attrib report: {}", a.input))
        }
        Source::Job {
            mut client,
            id,
            scores,
        } => {
            let status = client
                .get_job(v1::GetJobRequest { job_id: id.clone() })
                .await?
                .into_inner()
                .job;
            facts.push(("job".to_string(), id.clone()));
            if let Some(s) = &status {
                facts.push(("status".to_string(), output::status_line(s)));
                facts.push((
                    "compute seconds".to_string(),
                    format!("{:.1}", s.running_seconds),
                ));
            }
            if curve.is_none() {
                curve = match fetch_curve(&mut client, &id).await {
                    Ok(c) => Some(c),
                    // No faithfulness job yet: the report says how to make one.
                    Err(e) if exit::code_for(&e) == exit::NOT_FOUND => None,
                    Err(e) => return Err(e),
                };
            }
            (scores, format!("attrib report: job {id}"))
        }
    };
    let rendered = render_svg(&scores, &options(&a.draw));
    let html = report_html(&ReportInput {
        title,
        scores: &scores,
        rendered: &rendered,
        top_edges: a.top_edges,
        curve: curve.as_ref(),
        job: facts,
    });
    write_file(&a.out, html.as_bytes())?;
    if cli.json {
        println!(
            "{}",
            serde_json::json!({"out": a.out, "n_drawn": rendered.n_drawn, "curve": curve.is_some()})
        );
    } else {
        println!(
            "report ({} edges drawn{}) written to {}",
            rendered.n_drawn,
            if curve.is_some() {
                ", faithfulness curve"
            } else {
                ""
            },
            a.out.display()
        );
    }
    Ok(exit::OK)
}
