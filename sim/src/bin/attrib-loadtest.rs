//! `attrib-loadtest`: the real coordinator (its own process, on a GPT-2-small-shaped model)
//! under M simulated workers that speak the real worker protocol over loopback and return
//! synthetic sums of the job's real size. For each run it prints units/s and MB/s into the
//! coordinator, the coordinator's CPU share and peak RSS, the database's peak size, and
//! whether the final scores equal an in-process fold of the same synthetic results, bit for
//! bit. Exits non-zero if any run's scores differ or a run fails.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use attrib_proto::v1;
use attrib_sim::cluster::{
    client, reconnect, scores, status, units_of, Client, CoordinatorProc, DbWatch, Inputs,
    JobRequest, Rng, SimPool,
};
use attrib_sim::{model, Fault, SimConfig, Synthetic};
use clap::Parser;

#[derive(Parser)]
#[command(about = "Load test of attrib-coordinator with simulated workers")]
struct Args {
    /// Runs: edge (edge-level, each worker count), tokenwise (token-wise, each worker count),
    /// sweep (every IOI file as its own dataset), chaos (workers killed at random and the
    /// coordinator restarted once), db (the 512-prompt token-wise job's database), fold (the
    /// exact sum's hot loop alone, in this process).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "fold,edge,tokenwise,sweep,chaos,db"
    )]
    runs: Vec<String>,
    /// Simulated worker counts for the edge and tokenwise runs.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    workers: Vec<usize>,
    /// IOI prompt files to use (fewer files: smaller jobs).
    #[arg(long, default_value_t = 47)]
    files: usize,
    /// Copies of those files merged into the edge-level throughput job (2,937 units each).
    #[arg(long, default_value_t = 4)]
    edge_copies: usize,
    /// Copies of the vanilla IOI file in the token-wise job (62.5 units each).
    #[arg(long, default_value_t = 20)]
    tokenwise_copies: usize,
    /// P: units each simulated worker holds.
    #[arg(long, default_value_t = 2)]
    units_in_flight: u32,
    /// Units per second per simulated worker (default: as fast as they can).
    #[arg(long)]
    rate: Option<f64>,
    #[command(flatten)]
    inputs: Inputs,
}

/// One job to run, and on what.
struct JobSpec {
    files: Vec<PathBuf>,
    merge: bool,
    token_positions: bool,
    train: u32,
    workers: usize,
    chaos: Chaos,
    /// Units per second per worker, instead of `--rate`.
    rate: Option<f64>,
    /// The coordinator's `--commit-interval-ms` (its default when `None`).
    commit_interval_ms: Option<u64>,
}

impl JobSpec {
    /// `files` merged into one dataset of all their prompts, on `workers` full-speed workers.
    fn merged(files: Vec<PathBuf>, token_positions: bool, workers: usize) -> Self {
        JobSpec {
            train: 1000 * files.len() as u32,
            files,
            merge: true,
            token_positions,
            workers,
            chaos: Chaos::None,
            rate: None,
            commit_interval_ms: None,
        }
    }
}

/// What one run measured.
struct Measured {
    name: String,
    workers: usize,
    units: u32,
    values: usize,
    seconds: f64,
    mbytes: f64,
    cpu_share: f64,
    /// Of this process, where the simulated workers run.
    sim_cpu_share: f64,
    peak_rss: u64,
    db_peak: u64,
    accumulator: u64,
    equal: bool,
    note: String,
}

const BATCH: u32 = 16;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let coordinator_bin = a.inputs.coordinator_binary()?;
    let dir = tempfile::tempdir()?;
    let model_dir = dir.path().join("gpt2-small-shape");
    model::gpt2_small_shape(&model_dir, &a.inputs.tokenizer)?;
    let mut ioi: Vec<PathBuf> = std::fs::read_dir(&a.inputs.datasets)
        .with_context(|| format!("reading {}", a.inputs.datasets.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    ioi.sort();
    ioi.truncate(a.files.max(1));
    let vanilla = a.inputs.datasets.join("ioi_vanilla_template_prompts.json");
    let lab = Lab {
        coordinator_bin,
        model_dir,
        dir: dir.path().to_path_buf(),
        synthetic: Synthetic::default(),
        units_in_flight: a.units_in_flight,
        rate: a.rate,
    };
    println!(
        "attrib-loadtest: GPT-2-small shape (12 layers, 12 heads), batch {BATCH}, K = 1, P = {}, rate {}; {} cores",
        a.units_in_flight,
        a.rate.map_or("full speed".into(), |r| format!("{r} units/s per worker")),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut results = Vec::new();
    for run in &a.runs {
        let spec = match run.as_str() {
            "fold" => {
                time_fold(&lab.synthetic);
                continue;
            }
            "edge" => a
                .workers
                .iter()
                .map(|&m| {
                    let files = (0..a.edge_copies.max(1)).flat_map(|_| ioi.iter().cloned());
                    (
                        "edge-level".to_string(),
                        JobSpec::merged(files.collect(), false, m),
                    )
                })
                .collect(),
            "tokenwise" => a
                .workers
                .iter()
                .map(|&m| {
                    let files = vec![vanilla.clone(); a.tokenwise_copies.max(1)];
                    ("token-wise".to_string(), JobSpec::merged(files, true, m))
                })
                .collect(),
            "sweep" => {
                let mut job = JobSpec::merged(ioi.clone(), false, 8);
                (job.merge, job.train) = (false, 1000);
                vec![(format!("sweep: {} datasets", ioi.len()), job)]
            }
            "chaos" => {
                let mut job = JobSpec::merged(ioi.clone(), false, 16);
                job.chaos = Chaos::KillAndRestart {
                    kill_every: Duration::from_millis(100),
                    restart_at: 0.4,
                };
                vec![("chaos, edge-level".to_string(), job)]
            }
            "db" => {
                // Slow enough for about ten group commits, each rewriting the accumulator.
                let mut job = JobSpec::merged(vec![vanilla.clone()], true, 1);
                (job.train, job.rate, job.commit_interval_ms) = (512, Some(40.0), Some(100));
                vec![("512 prompts token-wise".to_string(), job)]
            }
            other => bail!("unknown run {other:?}"),
        };
        for (name, job) in spec {
            results.push(lab.run(&name, &job).await?);
        }
    }
    print_table(&results);
    if results.iter().any(|r| !r.equal) {
        bail!("scores differ from the in-process fold");
    }
    Ok(())
}

/// The coordinator's hot loop on its own: token-wise GPT-2-small unit results folded into one
/// accumulator, 5 rounds of 64 units; prints the median ns per value.
fn time_fold(synthetic: &Synthetic) {
    let n = 487_365;
    let mut acc = attrib_proto::ExactSum::new(n);
    let mut rounds: Vec<f64> = (0..5)
        .map(|_| {
            let t0 = Instant::now();
            for u in 0..64 {
                acc.add_all_le(0, &synthetic.values(n, u))
                    .expect("synthetic values are finite");
            }
            t0.elapsed().as_secs_f64() * 1e9 / (64 * n) as f64
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    println!(
        "exact fold ({:?} kernel): median {:.2} ns per value over 5 rounds of 64 token-wise units ({})",
        attrib_proto::exact::kernel(),
        rounds[2],
        rounds
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

fn print_table(rs: &[Measured]) {
    println!();
    println!("| run | workers | units | values/unit | units/s | MB/s in | coordinator CPU | simulated workers CPU | coordinator peak RSS | DB peak (x accumulator) | scores = in-process fold |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in rs {
        println!(
            "| {}{} | {} | {} | {} | {:.0} | {:.0} | {:.0}% | {:.0}% | {:.0} MB | {:.1} MB ({:.2}x) | {} |",
            r.name,
            r.note,
            r.workers,
            r.units,
            r.values,
            r.units as f64 / r.seconds,
            r.mbytes / r.seconds,
            100.0 * r.cpu_share,
            100.0 * r.sim_cpu_share,
            r.peak_rss as f64 / 1e6,
            r.db_peak as f64 / 1e6,
            r.db_peak as f64 / r.accumulator.max(1) as f64,
            if r.equal { "yes, bit for bit" } else { "NO" }
        );
    }
}

#[derive(Clone, Copy)]
enum Chaos {
    None,
    KillAndRestart {
        kill_every: Duration,
        restart_at: f64,
    },
}

struct Lab {
    coordinator_bin: PathBuf,
    model_dir: PathBuf,
    dir: PathBuf,
    synthetic: Synthetic,
    units_in_flight: u32,
    rate: Option<f64>,
}

impl Lab {
    fn request(&self, job: &JobSpec) -> anyhow::Result<v1::SubmitJobRequest> {
        JobRequest {
            files: &job.files,
            merge: job.merge,
            token_positions: job.token_positions,
            batch_size: BATCH,
            train: job.train,
            batches_per_unit: 1,
            label: "loadtest",
        }
        .build()
    }

    /// The coordinator for one run, on its own database `db`.
    fn start_coordinator(&self, job: &JobSpec, db: &Path) -> anyhow::Result<CoordinatorProc> {
        let interval = job.commit_interval_ms.unwrap_or(1000).to_string();
        let flags = [
            "--max-request-mib",
            "256",
            "--commit-interval-ms",
            &interval,
        ];
        CoordinatorProc::start(&self.coordinator_bin, &self.model_dir, db, 0, &flags)
    }

    /// The settings every simulated worker of one run starts from.
    fn sim_template(&self, url: &str, job: &JobSpec) -> anyhow::Result<SimConfig> {
        Ok(SimConfig {
            url: url.to_string(),
            token: None,
            name: String::new(),
            identity: model::identity(&self.model_dir)?,
            device_class: attrib_sim::SIM_CLASS.into(),
            units_in_flight: self.units_in_flight,
            rate: job.rate.or(self.rate),
            fault: Fault::None,
        })
    }

    /// Runs `job` on a fresh coordinator and simulated workers and measures it.
    async fn run(&self, name: &str, job: &JobSpec) -> anyhow::Result<Measured> {
        let (workers, chaos) = (job.workers, job.chaos);
        let run_dir = tempfile::tempdir_in(&self.dir)?;
        let db = run_dir.path().join("attrib.db");
        let mut coord = self.start_coordinator(job, &db)?;
        let mut c = client(&coord.url).await?;
        let req = self.request(job)?;
        let job_id = c
            .submit_job(req)
            .await
            .context("submitting the job")?
            .into_inner()
            .job_id;
        let template = self.sim_template(&coord.url, job)?;
        let mut pool = SimPool::new(template, self.synthetic.clone());
        let watch = DbWatch::start(db.clone());
        let (t0, cpu0, sim_cpu0) = (Instant::now(), coord.cpu_seconds(), own_cpu_seconds());
        pool.spawn(workers);
        let mut run = Running {
            coord: &mut coord,
            c: &mut c,
            pool: &mut pool,
            job_id: &job_id,
            cpu0,
            disturbed: Disturbed::default(),
        };
        let st = run.wait(chaos, t0).await?;
        let d = run.disturbed;
        let seconds = t0.elapsed().as_secs_f64();
        let cpu = d.cpu_before_restart + coord.cpu_seconds() - if d.restarted { 0.0 } else { cpu0 };
        let sim_cpu = own_cpu_seconds() - sim_cpu0;
        let peak_rss = coord.peak_rss().max(d.rss_before_restart);
        let mbytes = pool.stats.bytes.load(Ordering::Relaxed) as f64 / 1e6;
        drop(pool);
        if st.state() != v1::JobState::Done {
            bail!("{name}: the job ended {}: {}", st.state().label(), st.error);
        }
        let got = scores(&mut c, &job_id).await?;
        let db_peak = watch.finish();
        let (equal, accumulator) = self.compare_with_fold(&got, &st, job.token_positions);
        let m = Measured {
            name: name.to_string(),
            workers,
            units: st.units_total,
            values: got.len(),
            seconds,
            mbytes,
            cpu_share: cpu / seconds,
            sim_cpu_share: sim_cpu / seconds,
            peak_rss,
            db_peak,
            accumulator,
            equal,
            note: d.note(chaos, &st),
        };
        eprintln!(
            "[loadtest] {name}, {workers} workers: {} units in {seconds:.1} s, scores {}",
            m.units,
            if equal { "equal" } else { "DIFFER" }
        );
        Ok(m)
    }

    /// Whether the job's scores `got` equal, bit for bit, an in-process fold of the same
    /// synthetic unit results; also the encoded accumulator's size in bytes.
    fn compare_with_fold(
        &self,
        got: &[f64],
        st: &v1::JobStatus,
        token_positions: bool,
    ) -> (bool, u64) {
        let expected = self.synthetic.expected(got.len(), &units_of(st, BATCH));
        let n_edges = if token_positions { 487_365 } else { 32_491 };
        let equal = got.len() == n_edges
            && got
                .iter()
                .zip(expected.reduced().scores)
                .all(|(a, b)| a.to_bits() == b.to_bits());
        (equal, expected.encode().len() as u64)
    }
}

/// What a chaos run did to the coordinator and the workers while its job ran.
#[derive(Default)]
struct Disturbed {
    kills: usize,
    restarted: bool,
    /// The coordinator's CPU seconds and peak RSS before its restart (they start over).
    cpu_before_restart: f64,
    rss_before_restart: u64,
}

impl Disturbed {
    /// The note after a run's name in the table: what chaos did, empty without chaos.
    fn note(&self, chaos: Chaos, st: &v1::JobStatus) -> String {
        match chaos {
            Chaos::None => String::new(),
            Chaos::KillAndRestart { .. } => format!(
                " ({} workers killed, coordinator restarted once: {} units resumed, {} retried)",
                self.kills, st.units_resumed, st.units_retried
            ),
        }
    }
}

/// A submitted job while it runs: the coordinator, a client of it and the simulated workers.
struct Running<'a> {
    coord: &'a mut CoordinatorProc,
    c: &'a mut Client,
    pool: &'a mut SimPool,
    job_id: &'a str,
    /// The coordinator's CPU seconds when the workers started.
    cpu0: f64,
    disturbed: Disturbed,
}

impl Running<'_> {
    /// Polls the job until it ends, applying `chaos` on the way; returns its last status.
    async fn wait(&mut self, chaos: Chaos, t0: Instant) -> anyhow::Result<v1::JobStatus> {
        let mut rng = Rng::new(t0.elapsed().as_nanos() as u64);
        let mut last_kill = Instant::now();
        loop {
            if self.pool.any_stopped() {
                bail!("a simulated worker was refused (see above)");
            }
            let st = match status(self.c, self.job_id).await {
                Ok(s) => s,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    *self.c = reconnect(&self.coord.url).await?;
                    continue;
                }
            };
            if st.state().is_terminal() {
                return Ok(st);
            }
            if let Chaos::KillAndRestart {
                kill_every,
                restart_at,
            } = chaos
            {
                if last_kill.elapsed() >= kill_every && !self.pool.is_empty() {
                    self.pool.replace(rng.below(self.pool.len()));
                    self.disturbed.kills += 1;
                    last_kill = Instant::now();
                }
                if !self.disturbed.restarted
                    && st.units_done as f64 >= restart_at * st.units_total as f64
                {
                    self.disturbed.cpu_before_restart = self.coord.cpu_seconds() - self.cpu0;
                    self.disturbed.rss_before_restart = self.coord.peak_rss();
                    self.coord.restart()?;
                    *self.c = reconnect(&self.coord.url).await?;
                    self.disturbed.restarted = true;
                    continue;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// CPU seconds this process (the simulated workers and the driver) used so far.
fn own_cpu_seconds() -> f64 {
    attrib_sim::cluster::cpu_seconds(std::process::id() as i32)
}
