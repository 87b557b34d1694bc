//! From a submitted job to its batches: parse and validate every dataset, tokenize and batch
//! it exactly as `attrib-worker attribute` does, and number the batches across datasets.
//! Pure: no I/O, no state; the same request always gives the same plan (a restarted
//! coordinator re-plans stored jobs and must find the same batches).

use std::path::Path;

use attrib_datasets::{prepare, Batch, DatasetOptions, PromptFile};
use attrib_proto::{
    v1, AttributionSettings, DataSettings, GraphShape, ModelRecord, Reduced, ScoresMetadata,
};

use crate::model::ModelInfo;
use crate::{Error, Result};

/// Most datasets one job may hold (all 45 IOI template files fit many times over).
pub const MAX_DATASETS: usize = 1024;

#[derive(Debug, Clone)]
pub struct PlannedDataset {
    pub name: String,
    pub files: Vec<String>,
    pub width: usize,
    pub seq_labels: Option<Vec<String>>,
    /// Job-wide index of this dataset's first batch.
    pub first_batch: u32,
    pub batches: Vec<Batch>,
}

#[derive(Debug, Clone)]
pub struct JobPlan {
    pub settings: AttributionSettings,
    pub data: v1::DataOptions,
    pub datasets: Vec<PlannedDataset>,
    /// One graph for every dataset, so that scores can be combined.
    pub graph: GraphShape,
    pub pad_id: i64,
}

pub fn plan(req: &v1::SubmitJobRequest, model: &ModelInfo) -> Result<JobPlan> {
    let settings = AttributionSettings::try_from(
        req.settings
            .as_ref()
            .ok_or(attrib_proto::convert::WireError::Missing { field: "settings" })?,
    )?;
    let data = req
        .data
        .ok_or(attrib_proto::convert::WireError::Missing { field: "data" })?;
    if req.datasets.is_empty() || req.datasets.len() > MAX_DATASETS {
        return Err(Error::InvalidRequest {
            field: "datasets",
            reason: format!(
                "give 1 to {MAX_DATASETS} datasets, not {}",
                req.datasets.len()
            ),
        });
    }
    let opts = DatasetOptions {
        batch_size: data.batch_size as usize,
        train_size: data.train_size as usize,
        test_size: data.test_size as usize,
        prepend_bos: data.prepend_bos,
        shuffle: true,
        seed: data.seed,
        n_ctx: model.config.n_ctx,
        token_positions: settings.token_positions,
    };
    let mut datasets = Vec::with_capacity(req.datasets.len());
    let mut first_batch = 0u32;
    for (i, spec) in req.datasets.iter().enumerate() {
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
        let prepared = prepare(&merged, &model.tokenizer, &opts).map_err(in_dataset)?;
        let batches = prepared.train_batches(opts.batch_size);
        datasets.push(PlannedDataset {
            name: name.clone(),
            files: spec.files.iter().map(|f| f.name.clone()).collect(),
            width: prepared.width,
            seq_labels: prepared.seq_labels.clone(),
            first_batch,
            batches,
        });
        first_batch += datasets.last().map_or(0, |d| d.batches.len() as u32);
    }
    let graph_of = |d: &PlannedDataset| GraphShape {
        n_layers: model.config.n_layers,
        n_heads: model.config.n_heads,
        separate_qkv: settings.separate_qkv,
        seq_len: settings.token_positions.then_some(d.width),
    };
    let graph = graph_of(&datasets[0]);
    if let Some(d) = datasets.iter().find(|d| graph_of(d) != graph) {
        return Err(Error::InvalidRequest {
            field: "datasets",
            reason: format!(
                "token-specific graphs need one prompt width per job: {:?} is {} tokens wide, {:?} {}; submit them as separate jobs",
                datasets[0].name, datasets[0].width, d.name, d.width
            ),
        });
    }
    Ok(JobPlan {
        settings,
        data,
        datasets,
        graph,
        pad_id: model.tokenizer.bos_id(),
    })
}

impl JobPlan {
    pub fn n_batches(&self) -> u32 {
        self.datasets.iter().map(|d| d.batches.len() as u32).sum()
    }

    /// The dataset holding job-wide batch `batch`, and the batch.
    pub fn locate(&self, batch: u32) -> Option<(usize, &Batch)> {
        self.datasets.iter().enumerate().find_map(|(i, d)| {
            let local = batch.checked_sub(d.first_batch)? as usize;
            d.batches.get(local).map(|b| (i, b))
        })
    }

    pub fn assignment(&self, job_id: &str, batch: u32) -> Option<v1::BatchAssignment> {
        let (_, b) = self.locate(batch)?;
        let ids = |v: &Vec<Vec<i64>>| {
            v.iter()
                .map(|ids| v1::TokenIds { ids: ids.clone() })
                .collect()
        };
        Some(v1::BatchAssignment {
            job_id: job_id.to_string(),
            batch,
            settings: Some((&self.settings).into()),
            batch_size: b.batch_size as u32,
            width: b.width as u32,
            clean: b.clean.clone(),
            corrupt: b.corrupt.clone(),
            answers: ids(&b.answers),
            wrong_answers: ids(&b.wrong_answers),
            pad_id: self.pad_id,
            prepend_bos: self.data.prepend_bos,
        })
    }

    /// Metadata of one dataset's scores (`Some(i)`) or of all datasets combined (`None`:
    /// every file, the widest width, the first dataset's labels).
    pub fn metadata(
        &self,
        dataset: Option<usize>,
        model: &ModelInfo,
        r: &Reduced,
    ) -> ScoresMetadata {
        let chosen: Vec<&PlannedDataset> = match dataset {
            Some(i) => vec![&self.datasets[i]],
            None => self.datasets.iter().collect(),
        };
        ScoresMetadata {
            n_edges: self.graph.n_edges(),
            clean_logit_diff: r.clean_logit_diff,
            settings: self.settings,
            data: DataSettings {
                files: chosen.iter().flat_map(|d| d.files.clone()).collect(),
                batch_size: self.data.batch_size as usize,
                train_size: self.data.train_size as usize,
                test_size: self.data.test_size as usize,
                prepend_bos: self.data.prepend_bos,
                seed: self.data.seed,
                width: chosen.iter().map(|d| d.width).max().unwrap_or(0),
                seq_labels: chosen[0].seq_labels.clone(),
            },
            model: ModelRecord {
                path: model.dir.display().to_string(),
                n_layers: model.config.n_layers,
                n_heads: model.config.n_heads,
                d_model: model.config.d_model,
            },
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn tiny_model() -> ModelInfo {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/golden-tiny");
        ModelInfo::load(&dir).expect("golden tiny model")
    }

    pub fn ioi_text() -> String {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../datasets/ioi/ioi_vanilla_template_prompts.json");
        std::fs::read_to_string(p).unwrap()
    }

    pub fn request(
        batch_size: u32,
        train_size: u32,
        token_positions: bool,
        texts: &[String],
    ) -> v1::SubmitJobRequest {
        v1::SubmitJobRequest {
            datasets: texts
                .iter()
                .enumerate()
                .map(|(i, t)| v1::DatasetSpec {
                    name: String::new(),
                    files: vec![v1::PromptFileText {
                        name: format!("f{i}.json"),
                        json: t.clone(),
                    }],
                })
                .collect(),
            data: Some(v1::DataOptions {
                batch_size,
                train_size,
                test_size: 0,
                prepend_bos: true,
                seed: 42,
            }),
            settings: Some(
                (&AttributionSettings {
                    token_positions,
                    ..Default::default()
                })
                    .into(),
            ),
            label: String::new(),
        }
    }

    /// Quickstart-like plan on the golden tiny model: 16 prompts in batches of `batch_size`.
    pub fn tiny_plan(batch_size: u32) -> JobPlan {
        plan(
            &request(batch_size, 16, false, &[ioi_text()]),
            &tiny_model(),
        )
        .unwrap()
    }

    #[test]
    fn batches_are_numbered_across_datasets() {
        let m = tiny_model();
        let p = plan(&request(4, 16, false, &[ioi_text(), ioi_text()]), &m).unwrap();
        assert_eq!(p.n_batches(), 8);
        assert_eq!(p.datasets[1].first_batch, 4);
        let (d, b) = p.locate(5).unwrap();
        assert_eq!((d, b.index), (1, 1));
        assert!(p.locate(8).is_none());
        let a = p.assignment("j", 5).unwrap();
        assert_eq!(a.clean.len(), (a.batch_size * a.width) as usize);
        assert_eq!(a.pad_id, 50256);
        assert_eq!(p.datasets[0].name, "f0.json");
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let m = tiny_model();
        let e = plan(&request(4, 16, false, &["{\"prompts\": 3}".into()]), &m).unwrap_err();
        assert!(matches!(e, Error::Dataset { .. }), "{e}");
        assert!(e.to_string().contains("f0.json"), "{e}");
        let e = plan(&request(4, 16, false, &[]), &m).unwrap_err();
        assert!(e.to_string().contains("datasets"), "{e}");
        let mut r = request(4, 16, false, &[ioi_text()]);
        r.settings = None;
        assert!(plan(&r, &m)
            .unwrap_err()
            .to_string()
            .contains("settings is missing"));
        let e = plan(&request(0, 16, false, &[ioi_text()]), &m).unwrap_err();
        assert!(e.to_string().contains("batch size"), "{e}");
    }
}
