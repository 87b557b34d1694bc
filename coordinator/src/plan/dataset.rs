//! One dataset of a job: its prompt files parsed, merged, tokenized and batched, cut into
//! units.

use std::path::Path;

use attrib_datasets::{prepare, DatasetOptions, PromptFile};
use attrib_proto::units::unit_ranges;
use attrib_proto::{v1, Method};

use super::{PlannedDataset, Split};
use crate::model::ModelInfo;
use crate::{Error, Result};

/// Dataset `i` of a request: its files parsed, merged, tokenized and batched, and its units
/// of `k` batches (ACDC: its first train batch only).
pub(super) fn plan_dataset(
    i: usize,
    spec: &v1::DatasetSpec,
    model: &ModelInfo,
    opts: &DatasetOptions,
    split: Split,
    method: &Method,
    k: usize,
) -> Result<PlannedDataset> {
    let name = match (spec.name.as_str(), spec.files.first()) {
        ("", Some(f)) => f.name.clone(),
        ("", None) => format!("dataset {i}"),
        (n, _) => n.to_string(),
    };
    let in_dataset = |source| Error::Dataset {
        dataset: name.clone(),
        source,
    };
    let files = spec
        .files
        .iter()
        .map(|f| PromptFile::parse(&f.json, Path::new(&f.name)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(in_dataset)?;
    let merged = PromptFile::merge(files).map_err(in_dataset)?;
    let prepared = prepare(&merged, &model.tokenizer, opts).map_err(in_dataset)?;
    let (batches, prompts) = match split {
        Split::Train => (
            prepared.train_batches(opts.batch_size),
            prepared.train.len(),
        ),
        Split::Test => (prepared.test_batches(opts.batch_size), prepared.test.len()),
    };
    // ACDC runs on the first train batch only, as AutoCircuit's does (its circuits are
    // judged on every test batch).
    let used = match (split, method) {
        (Split::Train, Method::Acdc { .. }) => batches.len().min(1),
        _ => batches.len(),
    };
    Ok(PlannedDataset {
        prompts: (used * opts.batch_size).min(prompts) as u32,
        name,
        files: spec.files.iter().map(|f| f.name.clone()).collect(),
        width: prepared.width,
        seq_labels: prepared.seq_labels.clone(),
        units: unit_ranges(used, k),
        first_batch: 0,
        first_unit: 0,
        batches,
    })
}
