//! `attrib-worker`: the engine's command line. `serve` joins a coordinator; `attribute` runs a
//! whole job in this process; `init-model` writes a random GPT-2 folder for demos and
//! benchmarks; `self-test` checks this install against the golden numbers.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use attrib_proto::memory::{unit_bytes, UnitShape};
use attrib_proto::tls::ClientTls;
use attrib_proto::{write_json_file, JobSpec, Method, ScoresFile};
use attrib_worker::declared_memory::declared_memory;
use attrib_worker::device::{device_name, parse_device, parse_devices, parse_local_devices};
use attrib_worker::group::check::collective_check;
use attrib_worker::group::CollectiveKind;
use attrib_worker::init_model::{write_random_model, InitOptions};
use attrib_worker::job::{run_attribute_timed, run_faithfulness, AttributeJob, FaithfulnessJob};
use attrib_worker::memory_check::memory_check;
use attrib_worker::model::Gpt2;
use attrib_worker::model_dir::resolve_model_dir;
use attrib_worker::rss::peak_rss_mib;
use attrib_worker::self_test;
use attrib_worker::service::{serve as serve_units, Engine, EngineConfig, ServeConfig};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    version,
    about = "attrib's engine: AutoCircuit-exact edge attribution on GPT-2 in libtorch"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Join a coordinator and compute the work units it hands out, until SIGTERM.
    Serve(ServeArgs),
    /// Mask-gradient prune scores of every edge for a prompt dataset, in this process.
    Attribute(AttributeArgs),
    /// Faithfulness of a scores file's circuits on the test prompts, in this process: keep the
    /// k highest-|score| edges clean, patch the rest from the corrupt prompt (tree patching).
    Faithfulness(FaithfulnessArgs),
    /// Write an HF-format GPT-2 folder with random weights and the GPT-2 tokenizer.
    InitModel(InitArgs),
    /// Check a node group's collectives (broadcast, exact all-reduce) on these devices against
    /// the host: `--devices cuda:0 --collective nccl` is the GPU check's one-rank NCCL test.
    CollectiveCheck {
        #[arg(
            long,
            alias = "device",
            value_delimiter = ',',
            default_value = "cpu,cpu"
        )]
        devices: Vec<String>,
        /// auto | host | nccl
        #[arg(long, default_value = "auto")]
        collective: String,
    },
    /// Try the memory `serve` would declare: one unit filling a fraction of it, then a
    /// collective on the same device.
    MemoryCheck(MemoryCheckArgs),
    /// What this node gives attrib: libtorch, libtorch_cuda, libcuda and NCCL (where each was
    /// found, or why not), devices and their memory, the settings that decide GPU bits.
    Doctor {
        /// One JSON object instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Run the golden checks (AutoCircuit's variants, EAP-IG's methods, ACDC, faithfulness)
    /// on a device with the CPU's tolerances, one line per check; exit status 1 if any fails.
    SelfTest(SelfTestArgs),
    /// Measure the machine rates that bound CPU attribution: fp32 GEMM and fresh memory.
    HostCheck {
        /// auto | cpu | cuda:N
        #[arg(long, default_value = "cpu")]
        device: String,
    },
}

#[derive(Args)]
struct AttributeArgs {
    /// HF GPT-2 folder (config.json, model.safetensors, tokenizer.json), or a name such as
    /// `gpt2` found in the local HuggingFace cache.
    #[arg(long, env = "ATTRIB_MODEL")]
    model: String,
    /// AutoCircuit prompt file(s); several are merged as AutoCircuit merges them.
    #[arg(
        long = "dataset",
        required = true,
        env = "ATTRIB_DATASET",
        value_delimiter = ','
    )]
    datasets: Vec<PathBuf>,
    /// Where to write the scores JSON.
    #[arg(long, default_value = "scores.json", env = "ATTRIB_OUT")]
    out: PathBuf,
    /// auto | cpu | cuda:N
    #[arg(long, default_value = "auto", env = "ATTRIB_DEVICE")]
    device: String,
    #[command(flatten)]
    job: JobSpec,
    /// How many top edges to print.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Run one unit of the same shape first, untimed, so that the timing excludes one-time
    /// costs (CUDA kernels and cuBLAS handles loading, the caching allocator's first blocks).
    #[arg(long)]
    warm_up: bool,
}

#[derive(Args)]
struct MemoryCheckArgs {
    /// HF GPT-2 folder or local HuggingFace cache name.
    #[arg(long, env = "ATTRIB_MODEL")]
    model: String,
    /// Prompt file(s): enough prompts for the unit (every prompt but the test split's at most).
    #[arg(long = "dataset", required = true, value_delimiter = ',')]
    datasets: Vec<PathBuf>,
    /// auto | cpu | cuda:N
    #[arg(long, default_value = "auto")]
    device: String,
    /// The share of the declared memory the unit's estimate (model included) may fill.
    #[arg(long, default_value_t = 0.9)]
    fraction: f64,
    /// Declare this instead of what `serve` would read from the device.
    #[arg(long)]
    memory_mib: Option<u64>,
    #[command(flatten)]
    job: JobSpec,
}

#[derive(Args)]
struct FaithfulnessArgs {
    /// HF GPT-2 folder or local HuggingFace cache name: the model the scores were made with.
    #[arg(long, env = "ATTRIB_MODEL")]
    model: String,
    /// A scores file written by `attribute` or `attrib scores`.
    #[arg(long)]
    scores: PathBuf,
    /// Prompt file(s), when the paths recorded in the scores file do not resolve here.
    #[arg(long = "dataset", value_delimiter = ',')]
    datasets: Vec<PathBuf>,
    /// Edge counts k, comma-separated (0 and all edges are always added). Default:
    /// AutoCircuit's logarithmic counts 1..9, 10, 20, …
    #[arg(long, value_parser = parse_counts)]
    edges: Option<Counts>,
    /// Where to write the curve JSON.
    #[arg(long, default_value = "curve.json")]
    out: PathBuf,
    /// auto | cpu | cuda:N
    #[arg(long, default_value = "auto", env = "ATTRIB_DEVICE")]
    device: String,
}

#[derive(Clone)]
struct Counts(Vec<usize>);

fn parse_counts(s: &str) -> Result<Counts, String> {
    attrib_proto::faithfulness::parse_edge_counts(s).map(Counts)
}

#[derive(Args)]
struct ServeArgs {
    /// HF GPT-2 folder or local HuggingFace cache name; must be the coordinator's model.
    #[arg(long, env = "ATTRIB_MODEL")]
    model: String,
    /// The coordinator's URL.
    #[arg(
        long,
        default_value = "http://127.0.0.1:50051",
        env = "ATTRIB_COORDINATOR"
    )]
    coordinator: String,
    /// auto | cpu | cuda:N; or a node group's devices, comma-separated (cuda:0,cuda:1,...):
    /// one process computes on all of them as one worker (also spelled --devices).
    #[arg(
        long,
        alias = "devices",
        default_value = "auto",
        env = "ATTRIB_DEVICE",
        value_delimiter = ','
    )]
    device: Vec<String>,
    /// This worker's place among one machine's workers (0, 1, ...; `attrib-coordinator
    /// --spawn-workers` numbers them): its `auto` device is cuda:(I mod the GPUs the driver
    /// lists), so a machine's workers spread over its GPUs.
    #[arg(long, default_value_t = 0, env = "ATTRIB_LOCAL_INDEX")]
    local_index: usize,
    /// How a node group's devices sum their units: auto (host), host, or nccl (NCCL on the
    /// GPUs; libnccl.so.2 from the nvidia-nccl wheel beside torch).
    #[arg(long, default_value = "auto", env = "ATTRIB_COLLECTIVE")]
    collective: String,
    /// Seconds a node group's member waits at a collective for the others (who may still be
    /// computing their units) before the round is abandoned and its units computed again.
    #[arg(
        long,
        default_value_t = attrib_worker::group::watch::DEFAULT_TIMEOUT_SECS,
        env = "ATTRIB_COLLECTIVE_TIMEOUT_SECS"
    )]
    collective_timeout_secs: u64,
    /// The coordinator's worker token (its --worker-token, or its only --token). Read from
    /// ATTRIB_WORKER_TOKEN, else ATTRIB_TOKEN.
    #[arg(long, env = "ATTRIB_WORKER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// PEM CA the coordinator's certificate chains to (https:// URLs; default: system roots).
    #[arg(long, env = "ATTRIB_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// PEM certificate this worker presents (mutual TLS: the coordinator's --worker-ca).
    #[arg(long, env = "ATTRIB_WORKER_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM key of --tls-cert.
    #[arg(long, env = "ATTRIB_WORKER_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Memory one unit may use, model included, declared to the coordinator (default: the
    /// machine's or container's memory on CPU, the GPU's memory on CUDA).
    #[arg(long, env = "ATTRIB_MEMORY_MIB")]
    memory_mib: Option<u64>,
    /// Name in the coordinator's logs and worker list (default: host:pid).
    #[arg(long, env = "ATTRIB_WORKER_NAME")]
    name: Option<String>,
    /// Serve Prometheus metrics on this address.
    #[arg(long, env = "ATTRIB_METRICS_LISTEN")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Largest gRPC message in MiB (a token-specific unit result is 4 bytes per edge).
    #[arg(long, default_value_t = 256, env = "ATTRIB_MAX_MESSAGE_MIB")]
    max_message_mib: usize,
    /// P: units held at once per device, so a device starts the next while a result is on
    /// the wire.
    #[arg(long, default_value_t = 2, env = "ATTRIB_UNITS_IN_FLIGHT")]
    units_in_flight: u32,
    /// Sleep this long before each unit (tests and demos of failover only).
    #[arg(
        long,
        default_value_t = 0,
        hide = true,
        alias = "batch-delay-ms",
        env = "ATTRIB_UNIT_DELAY_MS"
    )]
    unit_delay_ms: u64,
}

#[derive(Args)]
struct SelfTestArgs {
    /// cpu | cuda:N | auto
    #[arg(long, default_value = "cpu", env = "ATTRIB_DEVICE")]
    device: String,
    /// The folder holding tests/fixtures/, assets/ and datasets/ (a checkout, or a bundle's
    /// fixtures/). Default: the first such folder above the current directory or this
    /// executable.
    #[arg(long, env = "ATTRIB_FIXTURES")]
    fixtures: Option<PathBuf>,
    /// Run only these checks (their names as printed, comma-separated).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Print the files the checks read, relative to --fixtures, one per line, and exit.
    #[arg(long)]
    list_fixtures: bool,
}

#[derive(Args)]
struct InitArgs {
    #[arg(long, default_value_t = 12)]
    layers: usize,
    #[arg(long, default_value_t = 12)]
    heads: usize,
    #[arg(long, default_value_t = 768)]
    d_model: usize,
    #[arg(long, default_value_t = 1024)]
    n_ctx: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    attrib_worker::device::deterministic_cuda_env();
    attrib_worker::libtorch_runtime::start().map_err(anyhow::Error::msg)?;
    match Cli::parse().command {
        Command::Serve(a) => serve(a),
        Command::Attribute(a) => attribute(a),
        Command::Faithfulness(a) => faithfulness(a),
        Command::CollectiveCheck {
            devices,
            collective,
        } => {
            let devices = parse_devices(&devices)?;
            let kind = CollectiveKind::parse(&collective)?;
            println!("{}", collective_check(kind, &devices)?);
            Ok(())
        }
        Command::MemoryCheck(a) => {
            if !(a.fraction > 0.0 && a.fraction <= 1.0) {
                anyhow::bail!("--fraction must be in (0, 1], not {}", a.fraction);
            }
            let job = AttributeJob {
                model_dir: resolve_model_dir(&a.model)?,
                datasets: a.datasets,
                data: a.job.data_options(),
                settings: a.job.settings()?,
            };
            let device = parse_device(&a.device)?;
            for line in memory_check(job, device, a.fraction, a.memory_mib)? {
                println!("{line}");
            }
            Ok(())
        }
        Command::Doctor { json } => {
            let r = attrib_worker::doctor::report();
            match json {
                true => println!("{}", serde_json::to_string_pretty(&r)?),
                false => println!("{}", attrib_worker::doctor::render(&r)),
            }
            Ok(())
        }
        Command::SelfTest(a) => self_test(a),
        Command::HostCheck { device } => {
            let r = attrib_worker::host_check::measure_host(parse_device(&device)?);
            println!(
                "fp32 GEMM [240x768]x[768x3072]: {:.1} GFLOP/s ({} threads); fresh memory: {:.1} us per 4 KiB page",
                r.gemm_gflops, r.threads, r.fresh_page_us
            );
            Ok(())
        }
        Command::InitModel(a) => {
            let opts = InitOptions {
                n_layers: a.layers,
                n_heads: a.heads,
                d_model: a.d_model,
                n_ctx: a.n_ctx,
                seed: a.seed,
            };
            let cfg = write_random_model(&opts, &a.out)
                .with_context(|| format!("writing {}", a.out.display()))?;
            eprintln!(
                "wrote a random GPT-2 ({} layers, {} heads, d_model {}) to {}",
                cfg.n_layers,
                cfg.n_heads,
                cfg.d_model,
                a.out.display()
            );
            Ok(())
        }
    }
}

fn serve(a: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in files or log collectors.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let model_dir = resolve_model_dir(&a.model)?;
    let t0 = Instant::now();
    let devices = parse_local_devices(&a.device, a.local_index)?;
    let collective = CollectiveKind::parse(&a.collective)?;
    let memory_bytes = group_memory(&devices, a.memory_mib);
    let engine = Engine::start(EngineConfig {
        model_dir: model_dir.clone(),
        devices: devices.clone(),
        collective,
        unit_delay: std::time::Duration::from_millis(a.unit_delay_ms),
        memory_bytes,
        collective_timeout: std::time::Duration::from_secs(a.collective_timeout_secs.max(1)),
    })
    .with_context(|| format!("loading model {}", model_dir.display()))?;
    tracing::info!(model = %model_dir.display(), device = %engine.device, seconds = t0.elapsed().as_secs_f64(), "model loaded");
    let cfg = ServeConfig {
        coordinator: a.coordinator,
        token: a.token.or_else(|| std::env::var("ATTRIB_TOKEN").ok()),
        name: a.name.unwrap_or_else(default_worker_name),
        max_message_bytes: a.max_message_mib << 20,
        units_in_flight: a.units_in_flight.max(1) * devices.len() as u32,
        tls: ClientTls {
            ca_file: a.ca_file,
            cert_file: a.tls_cert,
            key_file: a.tls_key,
        },
        memory_bytes,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async {
        if let Some(addr) = a.metrics_listen {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .with_http_listener(addr)
                .install()
                .map_err(|e| anyhow::anyhow!("metrics on {addr}: {e}"))?;
        }
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            tracing::info!("shutting down after the units held");
            let _ = stop_tx.send(true);
        });
        serve_units(&engine, &cfg, stop_rx).await?;
        Ok(())
    })
}

/// The memory one unit may use on any of `devices`: the least a device declares. CPU
/// "devices" share the machine's memory, so each gets its share.
fn group_memory(devices: &[tch::Device], flag_mib: Option<u64>) -> u64 {
    let n_cpu = devices.iter().filter(|d| **d == tch::Device::Cpu).count() as u64;
    devices
        .iter()
        .map(|&d| match d {
            tch::Device::Cpu if flag_mib.is_none() => declared_memory(d, None) / n_cpu,
            _ => declared_memory(d, flag_mib),
        })
        .min()
        .unwrap_or(0)
}

fn default_worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "worker".into());
    format!("{host}:{}", std::process::id())
}

fn attribute(a: AttributeArgs) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let model_dir = resolve_model_dir(&a.model)?;
    let device = parse_device(&a.device)?;
    let model = Gpt2::load(&model_dir, device)
        .with_context(|| format!("loading model {}", model_dir.display()))?;
    eprintln!(
        "[attrib] model {} ({} layers, {} heads, d_model {}) on {} in {:.1}s",
        model_dir.display(),
        model.cfg.n_layers,
        model.cfg.n_heads,
        model.cfg.d_model,
        device_name(device),
        t0.elapsed().as_secs_f64()
    );
    let job = AttributeJob {
        model_dir,
        datasets: a.datasets,
        data: a.job.data_options(),
        settings: a.job.settings()?,
    };
    if a.warm_up {
        let mut one_unit = job.clone();
        // One unit, or the whole job when it is smaller than one unit.
        one_unit.data.train_size =
            (job.batches_per_unit() as u32 * job.data.batch_size).min(job.data.train_size);
        run_attribute_timed(&one_unit, &model, &mut |_, _| {}).context("the warm-up unit")?;
    }
    let t1 = Instant::now();
    let mut progress = |done: usize, total: usize| {
        eprintln!(
            "[attrib] batches {done}/{total} ({:.1}s)",
            t1.elapsed().as_secs_f64()
        );
    };
    let (scores, attributed) = run_attribute_timed(&job, &model, &mut progress)?;
    let times = attributed.times;
    let secs = t1.elapsed().as_secs_f64();
    if let Some(measured) = attributed.unit_peak_mib {
        let prompts = job.batches_per_unit() * job.data.batch_size as usize;
        let unit = UnitShape::new(prompts, scores.data.width, job.settings.points);
        let graph = model.cfg.graph(&job.settings, scores.data.width);
        let estimate = unit_bytes(&model.cfg, &graph, &unit) as f64 / (1u64 << 20) as f64;
        eprintln!(
            "[attrib] unit memory: {measured:.1} MiB measured (largest unit), {estimate:.1} MiB estimated"
        );
    }
    write_json_file(&scores, &a.out)?;
    let (train, batch) = (job.data.train_size as usize, job.data.batch_size as usize);
    let prompts = match job.settings.method {
        Method::Acdc { .. } => batch, // its first batch
        _ => (train / batch) * batch,
    };
    eprintln!(
        "[attrib] attribution {:.2}s ({:.1} prompts/s), peak RSS {:.0} MiB",
        secs,
        prompts as f64 / secs,
        peak_rss_mib().unwrap_or(f64::NAN)
    );
    // Exact patching and ACDC are forward passes only, timed as one stage.
    if !matches!(job.settings.method, Method::Exact | Method::Acdc { .. }) {
        eprintln!(
            "[attrib] time by stage: corrupt forward {:.2}s, clean forward {:.2}s, backward {:.2}s, score contraction {:.2}s",
            times.corrupt_forward, times.clean_forward, times.backward, times.contraction
        );
    }
    print_summary(&scores, a.top, &a.out);
    Ok(())
}

fn faithfulness(a: FaithfulnessArgs) -> anyhow::Result<()> {
    let model_dir = resolve_model_dir(&a.model)?;
    let model = Gpt2::load(&model_dir, parse_device(&a.device)?)
        .with_context(|| format!("loading model {}", model_dir.display()))?;
    let text = std::fs::read_to_string(&a.scores)
        .with_context(|| format!("reading {}", a.scores.display()))?;
    let scores: ScoresFile = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a scores file", a.scores.display()))?;
    let edge_counts = match a.edges {
        Some(Counts(c)) => c,
        None => attrib_proto::faithfulness::logarithmic_counts(scores.n_edges),
    };
    let job = FaithfulnessJob {
        model_dir,
        scores,
        scores_from: a.scores.display().to_string(),
        datasets: a.datasets,
        edge_counts,
    };
    let t0 = Instant::now();
    let mut progress = |done: usize, total: usize| {
        eprintln!(
            "[attrib] test batches {done}/{total} ({:.1}s)",
            t0.elapsed().as_secs_f64()
        );
    };
    let result = run_faithfulness(&job, &model, &mut progress)?;
    write_json_file(&result.curve, &a.out)?;
    print!("{}", result.curve);
    println!("curve written to {}", a.out.display());
    Ok(())
}

fn self_test(a: SelfTestArgs) -> anyhow::Result<()> {
    if a.list_fixtures {
        self_test::fixture_list()
            .iter()
            .for_each(|f| println!("{f}"));
        return Ok(());
    }
    let cfg = self_test::SelfTestConfig {
        device: parse_device(&a.device)?,
        fixtures: a.fixtures,
        only: a.only,
    };
    let summary = self_test::run_self_test(&cfg, &mut std::io::stdout())?;
    if summary.passed < summary.total {
        std::process::exit(1);
    }
    Ok(())
}

fn print_summary(scores: &ScoresFile, top: usize, out: &std::path::Path) {
    print!("{}", scores.summary(top));
    println!("scores written to {}", out.display());
}
