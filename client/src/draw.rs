//! `attrib render` and `attrib report`: draw scores from a file (offline) or from a done job
//! (fetched from the coordinator) with attrib-render, and write SVG, PNG or HTML.

use std::path::Path;

use anyhow::Context;
use attrib_proto::{v1, write_file, FaithfulnessCurve, ScoresFile};
use attrib_render::{render_svg, report_html, svg_to_png, RenderOptions, ReportInput, Selection};

use crate::cli::{Cli, DrawArgs, RenderArgs, ReportArgs};
use crate::exit::BadValue;
use crate::faithfulness::fetch_curve;
use crate::scores::fetch_scores;
use crate::source::{classify, Input};
use crate::{connect, exit, output, Client};

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
    if let Input::File(path) = classify(input)? {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let scores: ScoresFile = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a scores file", path.display()))?;
        anyhow::ensure!(
            dataset.is_none(),
            "--dataset picks a dataset of a job; a scores file holds one"
        );
        return Ok(Source::File(scores));
    }
    let mut client = connect(cli).await?;
    let scores = fetch_scores(&mut client, input, dataset).await?;
    Ok(Source::Job {
        client: Box::new(client),
        id: input.to_string(),
        scores,
    })
}

/// What `attrib render` can write, chosen by the output's extension.
#[derive(Debug, PartialEq)]
enum Format {
    Svg,
    Png,
}

/// The format `out`'s extension names; any other is refused before any work is done, so
/// that `--out x.pdf` never holds SVG.
fn format_of(out: &Path) -> Result<Format, BadValue> {
    let ext = out.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext.to_ascii_lowercase().as_str() {
        "svg" => Ok(Format::Svg),
        "png" => Ok(Format::Png),
        _ => Err(BadValue(format!(
            "--out {}: attrib render writes .svg or .png, chosen by the extension",
            out.display()
        ))),
    }
}

pub async fn render(cli: &Cli, a: &RenderArgs) -> anyhow::Result<u8> {
    let format = format_of(&a.out)?;
    let scores = match load(cli, &a.input, a.draw.dataset).await? {
        Source::File(s) | Source::Job { scores: s, .. } => s,
    };
    let r = render_svg(&scores, &options(&a.draw));
    match format {
        Format::Png => write_file(&a.out, &svg_to_png(&r.svg, a.scale)?)?,
        Format::Svg => write_file(&a.out, r.svg.as_bytes())?,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extension_picks_the_format_or_is_refused() {
        assert_eq!(format_of(Path::new("a/c.svg")).unwrap(), Format::Svg);
        assert_eq!(format_of(Path::new("c.PNG")).unwrap(), Format::Png);
        for bad in ["x.pdf", "circuit", "x.svg.gz"] {
            let e = format_of(Path::new(bad)).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains(".svg or .png"), "{e}");
        }
    }
}
