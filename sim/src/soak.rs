//! The chaos soak: the real coordinator process and simulated workers run a stream of jobs
//! for a fixed time while a driver kills workers (each replaced by a fresh one) and now and
//! then SIGKILLs the coordinator and restarts it on the same address and database. Every job
//! must end with the scores a clean run gives, bit for bit, and none may be lost.
//!
//! The simulated workers answer with deterministic synthetic values (`Synthetic`), so a job's
//! clean scores are known twice over: the exact fold of those values in this process, and
//! the scores the cluster gave the same job before any fault. Both must agree first.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context};
use attrib_proto::v1;
use tokio::time::Instant;

use crate::cluster::{
    client, reconnect, scores, status, units_of, Client, CoordinatorProc, JobRequest, Rng, SimPool,
};
pub use crate::soak_report::{Loss, Report};
use crate::{model, Fault, SimConfig, Synthetic};

/// Prompts per batch in every soak job.
const BATCH: u32 = 16;

/// Attempts per unit before the coordinator fails its job. Every lost unit counts as one (a
/// worker killed while holding it, a timeout), and the driver kills a worker every few
/// seconds, so at the coordinator's default of 3 an unlucky unit would now and then fail its
/// job, which the soak would report as a lost result although the coordinator did as told.
/// 10 is far beyond what the fault rate makes likely, and still ends a unit that fails for
/// real.
const MAX_ATTEMPTS: u32 = 10;

/// Seconds a worker holding units may stay silent before its units move on. Killed workers'
/// connections drop, so this is only the safety net for one that does not; the coordinator's
/// default (10 minutes) would outlast the soak.
const UNIT_TIMEOUT_SECS: u32 = 10;

/// How long an orderly stop may take: the coordinator's default grace for calls in flight
/// (10 s), and a margin for its last commit. It should take well under a second.
const ORDERLY_STOP_LIMIT: Duration = Duration::from_secs(20);

/// How often the driver looks at its jobs and its fault schedule.
const TICK: Duration = Duration::from_millis(100);

/// A clean run must finish within this (no faults: seconds at the soak's rates).
const CLEAN_RUN_LIMIT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// How long faults are injected (then the driver waits for the jobs left).
    pub duration: Duration,
    pub workers: usize,
    pub seed: u64,
    /// Wait between two worker kills.
    pub kill_every: Interval,
    /// Wait between two coordinator restarts.
    pub restart_every: Interval,
    /// Jobs submitted and not yet ended at any time.
    pub jobs_in_flight: usize,
    /// Units per second each simulated worker answers.
    pub rate: f64,
    /// P: units each simulated worker holds.
    pub units_in_flight: u32,
    /// After faults stop, how long the jobs left may take to end.
    pub drain: Duration,
    /// The `attrib-coordinator` binary.
    pub coordinator: PathBuf,
    /// Folder of AutoCircuit IOI prompt files.
    pub datasets: PathBuf,
    /// GPT-2 tokenizer.json.
    pub tokenizer: PathBuf,
}

/// Waits drawn uniformly from `lo..=hi`; written `LO-HI` (or `S`) in seconds.
#[derive(Debug, Clone, Copy)]
pub struct Interval {
    pub lo: Duration,
    pub hi: Duration,
}

impl FromStr for Interval {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        let seconds = |x: &str| -> anyhow::Result<Duration> {
            let v: f64 = x
                .trim()
                .parse()
                .with_context(|| format!("{x:?} is not seconds"))?;
            Duration::try_from_secs_f64(v).with_context(|| format!("{x:?} is not a duration"))
        };
        let (lo, hi) = match s.split_once('-') {
            Some((lo, hi)) => (seconds(lo)?, seconds(hi)?),
            None => (seconds(s)?, seconds(s)?),
        };
        if lo.is_zero() || lo > hi {
            bail!("{s:?}: want LO-HI seconds with 0 < LO <= HI");
        }
        Ok(Interval { lo, hi })
    }
}

/// A job the soak submits, cycling: both graph kinds, K from 1 to 3 (one with a short last
/// unit) and one job of two datasets, so that resumed accumulators of every shape are met.
struct JobSpec {
    name: &'static str,
    files: &'static [&'static str],
    token_positions: bool,
    train: u32,
    batches_per_unit: u32,
}

const VANILLA: &str = "ioi_vanilla_template_prompts.json";

const SPECS: &[JobSpec] = &[
    JobSpec {
        name: "edge-level, K=1",
        files: &[VANILLA],
        token_positions: false,
        train: 128,
        batches_per_unit: 1,
    },
    JobSpec {
        name: "edge-level, K=3",
        files: &["ioi_ABBA_template_0_prompts.json"],
        token_positions: false,
        train: 256,
        batches_per_unit: 3,
    },
    JobSpec {
        name: "token-wise, K=1",
        files: &[VANILLA],
        token_positions: true,
        train: 96,
        batches_per_unit: 1,
    },
    JobSpec {
        name: "edge-level, 2 datasets, K=2",
        files: &[
            "ioi_BABA_template_0_prompts.json",
            "ioi_template_0_prompts.json",
        ],
        token_positions: false,
        train: 128,
        batches_per_unit: 2,
    },
    JobSpec {
        name: "token-wise, K=2",
        files: &[VANILLA],
        token_positions: true,
        train: 192,
        batches_per_unit: 2,
    },
];

impl JobSpec {
    fn request(&self, datasets: &Path) -> anyhow::Result<v1::SubmitJobRequest> {
        let files: Vec<PathBuf> = self.files.iter().map(|f| datasets.join(f)).collect();
        JobRequest {
            files: &files,
            merge: false,
            token_positions: self.token_positions,
            batch_size: BATCH,
            train: self.train,
            batches_per_unit: self.batches_per_unit,
            label: "",
        }
        .build()
    }
}

/// Runs the soak; `Err` only when it could not run (the coordinator would not start, a
/// clean run disagrees with the exact fold), not for what it found.
pub async fn run(cfg: &SoakConfig) -> anyhow::Result<Report> {
    let dir = tempfile::tempdir()?;
    let model_dir = dir.path().join("gpt2-small-shape");
    model::gpt2_small_shape(&model_dir, &cfg.tokenizer)?;
    let db = dir.path().join("soak.db");
    let (attempts, timeout) = (MAX_ATTEMPTS.to_string(), UNIT_TIMEOUT_SECS.to_string());
    let flags = ["--max-attempts", &attempts, "--unit-timeout-secs", &timeout];
    let coord = CoordinatorProc::start(&cfg.coordinator, &model_dir, &db, 0, &flags)?;
    let template = SimConfig {
        url: coord.url.clone(),
        token: None,
        name: String::new(),
        identity: model::identity(&model_dir)?,
        device_class: crate::SIM_CLASS.into(),
        units_in_flight: cfg.units_in_flight,
        rate: Some(cfg.rate),
        fault: Fault::None,
    };
    let mut pool = SimPool::new(template, Synthetic::default());
    pool.spawn(cfg.workers);
    let requests = SPECS
        .iter()
        .map(|s| s.request(&cfg.datasets))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut soak = Soak {
        c: client(&coord.url).await?,
        coord,
        pool,
        rng: Rng::new(cfg.seed),
        requests,
        clean: Vec::new(),
        in_flight: Vec::new(),
        submitted: 0,
        report: Report {
            seconds: cfg.duration.as_secs(),
            workers: cfg.workers,
            seed: cfg.seed,
            ..Default::default()
        },
    };
    soak.clean_runs().await?;
    let t0 = Instant::now();
    soak.inject_faults(cfg, t0 + cfg.duration).await?;
    eprintln!(
        "[soak] faults stopped; waiting for {} jobs",
        soak.in_flight.len()
    );
    soak.drain(Instant::now() + cfg.drain).await?;
    if !soak.report.passed() {
        eprintln!(
            "[soak] the coordinator's log, last lines:\n{}",
            log_tail(&db.with_extension("log"), 40)
        );
    }
    Ok(soak.report)
}

/// A submitted job the driver follows.
struct Tracked {
    id: String,
    label: String,
    spec: usize,
    /// The most units the coordinator said were committed: a restart must not lose them.
    committed: u32,
    /// Its last status, for the report if it does not end.
    last: Option<v1::JobStatus>,
}

struct Soak {
    coord: CoordinatorProc,
    c: Client,
    pool: SimPool,
    rng: Rng,
    /// One per spec; the label is set per submission.
    requests: Vec<v1::SubmitJobRequest>,
    /// Per spec, a clean run's scores as bits.
    clean: Vec<Vec<u64>>,
    in_flight: Vec<Tracked>,
    submitted: usize,
    report: Report,
}

impl Soak {
    /// Runs every spec once before any fault, and checks that its scores are the exact fold
    /// of the synthetic values its units carry: then either is "a clean run".
    async fn clean_runs(&mut self) -> anyhow::Result<()> {
        let mut ids = Vec::new();
        for (spec, req) in SPECS.iter().zip(&self.requests) {
            let mut req = req.clone();
            req.label = format!("clean: {}", spec.name);
            let id = self.c.submit_job(req).await?.into_inner().job_id;
            ids.push(id);
        }
        let t0 = Instant::now();
        for (spec, id) in SPECS.iter().zip(ids) {
            let st = loop {
                let st = status(&mut self.c, &id).await?;
                if st.state().is_terminal() {
                    break st;
                }
                if t0.elapsed() > CLEAN_RUN_LIMIT || self.pool.any_stopped() {
                    bail!("the clean run of {} did not finish: {st:?}", spec.name);
                }
                tokio::time::sleep(TICK).await;
            };
            if st.state() != v1::JobState::Done {
                bail!(
                    "the clean run of {} ended {}: {}",
                    spec.name,
                    st.state().label(),
                    st.error
                );
            }
            let got = bits(&scores(&mut self.c, &id).await?);
            if got.is_empty() {
                bail!("the clean run of {} has no scores", spec.name);
            }
            let fold = Synthetic::default()
                .expected(got.len(), &units_of(&st, BATCH))
                .reduced()
                .scores;
            if let Some(why) = difference(&got, &bits(&fold)) {
                bail!(
                    "the clean run of {} is not the exact fold of its units: {why}",
                    spec.name
                );
            }
            eprintln!(
                "[soak] clean run of {}: {} units, {} scores, equal to the exact fold",
                spec.name,
                st.units_total,
                got.len()
            );
            self.clean.push(got);
        }
        Ok(())
    }

    /// Keeps `jobs_in_flight` jobs running until `until`, killing a worker and restarting the
    /// coordinator on their schedules.
    async fn inject_faults(&mut self, cfg: &SoakConfig, until: Instant) -> anyhow::Result<()> {
        let draw = |rng: &mut Rng, i: Interval| Instant::now() + rng.between(i.lo, i.hi);
        let mut next_kill = draw(&mut self.rng, cfg.kill_every);
        let mut next_restart = draw(&mut self.rng, cfg.restart_every);
        while Instant::now() < until {
            self.check_workers()?;
            if Instant::now() >= next_kill && !self.pool.is_empty() {
                let victim = self.rng.below(self.pool.len());
                self.pool.replace(victim);
                self.report.worker_kills += 1;
                next_kill = draw(&mut self.rng, cfg.kill_every);
            }
            if Instant::now() >= next_restart {
                // Every other restart follows SIGTERM (the first one does): the orderly stop
                // must commit and exit 0 under load, and the restart resume from it.
                let orderly = self.report.coordinator_restarts.is_multiple_of(2);
                tokio::task::block_in_place(|| match orderly {
                    true => self.coord.stop_and_restart(ORDERLY_STOP_LIMIT),
                    false => self.coord.restart(),
                })?;
                self.report.orderly_stops += u64::from(orderly);
                self.c = reconnect(&self.coord.url).await?;
                self.report.coordinator_restarts += 1;
                eprintln!(
                    "[soak] coordinator restarted ({}); {} jobs completed so far",
                    self.report.coordinator_restarts, self.report.jobs_completed
                );
                next_restart = draw(&mut self.rng, cfg.restart_every);
            }
            while self.in_flight.len() < cfg.jobs_in_flight {
                if !self.submit_next().await? {
                    break;
                }
            }
            self.poll().await?;
            tokio::time::sleep(TICK).await;
        }
        Ok(())
    }

    /// Follows the jobs left until they end or `deadline`; those still running then are lost.
    async fn drain(&mut self, deadline: Instant) -> anyhow::Result<()> {
        while !self.in_flight.is_empty() && Instant::now() < deadline {
            self.check_workers()?;
            self.poll().await?;
            tokio::time::sleep(TICK).await;
        }
        for t in std::mem::take(&mut self.in_flight) {
            let at = t.last.map_or("no status".into(), |s| {
                format!(
                    "{}, {} of {} units done",
                    s.state().label(),
                    s.units_done,
                    s.units_total
                )
            });
            self.lose(
                1,
                format!("{}: did not end after faults stopped ({at})", t.label),
            );
        }
        Ok(())
    }

    /// A simulated worker stops only when the coordinator refuses it: a bug, not a fault.
    fn check_workers(&self) -> anyhow::Result<()> {
        if self.pool.any_stopped() {
            bail!("a simulated worker was refused by the coordinator (its reason is above)");
        }
        Ok(())
    }

    /// Submits the next job in the cycle; false if the coordinator did not take it (tried
    /// again next tick).
    async fn submit_next(&mut self) -> anyhow::Result<bool> {
        let spec = self.submitted % SPECS.len();
        let label = format!("soak-{} ({})", self.submitted, SPECS[spec].name);
        let mut req = self.requests[spec].clone();
        req.label = label.clone();
        let id = match self.c.submit_job(req).await {
            Ok(r) => r.into_inner().job_id,
            Err(s) if refused(&s) => bail!("the coordinator refused job {label}: {s}"),
            // It may have stored the job and lost the answer: look for it before resubmitting.
            Err(_) => {
                self.c = reconnect(&self.coord.url).await?;
                match self.find(&label).await {
                    Some(id) => id,
                    None => return Ok(false),
                }
            }
        };
        self.in_flight.push(Tracked {
            id,
            label,
            spec,
            committed: 0,
            last: None,
        });
        self.submitted += 1;
        Ok(true)
    }

    async fn find(&mut self, label: &str) -> Option<String> {
        let jobs = self.c.list_jobs(v1::ListJobsRequest {}).await.ok()?;
        let jobs = jobs.into_inner().jobs;
        jobs.into_iter()
            .find(|j| j.label == label)
            .map(|j| j.job_id)
    }

    /// Looks at every job in flight once; an RPC that fails for want of a coordinator ends
    /// the round (the next tick tries again on a fresh connection).
    async fn poll(&mut self) -> anyhow::Result<()> {
        let mut i = 0;
        while i < self.in_flight.len() {
            match self.check(i).await {
                Ok(true) => {
                    self.in_flight.swap_remove(i);
                }
                Ok(false) => i += 1,
                Err(_) => {
                    self.c = reconnect(&self.coord.url).await?;
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Job `i`'s status, and whether it ended (counted in the report).
    async fn check(&mut self, i: usize) -> anyhow::Result<bool> {
        let id = self.in_flight[i].id.clone();
        let st = match status(&mut self.c, &id).await {
            Ok(st) => st,
            Err(e) if not_found(&e) => {
                let label = self.in_flight[i].label.clone();
                self.lose(1, format!("{label}: vanished: {e}"));
                return Ok(true);
            }
            Err(e) => return Err(e),
        };
        let t = &mut self.in_flight[i];
        let (label, spec, before) = (t.label.clone(), t.spec, t.committed);
        t.committed = t.committed.max(st.units_committed);
        t.last = Some(st.clone());
        if st.units_committed < before {
            let why = format!(
                "{label}: committed units went back from {before} to {}",
                st.units_committed
            );
            self.lose(u64::from(before - st.units_committed), why);
        }
        match st.state() {
            v1::JobState::Done => {
                let got = bits(&scores(&mut self.c, &id).await?);
                self.report.jobs_completed += 1;
                self.report.units_retried += u64::from(st.units_retried);
                self.report.units_resumed += u64::from(st.units_resumed);
                if let Some(why) = difference(&got, &self.clean[spec]) {
                    self.report.differing.push(format!("{label}: {why}"));
                }
                Ok(true)
            }
            state if state.is_terminal() => {
                let why = format!("{label}: ended {}: {}", state.label(), st.error);
                self.lose(1, why);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn lose(&mut self, results: u64, why: String) {
        eprintln!("[soak] lost: {why}");
        self.report.lost.push(Loss { results, why });
    }
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// How `got` differs from `clean` (both as f64 bits), or `None` if it does not.
fn difference(got: &[u64], clean: &[u64]) -> Option<String> {
    if got.len() != clean.len() {
        return Some(format!(
            "{} scores, a clean run has {}",
            got.len(),
            clean.len()
        ));
    }
    let differ: Vec<usize> = (0..got.len()).filter(|&i| got[i] != clean[i]).collect();
    let &first = differ.first()?;
    Some(format!(
        "{} of {} scores differ from a clean run's, first edge {first}: {} instead of {}",
        differ.len(),
        got.len(),
        f64::from_bits(got[first]),
        f64::from_bits(clean[first])
    ))
}

/// The coordinator said no to the request itself (it would say no again).
fn refused(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::InvalidArgument
            | tonic::Code::FailedPrecondition
            | tonic::Code::ResourceExhausted
            | tonic::Code::Unauthenticated
            | tonic::Code::PermissionDenied
    )
}

fn not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<tonic::Status>()
        .is_some_and(|s| s.code() == tonic::Code::NotFound)
}

/// The last `n` lines of a log file.
fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
