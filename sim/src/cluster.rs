//! A real coordinator process driven by simulated workers, and what it costs: the pieces the
//! load test and the tests share. The coordinator runs as its own process so that its CPU
//! time and peak memory are its own.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use attrib_proto::units::unit_ranges;
use attrib_proto::v1;
use attrib_proto::v1::attrib_client::AttribClient;
use tonic::transport::Channel;

use crate::synthetic::Synthetic;
use crate::worker::{run, Fault, SimConfig, SimStats};

/// An `attrib-coordinator` child process, killed when dropped.
pub struct CoordinatorProc {
    pub child: Child,
    pub url: String,
    pub port: u16,
    /// How it was started, so that `restart` starts it the same way.
    binary: PathBuf,
    model: PathBuf,
    db: PathBuf,
    extra: Vec<String>,
}

impl CoordinatorProc {
    /// Starts `binary` on `model` and `db`, on `port` (0: any free one), with `extra` flags;
    /// its log goes next to the database, and into the error if it does not start.
    pub fn start(
        binary: &Path,
        model: &Path,
        db: &Path,
        port: u16,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let log_path = db.with_extension("log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let (child, url, port) = spawn_coordinator(binary, model, db, port, extra, log.into())
            .map_err(|e| {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                e.context(log)
            })?;
        Ok(CoordinatorProc {
            child,
            url,
            port,
            binary: binary.to_path_buf(),
            model: model.to_path_buf(),
            db: db.to_path_buf(),
            extra: extra.iter().map(|f| f.to_string()).collect(),
        })
    }

    /// A crash and a restart: SIGKILL, then the same binary on the same port, database and
    /// flags, so that workers and clients find it again at the same URL. The port can stay
    /// taken for a moment after the kill, so starting is retried for a few seconds.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.start_again()
    }

    /// An orderly stop and a restart: SIGTERM, which must end in exit status 0 within
    /// `limit`, then `start_again`.
    pub fn stop_and_restart(&mut self, limit: Duration) -> anyhow::Result<()> {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait()? {
                break s;
            }
            if t0.elapsed() > limit {
                self.kill();
                bail!("the coordinator did not exit within {limit:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        if !status.success() {
            bail!("the coordinator exited with {status} after SIGTERM");
        }
        self.start_again()
    }

    fn start_again(&mut self) -> anyhow::Result<()> {
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        let t0 = Instant::now();
        let started = loop {
            match CoordinatorProc::start(&self.binary, &self.model, &self.db, self.port, &extra) {
                Ok(c) => break c,
                Err(e) if t0.elapsed() > Duration::from_secs(10) => {
                    return Err(
                        e.context(format!("restarting the coordinator on port {}", self.port))
                    )
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        *self = started;
        Ok(())
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGKILL and wait.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// CPU seconds (user + system) so far.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.pid())
    }

    /// Peak resident memory in bytes (VmHWM).
    pub fn peak_rss(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }
}

/// Starts `binary` (an `attrib-coordinator`) on `model` and `db`, listening on 127.0.0.1:`port`
/// (0: any free port) with `extra` flags and its stderr to `stderr`, and waits until it
/// serves: the process, its URL and its port.
pub fn spawn_coordinator(
    binary: &Path,
    model: &Path,
    db: &Path,
    port: u16,
    extra: &[&str],
    stderr: Stdio,
) -> anyhow::Result<(Child, String, u16)> {
    // In the temp folder, not beside the database: a coordinator whose disk is full must
    // still be able to say it is ready. Numbered: one process starts many coordinators.
    static STARTED: AtomicU64 = AtomicU64::new(0);
    let n = STARTED.fetch_add(1, Ordering::Relaxed);
    let ready = std::env::temp_dir().join(format!("attrib-ready-{}-{n}", std::process::id()));
    let _ = std::fs::remove_file(&ready);
    let mut child = Command::new(binary)
        .arg("--model")
        .arg(model)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--db"])
        .arg(db)
        .arg("--ready-file")
        .arg(&ready)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let t0 = Instant::now();
    let url = loop {
        if let Ok(u) = std::fs::read_to_string(&ready) {
            if !u.is_empty() {
                break u;
            }
        }
        if let Some(s) = child.try_wait()? {
            bail!("the coordinator exited early: {s}");
        }
        if t0.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            bail!("the coordinator did not start within 120 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = std::fs::remove_file(&ready);
    let port = url.rsplit(':').next().unwrap_or("0").parse()?;
    Ok((child, url, port))
}

/// CPU seconds (user + system) process `pid` used so far.
pub fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command: utime and stime are fields 14 and 15.
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f
        .get(11..13)
        .map(|v| v.iter().filter_map(|x| x.parse::<f64>().ok()).sum())
        .unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

impl Drop for CoordinatorProc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub type Client = AttribClient<Channel>;

pub async fn client(url: &str) -> anyhow::Result<Client> {
    let ch = tonic::transport::Endpoint::from_shared(url.to_string())?
        .connect()
        .await?;
    Ok(AttribClient::new(ch).max_decoding_message_size(256 << 20))
}

/// A client for a coordinator that may still be starting: dials for up to a minute.
pub async fn reconnect(url: &str) -> anyhow::Result<Client> {
    let t0 = Instant::now();
    loop {
        match client(url).await {
            Ok(c) => return Ok(c),
            Err(e) if t0.elapsed() > Duration::from_secs(60) => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// A binary built next to the running one (`target/<profile>/`).
/// Where the load test and the soak find their inputs (one set of flags for both).
#[derive(clap::Args, Debug, Clone)]
pub struct Inputs {
    /// Folder of AutoCircuit IOI prompt files.
    #[arg(long, default_value = "datasets/ioi")]
    pub datasets: PathBuf,
    /// GPT-2 tokenizer.json.
    #[arg(long, default_value = "assets/gpt2/tokenizer.json")]
    pub tokenizer: PathBuf,
    /// The attrib-coordinator binary (default: next to this one).
    #[arg(long)]
    pub coordinator: Option<PathBuf>,
}

impl Inputs {
    pub fn coordinator_binary(&self) -> anyhow::Result<PathBuf> {
        match &self.coordinator {
            Some(p) => Ok(p.clone()),
            None => sibling_binary("attrib-coordinator"),
        }
    }
}

pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    Ok(std::env::current_exe()?
        .parent()
        .context("the running binary's folder")?
        .join(name))
}

/// A simulated-cluster job on IOI prompt files.
pub struct JobRequest<'a> {
    pub files: &'a [PathBuf],
    /// All files as one dataset (as AutoCircuit merges them), else one dataset per file.
    pub merge: bool,
    pub token_positions: bool,
    pub batch_size: u32,
    pub train: u32,
    /// K: batches per work unit.
    pub batches_per_unit: u32,
    pub label: &'a str,
}

impl JobRequest<'_> {
    /// The SubmitJob request: the files' text, default attribution settings otherwise.
    pub fn build(&self) -> anyhow::Result<v1::SubmitJobRequest> {
        let files = self
            .files
            .iter()
            .map(|f| {
                Ok(v1::PromptFileText {
                    name: f.display().to_string(),
                    json: std::fs::read_to_string(f)
                        .with_context(|| format!("reading {}", f.display()))?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(v1::SubmitJobRequest {
            datasets: attrib_proto::convert::dataset_specs(files, self.merge),
            data: Some(v1::DataOptions {
                batch_size: self.batch_size,
                train_size: self.train,
                test_size: 0,
                prepend_bos: true,
                seed: 42,
                batches_per_unit: self.batches_per_unit,
                edges_per_unit: 0,
            }),
            settings: Some(
                (&attrib_proto::AttributionSettings {
                    token_positions: self.token_positions,
                    ..Default::default()
                })
                    .into(),
            ),
            label: self.label.to_string(),
            faithfulness: None,
            device_class: String::new(),
        })
    }
}

/// A seeded xorshift64 generator: which worker a chaos run kills, and when.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // Xorshift never leaves zero: the state must not start there.
        Rng((seed ^ 0x2545_F491_4F6C_DD1D) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in lo..=hi.
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        lo + hi.saturating_sub(lo).mul_f64(unit)
    }
}

pub async fn status(c: &mut Client, job: &str) -> anyhow::Result<v1::JobStatus> {
    c.get_job(v1::GetJobRequest {
        job_id: job.to_string(),
    })
    .await?
    .into_inner()
    .job
    .context("no status")
}

/// A done job's combined scores.
pub async fn scores(c: &mut Client, job: &str) -> anyhow::Result<Vec<f64>> {
    let mut s = c
        .get_scores(v1::GetScoresRequest {
            job_id: job.to_string(),
            dataset: None,
            chunk_size: 0,
        })
        .await?
        .into_inner();
    let mut values = Vec::new();
    while let Some(m) = s.message().await? {
        if let Some(v1::get_scores_response::Part::Chunk(c)) = m.part {
            values.extend(c.scores);
        }
    }
    Ok(values)
}

/// Every unit of a job as (index, prompts), from its status: units of K batches of
/// `batch_size` prompts, cut per dataset.
pub fn units_of(s: &v1::JobStatus, batch_size: u32) -> Vec<(u32, usize)> {
    let mut out = Vec::new();
    for d in &s.datasets {
        let batches = (d.train_prompts / batch_size) as usize;
        for r in unit_ranges(batches, s.batches_per_unit as usize) {
            out.push((out.len() as u32, r.len() * batch_size as usize));
        }
    }
    out
}

/// A pool of simulated workers running as tasks of this process.
pub struct SimPool {
    pub stats: Arc<SimStats>,
    pub synthetic: Synthetic,
    template: SimConfig,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    started: usize,
}

impl SimPool {
    pub fn new(template: SimConfig, synthetic: Synthetic) -> Self {
        SimPool {
            stats: Arc::new(SimStats::default()),
            synthetic,
            template,
            tasks: Vec::new(),
            started: 0,
        }
    }

    /// Starts `n` more workers.
    pub fn spawn(&mut self, n: usize) {
        for _ in 0..n {
            self.spawn_one(Fault::None);
        }
    }

    /// Starts one worker with a fault.
    pub fn spawn_faulty(&mut self, fault: Fault) {
        self.spawn_one(fault);
    }

    fn spawn_one(&mut self, fault: Fault) {
        let cfg = SimConfig {
            name: format!("sim-{}", self.started),
            fault,
            ..self.template.clone()
        };
        self.started += 1;
        let task = run(cfg, self.synthetic.clone(), self.stats.clone());
        self.tasks.push(tokio::spawn(task));
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Kills worker `i` the way a crash would: its connection drops mid-session.
    pub fn kill(&mut self, i: usize) {
        self.tasks.swap_remove(i).abort();
    }

    /// Kills worker `i` (see `kill`) and starts a fresh one in its place, as a supervisor
    /// would after a crash.
    pub fn replace(&mut self, i: usize) {
        self.kill(i);
        self.spawn(1);
    }

    /// Whether a worker stopped by itself (the coordinator refused it; it said why).
    pub fn any_stopped(&self) -> bool {
        self.tasks.iter().any(|t| t.is_finished())
    }
}

impl Drop for SimPool {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Samples the database's size every millisecond on its own thread and keeps the largest.
pub struct DbWatch {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl DbWatch {
    pub fn start(db: PathBuf) -> Self {
        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            let size = |suffix: &str| {
                let mut f = db.clone().into_os_string();
                f.push(suffix);
                std::fs::metadata(f).map_or(0, |m| m.len())
            };
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(size("") + size("-wal"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        DbWatch { peak, stop }
    }

    /// Stops sampling; the largest size seen, in bytes.
    pub fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.peak.load(Ordering::Relaxed)
    }
}
