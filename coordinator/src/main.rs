//! `attrib-coordinator`: serve jobs to clients and batches to workers; with `--spawn-workers N`
//! also start N local workers, which makes one machine a whole cluster.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use attrib_coordinator::admission::Limits;
use attrib_coordinator::spawn::{default_worker_binary, LocalWorkers};
use attrib_coordinator::tls::ServerTls;
use attrib_coordinator::{start, CoordinatorConfig};
use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};

#[derive(Parser)]
#[command(
    version,
    about = "attrib's coordinator: jobs in, work units out to workers, their sums folded exactly"
)]
struct Args {
    /// HF GPT-2 folder (config.json, model.safetensors, tokenizer.json); workers must hold the same model.
    #[arg(long, env = "ATTRIB_MODEL")]
    model: PathBuf,
    /// gRPC listen address (port 0: any free port; see --ready-file).
    #[arg(long, default_value = "127.0.0.1:50051", env = "ATTRIB_LISTEN")]
    listen: SocketAddr,
    /// SQLite database for jobs, running sums and scores (created if missing).
    #[arg(long, default_value = "attrib.db", env = "ATTRIB_DB")]
    db: PathBuf,
    /// Token every client RPC must carry (constant-time compared); unset = no token.
    #[arg(long, env = "ATTRIB_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Token worker sessions must carry; a client token then cannot open one. Unset: workers
    /// carry --token (roles not separated; a warning is logged).
    #[arg(long, env = "ATTRIB_WORKER_TOKEN", hide_env_values = true)]
    worker_token: Option<String>,
    /// PEM certificate (chain) of the listener: TLS on, URLs become https://.
    #[arg(long, env = "ATTRIB_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "ATTRIB_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// PEM CA that worker certificates must chain to (mutual TLS for workers; clients need no
    /// certificate). Needs --tls-cert.
    #[arg(long, env = "ATTRIB_WORKER_CA", requires = "tls_cert")]
    worker_ca: Option<PathBuf>,
    /// Seconds a worker holding units may go without answering one before it counts as hung
    /// and its units move on.
    #[arg(
        long,
        default_value_t = 600,
        alias = "batch-timeout-secs",
        env = "ATTRIB_UNIT_TIMEOUT_SECS"
    )]
    unit_timeout_secs: u64,
    /// Attempts per unit before its job fails. Every lost attempt counts: a worker's error, a
    /// refused result (NaN/inf, wrong length), a disconnect, a timeout.
    #[arg(long, default_value_t = 3, env = "ATTRIB_MAX_ATTEMPTS")]
    max_attempts: u32,
    /// Milliseconds between a worker's heartbeats. A worker silent for three of them (stopped,
    /// frozen, cut off) loses its session and its units move on, whatever the unit timeout.
    #[arg(long, default_value_t = 5000, env = "ATTRIB_HEARTBEAT_MS")]
    heartbeat_ms: u64,
    /// On SIGTERM or Ctrl-C: seconds that calls in flight get to finish before the coordinator
    /// commits what it folded and exits 0 (well under Kubernetes' 30 s). A second signal exits
    /// at once.
    #[arg(long, default_value_t = 10, env = "ATTRIB_SHUTDOWN_GRACE_SECS")]
    shutdown_grace_secs: u64,
    /// Delete finished jobs (with their scores and curves) this many days after they ended;
    /// fractions allowed. Unset: kept until `attrib delete`.
    #[arg(long, env = "ATTRIB_RETENTION_DAYS", value_parser = positive_days)]
    retention_days: Option<f64>,
    #[command(flatten)]
    limits: LimitArgs,
    /// Group commit of running jobs' sums after this many folded units...
    #[arg(long, default_value_t = 1000, env = "ATTRIB_COMMIT_UNITS")]
    commit_units: u32,
    /// ...or after this many milliseconds, whichever comes first. A restart recomputes at
    /// most the units folded since the last commit.
    #[arg(long, default_value_t = 1000, env = "ATTRIB_COMMIT_INTERVAL_MS")]
    commit_interval_ms: u64,
    /// Largest client request in MiB (SubmitJob carries the prompt files).
    #[arg(long, default_value_t = 64, env = "ATTRIB_MAX_REQUEST_MIB")]
    max_request_mib: usize,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9464).
    #[arg(long, env = "ATTRIB_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Write the gRPC URL (http://host:port) to this file once listening.
    #[arg(long, env = "ATTRIB_READY_FILE")]
    ready_file: Option<PathBuf>,
    /// Start this many local `attrib-worker serve` processes.
    #[arg(long, default_value_t = 0, env = "ATTRIB_SPAWN_WORKERS")]
    spawn_workers: usize,
    /// Devices for the local workers, handed out in turn (e.g. cuda:0,cuda:1).
    #[arg(
        long,
        default_value = "auto",
        value_delimiter = ',',
        env = "ATTRIB_WORKER_DEVICES"
    )]
    worker_devices: Vec<String>,
    /// The attrib-worker binary for --spawn-workers (default: next to this binary).
    #[arg(long, env = "ATTRIB_WORKER_BIN")]
    worker_bin: Option<PathBuf>,
}

/// A retention in days: a positive, finite number.
fn positive_days(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(d) if d.is_finite() && d > 0.0 && d * 86_400.0 < 1e15 => Ok(d),
        _ => Err(format!(
            "{s:?} is not a number of days above 0 (fractions allowed: 0.5 is 12 hours)"
        )),
    }
}

/// Admission limits: a request over one is refused at submit, naming the limit.
#[derive(clap::Args)]
struct LimitArgs {
    /// Largest batch size (prompts per batch).
    #[arg(long, default_value_t = Limits::default().max_batch_size, env = "ATTRIB_MAX_BATCH_SIZE")]
    max_batch_size: u32,
    /// Most integrated-gradient samples (each is a forward and backward pass per unit).
    #[arg(long, default_value_t = Limits::default().max_ig_samples, env = "ATTRIB_MAX_IG_SAMPLES")]
    max_ig_samples: u32,
    /// Most batches per unit (K).
    #[arg(long, default_value_t = Limits::default().max_batches_per_unit, env = "ATTRIB_MAX_BATCHES_PER_UNIT")]
    max_batches_per_unit: u32,
    /// Most edge counts in one faithfulness job.
    #[arg(long, default_value_t = Limits::default().max_edge_counts, env = "ATTRIB_MAX_EDGE_COUNTS")]
    max_edge_counts: usize,
    /// Most circuits one faithfulness unit evaluates.
    #[arg(long, default_value_t = Limits::default().max_circuits_per_unit, env = "ATTRIB_MAX_CIRCUITS_PER_UNIT")]
    max_circuits_per_unit: u32,
    /// Most edge x prompt evaluations of one exact-patching job (each a prompt's forward pass).
    #[arg(long, default_value_t = Limits::default().max_exact_patches, env = "ATTRIB_MAX_EXACT_PATCHES")]
    max_exact_patches: u64,
    /// Jobs computed at once (oldest first); later jobs wait queued.
    #[arg(long, default_value_t = Limits::default().max_active_jobs, env = "ATTRIB_MAX_ACTIVE_JOBS")]
    max_active_jobs: usize,
    /// Jobs that may wait queued behind the active ones.
    #[arg(long, default_value_t = Limits::default().max_queued_jobs, env = "ATTRIB_MAX_QUEUED_JOBS")]
    max_queued_jobs: usize,
    /// Largest database in MiB (0: no limit). Jobs that would pass it are refused; past it,
    /// writes fail as on a full disk and new work is refused.
    #[arg(long, default_value_t = 0, env = "ATTRIB_MAX_DB_MIB")]
    max_db_mib: u64,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            max_batch_size: self.max_batch_size,
            max_ig_samples: self.max_ig_samples,
            max_batches_per_unit: self.max_batches_per_unit,
            max_edge_counts: self.max_edge_counts,
            max_circuits_per_unit: self.max_circuits_per_unit,
            max_exact_patches: self.max_exact_patches,
            max_active_jobs: self.max_active_jobs.max(1),
            max_queued_jobs: self.max_queued_jobs,
            max_db_bytes: self.max_db_mib << 20,
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in files or log collectors.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let a = Args::parse();
    if let Some(addr) = a.metrics_listen {
        attrib_coordinator::metrics::install(addr)
            .map_err(|e| anyhow::anyhow!("metrics on {addr}: {e}"))?;
    }
    let mut config = CoordinatorConfig::new(&a.model, &a.db)
        .with_listen(a.listen)
        .with_token(a.token.clone())
        .with_worker_token(a.worker_token.clone())
        .with_unit_timeout(Duration::from_secs(a.unit_timeout_secs.max(1)))
        .with_max_request_bytes(a.max_request_mib << 20);
    config.max_attempts = a.max_attempts;
    config.limits = a.limits.limits();
    config.tls = match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => Some(ServerTls {
            cert_file: cert.clone(),
            key_file: key.clone(),
            worker_ca_file: a.worker_ca.clone(),
        }),
        _ => None,
    };
    config.heartbeat = Duration::from_millis(a.heartbeat_ms.max(10));
    config.retention = a
        .retention_days
        .map(|d| Duration::from_secs_f64(d * 86_400.0));
    config.commit_units = a.commit_units.max(1);
    config.commit_interval = Duration::from_millis(a.commit_interval_ms.max(1));
    let mut server = start(config)
        .await
        .with_context(|| format!("starting the coordinator for {}", a.model.display()))?;
    let url = server.url();
    eprintln!(
        "[attrib] coordinator listening on {url} (db {})",
        a.db.display()
    );
    if let Some(f) = &a.ready_file {
        std::fs::write(f, &url).with_context(|| format!("writing {}", f.display()))?;
    }
    let mut children = Vec::new();
    if a.spawn_workers > 0 {
        let local = LocalWorkers {
            count: a.spawn_workers,
            binary: a.worker_bin.clone().unwrap_or_else(default_worker_binary),
            model_dir: a.model.clone(),
            devices: a.worker_devices.clone(),
            token: a.worker_token.clone().or_else(|| a.token.clone()),
        };
        children = attrib_coordinator::spawn::spawn(&local, &url)?;
        eprintln!("[attrib] started {} local worker(s)", children.len());
    }
    let mut signals = Signals::new()?;
    let name = tokio::select! {
        name = signals.next() => name,
        r = server.wait() => {
            attrib_coordinator::spawn::stop(&mut children).await;
            return r.map_err(|e| anyhow::anyhow!("server stopped: {e}"));
        }
    };
    let grace = Duration::from_secs(a.shutdown_grace_secs);
    eprintln!(
        "[attrib] {name} received: stopping (workers told to leave, up to {} s for calls in flight; a second signal exits at once)",
        grace.as_secs()
    );
    let stopping = async {
        let (_, clean) = tokio::join!(
            tokio::time::timeout(grace, attrib_coordinator::spawn::stop(&mut children)),
            server.shutdown(grace)
        );
        clean
    };
    tokio::select! {
        clean = stopping => {
            let how = if clean { "" } else { " (calls still open after the grace were cut off)" };
            eprintln!("[attrib] coordinator stopped; what was folded is committed{how}");
            Ok(())
        }
        name = signals.next() => {
            eprintln!("[attrib] second signal ({name}): exiting at once; units since the last commit are recomputed after the restart");
            std::process::exit(1);
        }
    }
}

/// SIGTERM and SIGINT (Ctrl-C), whichever comes.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
