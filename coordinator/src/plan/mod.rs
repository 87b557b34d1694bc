//! From a submitted job to its work units: parse and validate every dataset, tokenize and
//! batch it exactly as `attrib-worker attribute` does, cut each dataset's batches into units
//! of K consecutive batches and number the units across datasets. A faithfulness job
//! re-plans its attribution job's datasets and takes their test batches, one work unit per
//! K test batches and group of circuits.
//! Pure: no I/O, no state; the same request always gives the same plan (a restarted
//! coordinator re-plans stored jobs and must find the same units).

use std::ops::Range;

use attrib_datasets::{Batch, DatasetOptions};
use attrib_proto::faithfulness::{circuits, edge_counts, logarithmic_counts, Circuit};
use attrib_proto::memory::{self, UnitShape};
use attrib_proto::units::{Accumulator, FoldError};
use attrib_proto::{
    v1, AttributionSettings, DataSettings, GraphShape, Method, ModelRecord, Reduced, ScoresMetadata,
};

mod dataset;

use dataset::plan_dataset;

use crate::model::ModelInfo;
use crate::{Error, Result};

/// Most datasets one job may hold (all 45 IOI template files fit many times over).
pub const MAX_DATASETS: usize = 1024;

/// Edges one exact-patching unit measures unless the request says otherwise: at GPT-2-small
/// shape with K = 1 and batches of 16, two forward passes of 32 edges.
pub const DEFAULT_EDGES_PER_UNIT: usize = 64;

#[derive(Debug, Clone)]
pub struct PlannedDataset {
    pub name: String,
    pub files: Vec<String>,
    pub width: usize,
    pub seq_labels: Option<Vec<String>>,
    /// Train batches, or a faithfulness job's test batches.
    pub batches: Vec<Batch>,
    /// Job-wide index of this dataset's first batch.
    pub first_batch: u32,
    /// Job-wide index of this dataset's first unit.
    pub first_unit: u32,
    /// Its batches cut into units of K (times the circuit groups of a faithfulness job).
    pub units: Vec<Range<usize>>,
    /// Distinct prompts the job uses from this dataset.
    pub prompts: u32,
}

impl PlannedDataset {
    /// Units of this dataset (a faithfulness job repeats each batch range per circuit group).
    pub fn n_units(&self, groups: usize) -> u32 {
        (self.units.len() * groups) as u32
    }
}

/// Where a unit is: its dataset, the batches it covers there, and for a faithfulness job
/// its group of circuits (for an exact-patching job, its group of edges).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitRef {
    pub dataset: usize,
    pub batches: Range<usize>,
    pub group: Option<usize>,
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
    /// K: batches per unit.
    pub batches_per_unit: usize,
    /// `Some` for a faithfulness job.
    pub circuits: Option<CircuitPlan>,
    /// Edges per unit, `Some` for an exact-patching job.
    pub edges_per_unit: Option<usize>,
    /// Bytes a worker needs for the largest unit, model included (`attrib_proto::memory`).
    pub unit_memory: u64,
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
    if let Some(d) = p.datasets.iter().find(|d| d.batches.is_empty()) {
        return Err(Error::InvalidRequest {
            field: "faithfulness",
            reason: format!(
                "dataset {:?} has no full test batch: test size {} < batch size {}",
                d.name, p.data.test_size, p.data.batch_size
            ),
        });
    }
    p.circuits = Some(circuit_plan);
    p.edges_per_unit = None; // circuits of an exact-patching job's scores are not edge groups
    p.number_units();
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
    let opts = DatasetOptions::for_job(&data, model.config.n_ctx, settings.token_positions);
    let k = (data.batches_per_unit.max(1)) as usize;
    if data.edges_per_unit != 0 && settings.method != Method::Exact {
        return Err(Error::InvalidRequest {
            field: "data.edges_per_unit",
            reason: format!(
                "edges per unit cut exact patching's units; method {} takes none",
                settings.method.name()
            ),
        });
    }
    let datasets = req
        .datasets
        .iter()
        .enumerate()
        .map(|(i, spec)| plan_dataset(i, spec, model, &opts, split, &settings.method, k))
        .collect::<Result<Vec<_>>>()?;
    if matches!(settings.method, Method::Acdc { .. }) && datasets.len() > 1 {
        return Err(Error::InvalidRequest {
            field: "datasets",
            reason: format!(
                "ACDC runs on one dataset's first batch, and this job has {}: submit one dataset (merged files count as one)",
                datasets.len()
            ),
        });
    }
    let graph_of = |d: &PlannedDataset| {
        GraphShape::new(
            model.config.n_layers,
            model.config.n_heads,
            &settings,
            d.width,
        )
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
    let edges_per_unit = (settings.method == Method::Exact)
        .then(|| exact_edges_per_unit(&datasets, opts.batch_size, data.edges_per_unit));
    let mut p = JobPlan {
        settings,
        data,
        datasets,
        graph,
        pad_id: model.tokenizer.bos_id(),
        batches_per_unit: k,
        circuits: None,
        edges_per_unit,
        unit_memory: 0,
    };
    p.unit_memory = unit_memory(&p, model, opts.batch_size);
    p.number_units();
    Ok(p)
}

/// Exact patching's edges per unit: edge groups are whole passes of every dataset (so a
/// unit's passes are the ones a single process runs), rounded up from the request (0: the
/// default).
fn exact_edges_per_unit(datasets: &[PlannedDataset], batch_size: usize, asked: u32) -> usize {
    let pass = datasets
        .iter()
        .flat_map(|d| {
            d.units
                .iter()
                .map(|u| memory::exact_edges_per_pass(u.len() * batch_size, d.width))
        })
        .max()
        .unwrap_or(1);
    let asked = match asked {
        0 => DEFAULT_EDGES_PER_UNIT,
        e => e as usize,
    };
    asked.div_ceil(pass) * pass
}

/// The most memory one of the plan's units needs on a worker: its batches (the units'
/// largest; one batch for ACDC) at the dataset's width.
fn unit_memory(p: &JobPlan, model: &ModelInfo, batch_size: usize) -> u64 {
    p.datasets
        .iter()
        .map(|d| {
            let batches = d.units.iter().map(|u| u.len()).max().unwrap_or(0);
            let unit = UnitShape::new(batches * batch_size, d.width, p.settings.points);
            memory::worker_bytes(&model.config, &p.graph, &unit)
        })
        .max()
        .unwrap_or(0)
}

impl JobPlan {
    /// Circuit, edge or τ groups per batch range (1 for gradient attribution).
    fn groups(&self) -> usize {
        match (&self.circuits, self.edges_per_unit) {
            (Some(c), _) => c.groups(),
            (None, Some(e)) => self.graph.n_edges().div_ceil(e),
            (None, None) => self.settings.method.taus().len().max(1),
        }
    }

    /// Whether a batch range's units split one computation over its prompts (edge or τ
    /// groups), so that only the range's first unit counts the prompts.
    fn groups_share_prompts(&self) -> bool {
        self.circuits.is_none()
            && (self.edges_per_unit.is_some() || !self.settings.method.taus().is_empty())
    }

    /// Flat edge indices of exact-patching group `g`.
    fn edge_group(&self, g: usize) -> Option<Range<usize>> {
        let e = self.edges_per_unit?;
        Some(g * e..((g + 1) * e).min(self.graph.n_edges()))
    }

    /// Numbers batches and units across datasets, in dataset order.
    fn number_units(&mut self) {
        let groups = self.groups();
        let (mut batch, mut unit) = (0u32, 0u32);
        for d in &mut self.datasets {
            d.first_batch = batch;
            d.first_unit = unit;
            batch += d.batches.len() as u32;
            unit += d.n_units(groups);
        }
    }

    /// About how many bytes the job's state and results take in the database: its running
    /// accumulators (an i128 per slot) and its f64 scores (combined and per dataset).
    pub fn stored_bytes(&self) -> u64 {
        let (slots, scores) = match &self.circuits {
            Some(c) => (c.circuits.len() + 2, 0),
            None => {
                let n = self.datasets.len();
                let per_edge = self.settings.method.slots_per_edge();
                (
                    n * (self.graph.n_edges() * per_edge + 1),
                    (n + 1) * self.graph.n_edges(),
                )
            }
        };
        (16 * slots + 8 * scores) as u64
    }

    pub fn n_units(&self) -> u32 {
        let groups = self.groups();
        self.datasets.iter().map(|d| d.n_units(groups)).sum()
    }

    /// Where job-wide unit `unit` is.
    pub fn unit(&self, unit: u32) -> Option<UnitRef> {
        let groups = self.groups();
        self.datasets.iter().enumerate().find_map(|(i, d)| {
            let local = unit.checked_sub(d.first_unit)? as usize;
            let batches = d.units.get(local / groups)?.clone();
            Some(UnitRef {
                dataset: i,
                batches,
                group: (self.circuits.is_some() || self.groups_share_prompts())
                    .then_some(local % groups),
            })
        })
    }

    /// Prompts a unit adds to the job's progress (a test batch counts once, not per group).
    /// Exact-patching and ACDC units send their prompts' clean differences only from group 0
    /// (`exact_scores`, `acdc_unit` in the worker), so that each prompt counts once.
    pub fn unit_prompts(&self, unit: u32) -> u32 {
        match self.unit(unit) {
            Some(UnitRef { group: Some(g), .. }) if g > 0 => 0,
            Some(u) => (u.batches.len() * self.data.batch_size as usize) as u32,
            None => 0,
        }
    }

    /// Fresh running sums: one accumulator per dataset (attribution), or one for the job's
    /// circuits (faithfulness).
    pub fn new_sums(&self) -> Vec<Accumulator> {
        match &self.circuits {
            Some(c) => vec![Accumulator::circuits(c.circuits.len())],
            None => (0..self.datasets.len())
                .map(|_| {
                    let slots = self.graph.n_edges() * self.settings.method.slots_per_edge();
                    Accumulator::attribution(slots)
                })
                .collect(),
        }
    }

    /// Folds unit `unit`'s result into `sums` (from `new_sums`); returns the accumulator it
    /// changed. All or nothing: a refused result changes no sum.
    pub fn fold(
        &self,
        sums: &mut [Accumulator],
        unit: u32,
        r: &v1::UnitResult,
    ) -> Result<usize, FoldError> {
        let u = self.unit(unit).expect("folded units belong to the plan");
        // Exact patching and ACDC: only a batch range's first unit counts its prompts.
        let expected_prompts = match self.groups_share_prompts() {
            true => self.unit_prompts(unit) as usize,
            false => u.batches.len() * self.data.batch_size as usize,
        };
        if r.clean_logit_diffs.len() != expected_prompts {
            return Err(FoldError::Length {
                what: "clean logit differences (one per prompt)",
                got: r.clean_logit_diffs.len(),
                expected: expected_prompts,
            });
        }
        match (&self.circuits, u.group) {
            (Some(c), Some(g)) => sums[0].fold_circuits(c.group(g), r).map(|_| 0),
            _ => sums[u.dataset].fold_attribution(r).map(|_| u.dataset),
        }
    }

    /// Folds a node group's sum over `units`: distinct attribution units of one dataset,
    /// whose prompts the sum counts exactly. Returns the dataset's index.
    pub fn fold_group(
        &self,
        sums: &mut [Accumulator],
        units: &[u32],
        group: &Accumulator,
    ) -> Result<usize, FoldError> {
        let bad = |why: String| Err(FoldError::Group(why));
        if self.circuits.is_some() {
            return bad("a faithfulness job's units are answered one by one".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut dataset = None;
        let mut prompts = 0u64;
        for &unit in units {
            let Some(u) = self.unit(unit) else {
                return bad(format!("unit {unit} of a job of {}", self.n_units()));
            };
            if !seen.insert(unit) {
                return bad(format!("unit {unit} named twice"));
            }
            if *dataset.get_or_insert(u.dataset) != u.dataset {
                return bad("its units are of more than one dataset".into());
            }
            prompts += self.unit_prompts(unit) as u64;
        }
        let Some(d) = dataset else {
            return bad("it names no unit".into());
        };
        if group.sums.len() != sums[d].sums.len() || group.n_prompts != prompts {
            return bad(format!(
                "{} slots and {} prompts, expected {} and {prompts}",
                group.sums.len(),
                group.n_prompts,
                sums[d].sums.len()
            ));
        }
        sums[d].absorb(group);
        Ok(d)
    }

    /// Unit `unit` as a worker gets it; a faithfulness unit carries the score vector only
    /// when `with_scores` (the worker keeps it between units of the job).
    pub fn assignment(
        &self,
        job_id: &str,
        unit: u32,
        with_scores: bool,
    ) -> Option<v1::UnitAssignment> {
        let u = self.unit(unit)?;
        let d = &self.datasets[u.dataset];
        let batches = &d.batches[u.batches.clone()];
        let edges = u.group.and_then(|g| self.edge_group(g)).unwrap_or(0..0);
        let circuits = self.circuits.as_ref().map(|c| v1::CircuitEval {
            scores: if with_scores {
                c.scores.clone()
            } else {
                Vec::new()
            },
            circuits: c.circuits[c.group(u.group.expect("a faithfulness unit's group"))]
                .iter()
                .map(|k| v1::CircuitThreshold {
                    min_abs_score: k.threshold,
                })
                .collect(),
        });
        let flat = |side: fn(&Batch) -> &Vec<i64>| {
            batches
                .iter()
                .flat_map(|b| side(b).iter().copied())
                .collect()
        };
        let ids = |side: fn(&Batch) -> &Vec<Vec<i64>>| {
            batches
                .iter()
                .flat_map(|b| side(b).iter())
                .map(|ids| v1::TokenIds { ids: ids.clone() })
                .collect()
        };
        Some(v1::UnitAssignment {
            job_id: job_id.to_string(),
            unit,
            settings: Some((&self.settings).into()),
            batch_size: self.data.batch_size,
            width: d.width as u32,
            clean: flat(|b| &b.clean),
            corrupt: flat(|b| &b.corrupt),
            answers: ids(|b| &b.answers),
            wrong_answers: ids(|b| &b.wrong_answers),
            pad_id: self.pad_id,
            prepend_bos: self.data.prepend_bos,
            circuits,
            first_batch: d.first_batch + u.batches.start as u32,
            dataset: u.dataset as u32,
            first_edge: edges.start as u32,
            end_edge: edges.end as u32,
            tau: match (&self.settings.method, &self.circuits) {
                (Method::Acdc { .. }, None) => u.group.unwrap_or(0) as u32,
                _ => 0,
            },
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
        let data = DataSettings::new(
            &self.data,
            chosen.iter().flat_map(|d| d.files.clone()).collect(),
            chosen.iter().map(|d| d.width).max().unwrap_or(0),
            chosen[0].seq_labels.clone(),
        );
        let model = ModelRecord::new(&model.dir, &model.config);
        ScoresMetadata::new(&self.graph, r, &self.settings, data, model)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;

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
                batches_per_unit: 1,
                edges_per_unit: 0,
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
            device_class: String::new(),
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
    fn units_are_numbered_across_datasets() {
        let m = tiny_model();
        let p = plan(&request(4, 16, false, &[ioi_text(), ioi_text()]), &m).unwrap();
        assert_eq!(p.n_units(), 8);
        assert_eq!(
            (p.datasets[1].first_unit, p.datasets[1].first_batch),
            (4, 4)
        );
        let u = p.unit(5).unwrap();
        assert_eq!((u.dataset, u.batches, u.group), (1, 1..2, None));
        assert!(p.unit(8).is_none());
        let a = p.assignment("j", 5, false).unwrap();
        assert_eq!(a.clean.len(), (a.batch_size * a.width) as usize);
        assert_eq!((a.pad_id, a.first_batch), (50256, 5));
        assert_eq!(p.datasets[0].name, "f0.json");
    }

    #[test]
    fn units_hold_k_consecutive_batches_of_one_dataset() {
        let m = tiny_model();
        let mut req = request(4, 16, false, &[ioi_text(), ioi_text()]);
        req.data.as_mut().unwrap().batches_per_unit = 3;
        let p = plan(&req, &m).unwrap();
        // 4 batches per dataset: units of 3 and 1, never across datasets.
        assert_eq!(p.n_units(), 4);
        assert_eq!(p.unit(1).unwrap().batches, 3..4);
        assert_eq!(
            p.unit(2).unwrap(),
            UnitRef {
                dataset: 1,
                batches: 0..3,
                group: None
            }
        );
        assert_eq!((p.unit_prompts(2), p.unit_prompts(3)), (12, 4));
        let a = p.assignment("j", 2, false).unwrap();
        assert_eq!(a.clean.len(), (3 * a.batch_size * a.width) as usize);
        assert_eq!((a.answers.len(), a.first_batch), (12, 4));
        // The three batches, in order, are the K = 1 plan's batches 4, 5 and 6.
        let one = plan(&request(4, 16, false, &[ioi_text(), ioi_text()]), &m).unwrap();
        let joined: Vec<i64> = (4..7)
            .flat_map(|u| one.assignment("j", u, false).unwrap().clean)
            .collect();
        assert_eq!(a.clean, joined);
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
        assert_eq!(p.n_units(), 4);
        assert_eq!(p.datasets[0].prompts, 8);
        let u = p.unit(3).unwrap();
        assert_eq!((u.dataset, u.batches, u.group), (0, 1..2, Some(1)));
        assert_eq!((p.unit_prompts(0), p.unit_prompts(1)), (4, 0));
        let a = p.assignment("f", 1, true).unwrap();
        let c = a.circuits.unwrap();
        assert_eq!(c.scores.len(), graph.n_edges());
        let t: Vec<Option<f64>> = c.circuits.iter().map(|t| t.min_abs_score).collect();
        assert_eq!(t, vec![Some(100.0), Some(0.0)]); // k = 10: the 10th largest of 0..110
        let again = p.assignment("f", 1, false).unwrap().circuits.unwrap();
        assert!(
            again.scores.is_empty(),
            "the worker keeps the scores of a job"
        );
        // The unit's prompts are test prompts, not train prompts.
        let train = plan(&source, &m).unwrap();
        assert_ne!(a.clean, train.assignment("t", 0, false).unwrap().clean);
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
