//! `attrib scores`: fetch a done job's scores, checked chunk by chunk, and write them to a
//! file or to standard output.

use std::io::Write;

use anyhow::Context;
use attrib_proto::{v1, write_json_file, GraphShape, ScoresFile, ScoresMetadata};

use crate::cli::ScoresArgs;
use crate::{exit, Client};

pub async fn run(client: &mut Client, a: &ScoresArgs, json: bool) -> anyhow::Result<u8> {
    let file = fetch_scores(client, &a.job, a.dataset).await?;
    let Some(out) = &a.out else {
        // Standard output is the scores file itself, so the summary goes to stderr.
        let mut w = std::io::BufWriter::new(std::io::stdout().lock());
        serde_json::to_writer(&mut w, &file).context("writing the scores to standard output")?;
        writeln!(w).and_then(|()| w.flush())?;
        if !json {
            eprint!("{}", file.summary(a.top));
        }
        return Ok(exit::OK);
    };
    write_json_file(&file, out)?;
    if json {
        println!(
            "{}",
            serde_json::json!({"out": out, "n_edges": file.n_edges, "clean_logit_diff": file.clean_logit_diff})
        );
        return Ok(exit::OK);
    }
    print!("{}", file.summary(a.top));
    println!("scores written to {}", out.display());
    Ok(exit::OK)
}

/// Reads the header and every chunk, checking that the chunks tile the vector.
pub async fn fetch_scores(
    client: &mut Client,
    job: &str,
    dataset: Option<u32>,
) -> anyhow::Result<ScoresFile> {
    let req = v1::GetScoresRequest {
        job_id: job.to_string(),
        dataset,
        chunk_size: 0,
    };
    let mut stream = client.get_scores(req).await?.into_inner();
    let mut header = None;
    let mut values: Vec<f64> = Vec::new();
    while let Some(msg) = stream.message().await? {
        match msg.part {
            Some(v1::get_scores_response::Part::Header(h)) => {
                values.reserve(h.n_edges as usize);
                header = Some(h);
            }
            Some(v1::get_scores_response::Part::Chunk(c)) => {
                anyhow::ensure!(
                    c.offset as usize == values.len(),
                    "scores chunk out of order"
                );
                values.extend(c.scores);
            }
            None => {}
        }
    }
    let h = header.context("the coordinator sent no scores header")?;
    let graph: GraphShape = h
        .graph
        .as_ref()
        .context("scores header without a graph")?
        .into();
    anyhow::ensure!(
        values.len() == h.n_edges as usize && values.len() == graph.n_edges(),
        "got {} scores for a graph of {} edges",
        values.len(),
        graph.n_edges()
    );
    let meta: ScoresMetadata = serde_json::from_str(&h.metadata_json).context("scores metadata")?;
    Ok(ScoresFile::from_parts(meta, &graph, &values))
}
