//! Builds a SubmitJob request from files on disk and the command-line settings.

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use attrib_proto::convert::dataset_specs;
use attrib_proto::memory::human_bytes;
use attrib_proto::v1;

use crate::cli::SubmitArgs;
use crate::exit::BadValue;

/// Largest prompt file `attrib submit` reads: the coordinator's default --max-request-mib
/// (64 MiB) refuses a bigger request anyway, and a size checked before reading keeps
/// `--dataset /dev/zero` from reading until memory runs out.
pub const MAX_DATASET_BYTES: u64 = 64 << 20;

pub fn submit_request(a: &SubmitArgs) -> anyhow::Result<v1::SubmitJobRequest> {
    let files = a
        .datasets
        .iter()
        .map(|p| read_file(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(v1::SubmitJobRequest {
        datasets: dataset_specs(files, a.merge),
        data: Some(v1::DataOptions {
            edges_per_unit: a.edges_per_unit,
            ..a.job.data_options()
        }),
        settings: Some((&a.job.settings()?).into()),
        label: a.label.clone(),
        faithfulness: None,
        device_class: a.device_class.clone().unwrap_or_default(),
    })
}

/// A prompt file's text, once it is known to be a regular file of a sendable size.
fn read_file(p: &Path) -> anyhow::Result<v1::PromptFileText> {
    let bad = |why: String| BadValue(format!("--dataset {}: {why}", p.display()));
    let meta = std::fs::metadata(p).map_err(|e| bad(e.to_string()))?;
    if !meta.is_file() {
        return Err(bad("not a regular file (a prompt file is AutoCircuit's JSON)".into()).into());
    }
    let too_big = |size: u64| {
        bad(format!(
            "{} is over the {} a prompt file may have (the coordinator's default --max-request-mib)",
            human_bytes(size),
            human_bytes(MAX_DATASET_BYTES)
        ))
    };
    if meta.len() > MAX_DATASET_BYTES {
        return Err(too_big(meta.len()).into());
    }
    // The file may grow after the check: read one byte past the limit at most.
    let mut json = String::new();
    std::fs::File::open(p)
        .and_then(|f| f.take(MAX_DATASET_BYTES + 1).read_to_string(&mut json))
        .with_context(|| format!("reading {}", p.display()))?;
    if json.len() as u64 > MAX_DATASET_BYTES {
        return Err(too_big(json.len() as u64).into());
    }
    Ok(v1::PromptFileText {
        name: p.display().to_string(),
        json,
    })
}
