//! Human and JSON renderings of statuses and worker lists. Every text the server supplies
//! goes through `printable` in the human forms, so that a label or an error cannot write
//! escape sequences or extra lines to the terminal (JSON escapes on its own).

use attrib_proto::{printable, v1, AttributionSettings};
use serde_json::{json, Value};

/// The job's settings as the scores file's `settings` holds them; `None` when the job has
/// none (it failed before it was planned) or they do not convert.
fn settings(s: &v1::JobStatus) -> Option<AttributionSettings> {
    s.settings
        .as_ref()
        .and_then(|w| AttributionSettings::try_from(w).ok())
}

pub fn status_json(s: &v1::JobStatus) -> Value {
    json!({
        "job_id": s.job_id,
        "label": s.label,
        "kind": s.kind,
        "scores_job_id": s.scores_job_id,
        "state": s.state().label(),
        "method": settings(s).map(|x| x.method.name()),
        "settings": settings(s),
        "batches_per_unit": s.batches_per_unit,
        "units_total": s.units_total,
        "units_done": s.units_done,
        "units_committed": s.units_committed,
        "units_retried": s.units_retried,
        "units_resumed": s.units_resumed,
        "units_computed": s.units_computed,
        "prompts_done": s.prompts_done,
        "error": s.error,
        "device_class": s.device_class,
        "waiting_for": s.waiting_for,
        "created_unix_ms": s.created_unix_ms,
        "finished_unix_ms": s.finished_unix_ms,
        "running_seconds": s.running_seconds,
        "datasets": s.datasets.iter().map(|d| json!({
            "name": d.name,
            "train_prompts": d.train_prompts,
            "units_total": d.units_total,
            "units_done": d.units_done,
        })).collect::<Vec<_>>(),
    })
}

pub fn status_line(s: &v1::JobStatus) -> String {
    let mut line = format!(
        "{}  {:<9} {}/{} units of {} batch{}",
        printable(&s.job_id),
        s.state().label(),
        s.units_done,
        s.units_total,
        s.batches_per_unit,
        if s.batches_per_unit == 1 { "" } else { "es" }
    );
    if s.kind == "faithfulness" {
        line += &format!(" (faithfulness of {})", printable(&s.scores_job_id));
    } else if let Some(x) = settings(s) {
        line += &format!("  {}", x.summary());
    }
    if s.units_retried > 0 {
        line += &format!(", {} retried", s.units_retried);
    }
    if !s.device_class.is_empty() {
        line += &format!("  on {}", printable(&s.device_class));
    }
    if !s.waiting_for.is_empty() {
        line += &format!("  (waiting: {})", printable(&s.waiting_for));
    }
    if !s.label.is_empty() {
        line += &format!("  [{}]", printable(&s.label));
    }
    if !s.error.is_empty() {
        line += &format!("  error: {}", printable(&s.error));
    }
    line
}

pub fn status_text(s: &v1::JobStatus) -> String {
    let mut out = status_line(s);
    if !s.state().is_terminal() {
        out += &format!(
            "\n  {} units committed (kept by a coordinator restart)",
            s.units_committed
        );
    }
    for (i, d) in s.datasets.iter().enumerate() {
        out += &format!(
            "\n  dataset {i} {}: {}/{} units, {} {} prompts",
            printable(&d.name),
            d.units_done,
            d.units_total,
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
        "device_class": w.device_class,
        "current_job": w.current_job,
        "current_units": w.current_units,
        "units_in_flight": w.units_in_flight,
        "units_done": w.units_done,
        "connected_unix_ms": w.connected_unix_ms,
        "last_heard_unix_ms": w.last_heard_unix_ms,
        "memory_bytes": w.memory_bytes,
    })
}

pub fn worker_line(w: &v1::WorkerInfo) -> String {
    let doing = match w.current_units.as_slice() {
        [] => "idle".into(),
        units => format!(
            "{} units {}",
            printable(&w.current_job),
            units
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ),
    };
    let memory = match w.memory_bytes {
        0 => "memory undeclared".to_string(),
        b => format!("{} for a unit", attrib_proto::memory::human_bytes(b)),
    };
    format!(
        "{}  {}  {} ({})  {memory}  {} units done (up to {} at once)  {}  last heard {}",
        printable(&w.worker_id),
        printable(&w.name),
        printable(&w.device),
        printable(&w.device_class),
        w.units_done,
        w.units_in_flight,
        doing,
        ago(w.last_heard_unix_ms)
    )
}

/// "1.2 s ago" for a time in milliseconds since the Unix epoch.
fn ago(unix_ms: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    format!("{:.1} s ago", (now - unix_ms).max(0) as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_text_cannot_reach_the_terminal_raw() {
        let s = v1::JobStatus {
            job_id: "job-1".into(),
            label: "x\u{1b}[2J\nforged line".into(),
            error: "bad\rthing".into(),
            settings: Some((&AttributionSettings::default()).into()),
            ..Default::default()
        };
        let line = status_line(&s);
        assert!(
            !line.chars().any(attrib_proto::label::is_terminal_control),
            "{line:?}"
        );
        assert!(line.contains("x\\u{1b}[2J\\u{a}forged line"), "{line}");
        assert!(
            line.contains("mask-gradient, mask 0, logit avg_diff"),
            "{line}"
        );
        let w = v1::WorkerInfo {
            name: "w\u{1b}]0;pwned\u{7}".into(),
            device: "cpu\n".into(),
            ..Default::default()
        };
        let line = worker_line(&w);
        assert!(
            !line.chars().any(attrib_proto::label::is_terminal_control),
            "{line:?}"
        );
        assert_eq!(status_json(&s)["method"], "mask-gradient");
    }

    #[test]
    fn the_device_class_and_what_a_job_waits_for_are_shown() {
        let class = "cuda-sm90+libtorch-2.11.0+cu130";
        let s = v1::JobStatus {
            job_id: "job-1".into(),
            device_class: class.into(),
            waiting_for: format!("no connected worker of class {class}"),
            ..Default::default()
        };
        let line = status_line(&s);
        let want = format!("  on {class}  (waiting: no connected worker of class {class})");
        assert!(line.contains(&want), "{line}");
        assert_eq!(status_json(&s)["device_class"], class);
        assert_eq!(status_json(&s)["waiting_for"], s.waiting_for);
        let w = v1::WorkerInfo {
            device: "cuda:0".into(),
            device_class: class.into(),
            ..Default::default()
        };
        assert!(worker_line(&w).contains(&format!("cuda:0 ({class})")));
        assert_eq!(worker_json(&w)["device_class"], class);
    }
}
