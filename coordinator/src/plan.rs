//! From a submitted job to its batches: parse and validate every dataset, tokenize and batch
//! it exactly as `attrib-worker attribute` does, and number the batches across datasets.
//! A faithfulness job re-plans its attribution job's datasets and takes their test batches,
//! one work unit per test batch and group of circuits.
//! Pure: no I/O, no state; the same request always gives the same plan (a restarted
//! coordinator re-plans stored jobs and must find the same batches).

use std::path::Path;

use attrib_datasets::{prepare, Batch, DatasetOptions, PromptFile};
use attrib_proto::faithfulness::{circuits, edge_counts, logarithmic_counts, Circuit};
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
    /// Job-wide index of this dataset's first batch (work unit).
    pub first_batch: u32,
    /// One entry per work unit: a train batch, or for a faithfulness job a test batch once
    /// per group of circuits.
    pub batches: Vec<Batch>,
    /// Distinct prompts the job uses from this dataset.
    pub prompts: u32,
}

/// What a faithfulness job evaluates.
#[derive(Debug, Clone)]
pub struct CircuitPlan {
    pub scores_job: String,
    /// The attribution job's scores, flat in graph order.
    pub scores: Vec<f64>,
    pub circuits: Vec<Circuit>,
    pub per_unit: usize,
}

impl CircuitPlan {
    /// Groups of circuits, i.e. work units per test batch.
    pub fn groups(&self) -> usize {
        self.circuits.len().div_ceil(self.per_unit)
    }

    /// Circuit indices of group `g`.
    pub fn group(&self, g: usize) -> std::ops::Range<usize> {
        g * self.per_unit..((g + 1) * self.per_unit).min(self.circuits.len())
    }
}

/// Circuits one faithfulness unit evaluates unless the request says otherwise.
pub const DEFAULT_CIRCUITS_PER_UNIT: usize = 8;

#[derive(Debug, Clone)]
pub struct JobPlan {
    pub settings: AttributionSettings,
    pub data: v1::DataOptions,
    pub datasets: Vec<PlannedDataset>,
    /// One graph for every dataset, so that scores can be combined.
    pub graph: GraphShape,
    pub pad_id: i64,
    /// `Some` for a faithfulness job.
    pub circuits: Option<CircuitPlan>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Split {
    Train,
    Test,
}

/// Plans an attribution job.
pub fn plan(req: &v1::SubmitJobRequest, model: &ModelInfo) -> Result<JobPlan> {
    if req.faithfulness.is_some() {
        return Err(Error::InvalidRequest {
            field: "faithfulness",
            reason: "a faithfulness job is planned from its attribution job".into(),
        });
    }
    plan_split(req, model, Split::Train)
}

/// Plans a faithfulness job: `source` is the attribution job's request, `scores` its scores
/// (combined, or of the requested dataset) on `graph`.
pub fn plan_faithfulness(
    req: &v1::SubmitJobRequest,
    source: &v1::SubmitJobRequest,
    scores: &[f64],
    graph: GraphShape,
    model: &ModelInfo,
) -> Result<JobPlan> {
    let spec = req.faithfulness.as_ref().expect("a faithfulness request");
    if !req.datasets.is_empty() || req.data.is_some() || req.settings.is_some() {
        return Err(Error::InvalidRequest {
            field: "faithfulness",
            reason: "give datasets, data and settings to the attribution job, not here".into(),
        });
    }
    let mut p = plan_split(source, model, Split::Test)?;
    if p.graph != graph || scores.len() != graph.n_edges() {
        return Err(Error::InvalidRequest {
            field: "faithfulness.scores_job_id",
            reason: "the stored scores do not fit the job's graph".into(),
        });
    }
    if let Some(i) = spec.dataset {
        let n = p.datasets.len();
        if i as usize >= n {
            return Err(Error::NoSuchDataset {
                job: spec.scores_job_id.clone(),
                index: i,
                n,
            });
        }
        p.datasets = vec![p.datasets.swap_remove(i as usize)];
    }
    let requested: Vec<usize> = if spec.edge_counts.is_empty() {
        logarithmic_counts(scores.len())
    } else {
        spec.edge_counts.iter().map(|&k| k as usize).collect()
    };
    let circuit_plan = CircuitPlan {
        scores_job: spec.scores_job_id.clone(),
        scores: scores.to_vec(),
        circuits: circuits(scores, &edge_counts(&requested, scores.len())),
        per_unit: match spec.circuits_per_unit {
            0 => DEFAULT_CIRCUITS_PER_UNIT,
            n => n as usize,
        },
    };
    let groups = circuit_plan.groups();
    let mut first_batch = 0u32;
    for d in &mut p.datasets {
        if d.batches.is_empty() {
            return Err(Error::InvalidRequest {
                field: "faithfulness",
                reason: format!(
                    "dataset {:?} has no full test batch: test size {} < batch size {}",
                    d.name, p.data.test_size, p.data.batch_size
                ),
            });
        }
        d.batches = d
            .batches
            .iter()
            .flat_map(|b| std::iter::repeat_n(b.clone(), groups))
            .collect();
        d.first_batch = first_batch;
        first_batch += d.batches.len() as u32;
    }
    p.circuits = Some(circuit_plan);
    Ok(p)
}

fn plan_split(req: &v1::SubmitJobRequest, model: &ModelInfo, split: Split) -> Result<JobPlan> {
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
        let (batches, prompts) = match split {
            Split::Train => (
                prepared.train_batches(opts.batch_size),
                prepared.train.len(),
            ),
            Split::Test => (prepared.test_batches(opts.batch_size), prepared.test.len()),
        };
        datasets.push(PlannedDataset {
            prompts: (batches.len() * opts.batch_size).min(prompts) as u32,
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
        circuits: None,
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

    /// For a faithfulness job: the test batch of unit `unit` (dataset, batch within the
    /// dataset's test split) and its group of circuits.
    pub fn unit(&self, unit: u32) -> Option<(usize, usize, usize)> {
        let c = self.circuits.as_ref()?;
        let (d, _) = self.locate(unit)?;
        let local = (unit - self.datasets[d].first_batch) as usize;
        Some((d, local / c.groups(), local % c.groups()))
    }

    /// Length of a unit's result vector.
    pub fn result_len(&self, unit: u32) -> usize {
        match (&self.circuits, self.unit(unit)) {
            (Some(c), Some((_, _, g))) => c.group(g).len() + 1,
            _ => self.graph.n_edges(),
        }
    }

    /// Prompts a unit adds to the job's progress (a test batch counts once, not per group).
    pub fn unit_prompts(&self, unit: u32, n_prompts: u32) -> u32 {
        match self.unit(unit) {
            Some((_, _, g)) if g > 0 => 0,
            _ => n_prompts,
        }
    }

    pub fn assignment(&self, job_id: &str, batch: u32) -> Option<v1::BatchAssignment> {
        let (_, b) = self.locate(batch)?;
        let circuits = self.circuits.as_ref().map(|c| {
            let (_, _, g) = self.unit(batch).expect("units of a faithfulness plan");
            v1::CircuitEval {
                scores: c.scores.clone(),
                circuits: c.circuits[c.group(g)]
                    .iter()
                    .map(|k| v1::CircuitThreshold {
                        min_abs_score: k.threshold,
                    })
                    .collect(),
            }
        });
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
            circuits,
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
            faithfulness: None,
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

    pub fn faithfulness_request(job: &str, counts: &[u64], per_unit: u32) -> v1::SubmitJobRequest {
        v1::SubmitJobRequest {
            faithfulness: Some(v1::FaithfulnessSpec {
                scores_job_id: job.into(),
                edge_counts: counts.to_vec(),
                circuits_per_unit: per_unit,
                dataset: None,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn faithfulness_units_are_test_batches_times_circuit_groups() {
        let m = tiny_model();
        let mut source = request(4, 16, false, &[ioi_text()]);
        source.data.as_mut().unwrap().test_size = 8;
        let graph = plan(&source, &m).unwrap().graph;
        let scores: Vec<f64> = (0..graph.n_edges()).map(|i| i as f64).collect();
        let req = faithfulness_request("job-1", &[1, 5, 10], 3);
        let p = plan_faithfulness(&req, &source, &scores, graph, &m).unwrap();
        // circuits 0, 1, 5, 10, 110 in groups of 3: 2 groups; 2 test batches of 4.
        assert_eq!(p.n_batches(), 4);
        assert_eq!(p.datasets[0].prompts, 8);
        assert_eq!(p.unit(3), Some((0, 1, 1)));
        assert_eq!((p.result_len(0), p.result_len(1)), (4, 3));
        assert_eq!((p.unit_prompts(0, 4), p.unit_prompts(1, 4)), (4, 0));
        let a = p.assignment("f", 1).unwrap();
        let c = a.circuits.unwrap();
        assert_eq!(c.scores.len(), graph.n_edges());
        let t: Vec<Option<f64>> = c.circuits.iter().map(|t| t.min_abs_score).collect();
        assert_eq!(t, vec![Some(100.0), Some(0.0)]); // k = 10: the 10th largest of 0..110
                                                     // The unit's prompts are test prompts, not train prompts.
        let train = plan(&source, &m).unwrap();
        assert_ne!(a.clean, train.assignment("t", 0).unwrap().clean);
        // Requests that cannot be planned say why.
        let e = plan_faithfulness(&req, &source, &scores[1..], graph, &m).unwrap_err();
        assert!(e.to_string().contains("do not fit"), "{e}");
        source.data.as_mut().unwrap().test_size = 2;
        let e = plan_faithfulness(&req, &source, &scores, graph, &m).unwrap_err();
        assert!(e.to_string().contains("no full test batch"), "{e}");
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
