//! Human and JSON renderings of statuses and worker lists.

use attrib_proto::v1;
use serde_json::{json, Value};

pub fn status_json(s: &v1::JobStatus) -> Value {
    json!({
        "job_id": s.job_id,
        "label": s.label,
        "kind": s.kind,
        "scores_job_id": s.scores_job_id,
        "state": s.state().label(),
        "batches_total": s.batches_total,
        "batches_done": s.batches_done,
        "batches_retried": s.batches_retried,
        "batches_resumed": s.batches_resumed,
        "batches_computed": s.batches_computed,
        "prompts_done": s.prompts_done,
        "error": s.error,
        "created_unix_ms": s.created_unix_ms,
        "finished_unix_ms": s.finished_unix_ms,
        "running_seconds": s.running_seconds,
        "datasets": s.datasets.iter().map(|d| json!({
            "name": d.name,
            "train_prompts": d.train_prompts,
            "batches_total": d.batches_total,
            "batches_done": d.batches_done,
        })).collect::<Vec<_>>(),
    })
}

pub fn status_line(s: &v1::JobStatus) -> String {
    let mut line = format!(
        "{}  {:<9} {}/{} batches",
        s.job_id,
        s.state().label(),
        s.batches_done,
        s.batches_total
    );
    if s.kind == "faithfulness" {
        line += &format!(" (faithfulness of {})", s.scores_job_id);
    }
    if s.batches_retried > 0 {
        line += &format!(", {} retried", s.batches_retried);
    }
    if !s.label.is_empty() {
        line += &format!("  [{}]", s.label);
    }
    if !s.error.is_empty() {
        line += &format!("  error: {}", s.error);
    }
    line
}

pub fn status_text(s: &v1::JobStatus) -> String {
    let mut out = status_line(s);
    for (i, d) in s.datasets.iter().enumerate() {
        out += &format!(
            "\n  dataset {i} {}: {}/{} batches, {} {} prompts",
            d.name,
            d.batches_done,
            d.batches_total,
            d.train_prompts,
            if s.kind == "faithfulness" {
                "test"
            } else {
                "train"
            }
        );
    }
    out
}

pub fn worker_json(w: &v1::WorkerInfo) -> Value {
    json!({
        "worker_id": w.worker_id,
        "name": w.name,
        "device": w.device,
        "current_job": w.current_job,
        "current_batch": w.current_batch,
        "batches_done": w.batches_done,
        "connected_unix_ms": w.connected_unix_ms,
    })
}

pub fn worker_line(w: &v1::WorkerInfo) -> String {
    let doing = match w.current_batch {
        Some(b) => format!("{} batch {b}", w.current_job),
        None => "idle".into(),
    };
    format!(
        "{}  {}  {}  {} batches done  {}",
        w.worker_id, w.name, w.device, w.batches_done, doing
    )
}
