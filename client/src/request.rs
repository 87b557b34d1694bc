//! Builds a SubmitJob request from files on disk and the command-line settings.

use std::path::Path;

use anyhow::Context;
use attrib_proto::convert::dataset_specs;
use attrib_proto::v1;

use crate::cli::SubmitArgs;

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
    })
}

fn read_file(p: &Path) -> anyhow::Result<v1::PromptFileText> {
    let json = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    Ok(v1::PromptFileText {
        name: p.display().to_string(),
        json,
    })
}
