//! The coordinator's Prometheus metrics (names, help, where they are recorded) and the
//! exporter. Rates come from the counters: prompts per second = rate(attrib_prompts_total).

use std::net::SocketAddr;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::PrometheusBuilder;

use crate::sums::Snapshot;

/// Serves /metrics on `addr` (any path answers with the metrics).
pub fn install(addr: SocketAddr) -> Result<(), String> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full("attrib_unit_seconds".into()),
            &[
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
            ],
        )
        .map_err(|e| e.to_string())?
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full("attrib_commit_seconds".into()),
            &[0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5],
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
    describe_counter!("attrib_units_done_total", "unit results folded");
    describe_counter!(
        "attrib_units_duplicate_total",
        "unit results ignored because the unit was already folded"
    );
    describe_counter!(
        "attrib_units_failed_total",
        "units a worker reported as failed, or whose result was refused"
    );
    describe_counter!(
        "attrib_units_retried_total",
        "units handed out again because their worker left"
    );
    describe_histogram!(
        "attrib_unit_seconds",
        "seconds a worker's device spent on a unit"
    );
    describe_counter!(
        "attrib_result_bytes_total",
        "bytes of unit results received (scores and logit differences)"
    );
    describe_counter!("attrib_prompts_total", "prompts in folded units");
    describe_counter!(
        "attrib_group_results_total",
        "node groups' results folded (each sums several units)"
    );
    describe_counter!(
        "attrib_commits_total",
        "group commits of running jobs' sums"
    );
    describe_counter!(
        "attrib_commit_bytes_total",
        "bytes written by group commits"
    );
    describe_histogram!("attrib_commit_seconds", "seconds per job's group commit");
    describe_gauge!("attrib_workers_connected", "workers with an open session");
    describe_counter!(
        "attrib_auth_failures_total",
        "calls refused for their token or worker certificate, by role (client, worker) and reason"
    );
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

pub fn result_bytes(n: usize) {
    counter!("attrib_result_bytes_total").increment(n as u64);
}

pub fn unit_done(seconds: f64, prompts: u32) {
    counter!("attrib_units_done_total").increment(1);
    counter!("attrib_prompts_total").increment(prompts as u64);
    histogram!("attrib_unit_seconds").record(seconds);
}

pub fn group_folded() {
    counter!("attrib_group_results_total").increment(1);
}

pub fn unit_duplicate() {
    counter!("attrib_units_duplicate_total").increment(1);
}

pub fn unit_failed() {
    counter!("attrib_units_failed_total").increment(1);
}

pub fn unit_retried() {
    counter!("attrib_units_retried_total").increment(1);
}

pub fn commit(seconds: f64, snap: &Snapshot) {
    counter!("attrib_commits_total").increment(1);
    let bytes: usize = snap.sums.iter().map(|(_, b)| b.len()).sum::<usize>() + snap.folded.len();
    counter!("attrib_commit_bytes_total").increment(bytes as u64);
    histogram!("attrib_commit_seconds").record(seconds);
}

pub fn workers_connected(n: usize) {
    gauge!("attrib_workers_connected").set(n as f64);
}

/// A call refused at the gate: `role` client or worker, `reason` such as `wrong_token`.
pub fn auth_failure(role: &'static str, reason: &'static str) {
    counter!("attrib_auth_failures_total", "role" => role, "reason" => reason).increment(1);
}
