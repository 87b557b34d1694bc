//! Builds a SubmitJob request from files on disk and the command-line settings.

use std::path::Path;

use anyhow::Context;
use attrib_proto::convert::dataset_specs;
use attrib_proto::{v1, AttributionSettings, MaskPoints, Method};

use crate::cli::{JobArgs, SubmitArgs};

pub fn submit_request(a: &SubmitArgs) -> anyhow::Result<v1::SubmitJobRequest> {
    let files = a
        .datasets
        .iter()
        .map(|p| read_file(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(v1::SubmitJobRequest {
        datasets: dataset_specs(files, a.merge),
        data: Some(data_options(&a.job)),
        settings: Some((&settings(&a.job)?).into()),
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

fn data_options(j: &JobArgs) -> v1::DataOptions {
    v1::DataOptions {
        batch_size: j.batch_size,
        train_size: j.train_size,
        test_size: j.test_size,
        prepend_bos: !j.no_prepend_bos,
        seed: j.seed,
        batches_per_unit: j.batches_per_unit.max(1),
        edges_per_unit: j.edges_per_unit,
    }
}

fn settings(j: &JobArgs) -> anyhow::Result<AttributionSettings> {
    let s = AttributionSettings {
        method: Method::from_name(&j.method, j.steps, j.taus.clone())?,
        grad_function: j.grad_function,
        answer_function: j.answer_function,
        points: MaskPoints::from_options(j.mask_val, j.integrated_grad_samples)?,
        separate_qkv: !j.no_separate_qkv,
        token_positions: j.token_positions,
    };
    s.check()?;
    Ok(s)
}
