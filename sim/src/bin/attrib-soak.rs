//! `attrib-soak`: the chaos soak (see `attrib_sim::soak`). Runs jobs on the real coordinator
//! and simulated workers for `--seconds` while killing workers and restarting the
//! coordinator, then prints the faults injected, the jobs completed, the jobs whose scores
//! differ from a clean run and the results lost. Exits non-zero unless the last two are 0.

use std::process::ExitCode;
use std::time::Duration;

use attrib_sim::cluster::Inputs;
use attrib_sim::soak::{self, Interval, SoakConfig};
use clap::Parser;

#[derive(Parser)]
#[command(about = "Chaos soak of attrib-coordinator: worker kills and coordinator restarts")]
struct Args {
    /// Seconds of fault injection (then the jobs left are waited for).
    #[arg(long, default_value_t = 300)]
    seconds: u64,
    /// Simulated workers.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Seeds which worker is killed, and when.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds between worker kills, LO-HI (each kill is followed by a fresh worker).
    #[arg(long, default_value = "1-3")]
    kill_every: Interval,
    /// Seconds between coordinator restarts (SIGKILL, then the same port and database), LO-HI.
    #[arg(long, default_value = "15-30")]
    restart_every: Interval,
    /// Jobs kept submitted and running at once.
    #[arg(long, default_value_t = 3)]
    jobs_in_flight: usize,
    /// Units per second each simulated worker answers (jobs then take a few seconds).
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// P: units each simulated worker holds.
    #[arg(long, default_value_t = 2)]
    units_in_flight: u32,
    /// Seconds the jobs left may take to end once faults stop; those that do not are lost.
    #[arg(long, default_value_t = 120)]
    drain_seconds: u64,
    #[command(flatten)]
    inputs: Inputs,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let a = Args::parse();
    if a.workers == 0 || a.jobs_in_flight == 0 || a.rate.is_nan() || a.rate <= 0.0 {
        anyhow::bail!("--workers, --jobs-in-flight and --rate must be above 0");
    }
    let cfg = SoakConfig {
        duration: Duration::from_secs(a.seconds),
        workers: a.workers,
        seed: a.seed,
        kill_every: a.kill_every,
        restart_every: a.restart_every,
        jobs_in_flight: a.jobs_in_flight,
        rate: a.rate,
        units_in_flight: a.units_in_flight,
        drain: Duration::from_secs(a.drain_seconds),
        coordinator: a.inputs.coordinator_binary()?,
        datasets: a.inputs.datasets,
        tokenizer: a.inputs.tokenizer,
    };
    let report = soak::run(&cfg).await?;
    eprintln!(
        "[soak] units handed out again after a lost worker: {}; units a restarted coordinator resumed from its database: {}",
        report.units_retried, report.units_resumed
    );
    println!("{report}");
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
