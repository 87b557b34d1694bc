//! The coordinator's Prometheus metrics (names, help, where they are recorded) and the
//! exporter. Rates come from the counters: prompts per second = rate(attrib_prompts_total).

use std::net::SocketAddr;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::PrometheusBuilder;

/// Serves /metrics on `addr` (any path answers with the metrics).
pub fn install(addr: SocketAddr) -> Result<(), String> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full("attrib_batch_seconds".into()),
            &[
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
            ],
        )
        .map_err(|e| e.to_string())?
        .install()
        .map_err(|e| e.to_string())?;
    describe_gauge!("attrib_jobs", "active jobs by state (queued, running)");
    describe_counter!(
        "attrib_jobs_finished_total",
        "jobs that reached done, failed or cancelled, by state"
    );
    describe_counter!("attrib_jobs_submitted_total", "jobs accepted");
    describe_counter!("attrib_batches_done_total", "batch results accepted");
    describe_counter!(
        "attrib_batches_failed_total",
        "batches a worker reported as failed"
    );
    describe_counter!(
        "attrib_batches_retried_total",
        "batches handed out again (worker died, hung or failed)"
    );
    describe_histogram!(
        "attrib_batch_seconds",
        "seconds from handing a batch out to its result"
    );
    describe_counter!("attrib_prompts_total", "train prompts attributed");
    describe_gauge!("attrib_workers_connected", "workers with an open session");
    Ok(())
}

pub fn job_submitted() {
    counter!("attrib_jobs_submitted_total").increment(1);
}

pub fn job_finished(state: &'static str) {
    counter!("attrib_jobs_finished_total", "state" => state).increment(1);
}

pub fn active_jobs(queued: usize, running: usize) {
    gauge!("attrib_jobs", "state" => "queued").set(queued as f64);
    gauge!("attrib_jobs", "state" => "running").set(running as f64);
}

pub fn batch_done(seconds: f64, prompts: u32) {
    counter!("attrib_batches_done_total").increment(1);
    counter!("attrib_prompts_total").increment(prompts as u64);
    histogram!("attrib_batch_seconds").record(seconds);
}

pub fn batch_failed() {
    counter!("attrib_batches_failed_total").increment(1);
}

pub fn batch_retried() {
    counter!("attrib_batches_retried_total").increment(1);
}

pub fn workers_connected(n: usize) {
    gauge!("attrib_workers_connected").set(n as f64);
}
