//! `attrib faithfulness` and `attrib curve`: queue circuit evaluation of a done attribution
//! job on the workers, follow it, and write the curve the coordinator reduced.

use anyhow::Context;
use attrib_proto::{v1, write_json_file, FaithfulnessCurve};

use crate::cli::FaithfulnessArgs;

use crate::{exit, follow, Client};

pub async fn run(client: &mut Client, a: &FaithfulnessArgs, json: bool) -> anyhow::Result<u8> {
    let req = v1::SubmitJobRequest {
        label: a.label.clone(),
        faithfulness: Some(v1::FaithfulnessSpec {
            scores_job_id: a.job.clone(),
            edge_counts: a.edges.clone(),
            circuits_per_unit: a.circuits_per_unit,
            dataset: a.dataset,
        }),
        device_class: a.device_class.clone().unwrap_or_default(),
        ..Default::default()
    };
    let r = client.submit_job(req).await?.into_inner();
    if a.detach {
        println!("{}", r.job_id);
        return Ok(exit::OK);
    }
    eprintln!(
        "[attrib] submitted {} ({} units: test batches x circuit groups)",
        r.job_id, r.units_total
    );
    let code = follow(client, &r.job_id, false).await?;
    if code != exit::OK {
        return Ok(code);
    }
    curve(client, &r.job_id, &a.out, json).await
}

/// Fetches the curve of `job` and writes it to `out`.
pub async fn curve(
    client: &mut Client,
    job: &str,
    out: &std::path::Path,
    json: bool,
) -> anyhow::Result<u8> {
    let c = fetch_curve(client, job).await?;
    write_json_file(&c, out)?;
    if json {
        println!("{}", serde_json::json!({"out": out, "curve": c}));
        return Ok(exit::OK);
    }
    print!("{c}");
    println!("curve written to {}", out.display());
    Ok(exit::OK)
}

pub async fn fetch_curve(client: &mut Client, job: &str) -> anyhow::Result<FaithfulnessCurve> {
    let r = client
        .get_faithfulness(v1::GetFaithfulnessRequest {
            job_id: job.to_string(),
        })
        .await?
        .into_inner();
    serde_json::from_str(&r.curve_json).with_context(|| format!("curve of {}", r.job_id))
}
