//! What the coordinator's integration tests share: the tiny model, a valid request, a worker's
//! messages, and a coordinator on loopback with a job that a worker computed (`Setup`).
//! gRPC helpers are in `grpc`.
#![allow(dead_code)] // each test binary uses a part

pub mod grpc;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use attrib_coordinator::model::ModelInfo;
use attrib_coordinator::plan::JobPlan;
use attrib_coordinator::store::StoredScores;
use attrib_coordinator::{Coordinator, CoordinatorConfig, RunningCoordinator};
use attrib_fuzz::prompts::{repo, small_file};
use attrib_fuzz::runner::PanicWatch;
use attrib_proto::units::f32_le_bytes;
use attrib_proto::v1;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use tokio::runtime::Runtime;
use tonic::transport::Channel;

pub fn tiny_model_dir() -> PathBuf {
    repo().join("tests/fixtures/golden-tiny")
}

pub static MODEL: LazyLock<ModelInfo> =
    LazyLock::new(|| ModelInfo::load(&tiny_model_dir()).expect("golden tiny model"));

/// The identity a worker holding the tiny model announces.
pub fn identity() -> v1::ModelIdentity {
    MODEL.config.identity(MODEL.fingerprint.clone())
}

/// The device class of the tests' workers and results.
pub const CLASS: &str = "test-class";

pub fn hello(name: &str, units_in_flight: u32) -> v1::WorkerHello {
    v1::WorkerHello {
        protocol: attrib_proto::PROTOCOL_VERSION as i32,
        name: name.into(),
        device: "none".into(),
        device_class: CLASS.into(),
        model: Some(identity()),
        units_in_flight,
        ..Default::default()
    }
}

/// A valid request: the quickstart settings on the first 48 vanilla IOI prompts.
pub fn request(batch_size: u32, train_size: u32, test_size: u32) -> v1::SubmitJobRequest {
    let file = v1::PromptFileText {
        name: "ioi.json".into(),
        json: small_file(0, 48),
    };
    v1::SubmitJobRequest {
        datasets: vec![v1::DatasetSpec {
            name: "ioi".into(),
            files: vec![file],
        }],
        data: Some(v1::DataOptions {
            batch_size,
            train_size,
            test_size,
            prepend_bos: true,
            seed: 42,
            batches_per_unit: 1,
            edges_per_unit: 0,
        }),
        settings: Some((&attrib_proto::AttributionSettings::default()).into()),
        label: "fuzz".into(),
        faithfulness: None,
        device_class: String::new(),
    }
}

/// One unit's result with the right sizes and finite values.
pub fn good_result(job: &str, unit: u32, p: &JobPlan) -> v1::UnitResult {
    let a = p.assignment(job, unit, false).expect("a leased unit");
    let values: Vec<f32> = (0..p.graph.n_edges())
        .map(|i| ((i * 7 + unit as usize) % 13) as f32 * 0.25 - 1.5)
        .collect();
    v1::UnitResult {
        job_id: job.to_string(),
        unit,
        values: f32_le_bytes(&values).into(),
        clean_logit_diffs: vec![0.75; a.answers.len()],
        seconds: 0.01,
        device_class: CLASS.into(),
    }
}

pub fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The done job's batch size.
pub const DONE_BATCH: u32 = 4;

/// A coordinator on loopback, an in-process worker registered with it, and a job (`done`)
/// that worker computed.
pub struct Setup {
    pub rt: Runtime,
    pub running: RunningCoordinator,
    _dir: tempfile::TempDir,
    pub worker: String,
    pub done: String,
    pub done_status: v1::JobStatus,
    done_scores: StoredScores,
    checks: AtomicUsize,
    /// Jobs seen done, with their status and score bits then.
    seen_done: Mutex<BTreeMap<String, (v1::JobStatus, Vec<u64>)>>,
    panics: PanicWatch,
}

impl Setup {
    pub fn new(units_in_flight: u32) -> Setup {
        let panics = PanicWatch::start();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = CoordinatorConfig::new(tiny_model_dir(), dir.path().join("jobs.db"))
            .with_listen("127.0.0.1:0".parse().expect("address"));
        let running = rt
            .block_on(attrib_coordinator::start(cfg))
            .expect("coordinator starts");
        let coord = running.coord.clone();
        let (worker, done, done_status, done_scores) = rt.block_on(async {
            let worker = (coord.register_worker(&hello("fuzz", units_in_flight)))
                .expect("worker registered");
            let (done, _) = coord
                .submit(request(DONE_BATCH, 16, 8))
                .await
                .expect("submit");
            loop {
                let st = coord.status(&done).await.expect("status");
                if st.state().is_terminal() {
                    assert_eq!(st.state(), v1::JobState::Done, "{st:?}");
                    let scores = coord.scores(&done, None).await.expect("scores");
                    break (worker, done, st, scores);
                }
                let next = coord.next_unit(&worker);
                let (j, unit, p) = (tokio::time::timeout(Duration::from_secs(20), next).await)
                    .expect("a unit to compute");
                let result = good_result(&j, unit, &p);
                coord
                    .complete(&worker, result)
                    .await
                    .expect("result recorded");
            }
        });
        Setup {
            rt,
            running,
            _dir: dir,
            worker,
            done,
            done_status,
            done_scores,
            checks: AtomicUsize::new(0),
            seen_done: Mutex::new(BTreeMap::new()),
            panics,
        }
    }

    pub fn coord(&self) -> &Coordinator {
        &self.running.coord
    }

    /// A new connection to the coordinator's gRPC address.
    pub fn channel(&self) -> Channel {
        let endpoint = tonic::transport::Endpoint::from_shared(self.running.url()).expect("url");
        self.rt.block_on(endpoint.connect()).expect("connect")
    }

    /// ListJobs over gRPC.
    pub fn list_jobs(&self) -> Vec<v1::JobStatus> {
        let client = v1::attrib_client::AttribClient::new(self.channel());
        let mut client = client.max_decoding_message_size(64 << 20);
        let jobs = self.rt.block_on(client.list_jobs(v1::ListJobsRequest {}));
        jobs.expect("ListJobs").into_inner().jobs
    }

    /// The coordinator answers; no job has more units done than it has; the done job is as it
    /// was, and so is every job seen done by an earlier call (status and scores, finite).
    pub fn check_intact(&self) -> Result<(), TestCaseError> {
        let coord = self.coord();
        let fail =
            |what: &str, e: attrib_coordinator::Error| TestCaseError::fail(format!("{what}: {e}"));
        self.rt.block_on(async {
            let jobs = coord.list().await.map_err(|e| fail("ListJobs", e))?;
            for j in &jobs {
                prop_assert!(j.units_done <= j.units_total, "{j:?}");
            }
            for j in jobs.iter().filter(|j| j.state() == v1::JobState::Done) {
                let s = coord
                    .scores(&j.job_id, None)
                    .await
                    .map_err(|e| fail("scores", e))?;
                prop_assert!(s.scores.iter().all(|x| x.is_finite()), "{}", j.job_id);
                let mut seen = self.seen_done.lock().unwrap_or_else(|p| p.into_inner());
                let then = seen
                    .entry(j.job_id.clone())
                    .or_insert_with(|| (j.clone(), bits(&s.scores)));
                prop_assert_eq!(&then.0, j, "job {} changed", &j.job_id);
                prop_assert_eq!(&then.1, &bits(&s.scores), "scores of {} changed", &j.job_id);
            }
            let st = coord
                .status(&self.done)
                .await
                .map_err(|e| fail("status", e))?;
            prop_assert_eq!(&st, &self.done_status);
            let s = coord
                .scores(&self.done, None)
                .await
                .map_err(|e| fail("scores", e))?;
            prop_assert_eq!(bits(&s.scores), bits(&self.done_scores.scores));
            Ok(())
        })
    }

    /// `check_intact` on the first call and every `n`th after.
    #[allow(clippy::manual_is_multiple_of)] // `is_multiple_of` is newer than rust-version 1.85
    pub fn check_every(&self, n: usize) -> Result<(), TestCaseError> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % n == 0 {
            self.check_intact()
        } else {
            Ok(())
        }
    }

    /// After the fuzzing: intact, and ListJobs over gRPC lists the done job; then the
    /// coordinator stops, and nothing panicked since `new`, in the tests or in the server.
    pub fn stop(self) {
        self.check_intact().expect("coordinator intact");
        assert!(self.list_jobs().iter().any(|j| j.job_id == self.done));
        self.rt.block_on(self.running.stop());
        self.panics.assert_none();
    }
}
