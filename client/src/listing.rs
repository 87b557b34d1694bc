//! `attrib jobs`, `attrib workers`, `attrib status`, `attrib cancel` and `attrib delete`: what
//! the coordinator knows, as text lines (`output`) or JSON; an empty list says so instead of
//! printing nothing.

use attrib_proto::label::printable;
use attrib_proto::v1;

use crate::{exit, output, Client};

pub async fn jobs(client: &mut Client, json: bool) -> anyhow::Result<u8> {
    let jobs = client
        .list_jobs(v1::ListJobsRequest {})
        .await?
        .into_inner()
        .jobs;
    if json {
        let all: Vec<_> = jobs.iter().map(output::status_json).collect();
        println!("{}", serde_json::Value::Array(all));
    } else if jobs.is_empty() {
        println!("no jobs");
    } else {
        jobs.iter()
            .for_each(|s| println!("{}", output::status_line(s)));
    }
    Ok(exit::OK)
}

pub async fn workers(client: &mut Client, json: bool) -> anyhow::Result<u8> {
    let ws = client
        .list_workers(v1::ListWorkersRequest {})
        .await?
        .into_inner()
        .workers;
    if json {
        let all: Vec<_> = ws.iter().map(output::worker_json).collect();
        println!("{}", serde_json::Value::Array(all));
    } else if ws.is_empty() {
        println!("no workers connected");
    } else {
        ws.iter()
            .for_each(|w| println!("{}", output::worker_line(w)));
    }
    Ok(exit::OK)
}

pub async fn status(client: &mut Client, job: String, json: bool) -> anyhow::Result<u8> {
    let s = client
        .get_job(v1::GetJobRequest { job_id: job })
        .await?
        .into_inner();
    print_status(s.job.as_ref(), json);
    Ok(exit::OK)
}

pub async fn delete(client: &mut Client, job: String, json: bool) -> anyhow::Result<u8> {
    let r = client
        .delete_job(v1::DeleteJobRequest {
            job_id: job.clone(),
        })
        .await?
        .into_inner();
    if json {
        let out = serde_json::json!({"deleted": job, "database_bytes": r.database_bytes});
        println!("{out}");
    } else {
        let size = attrib_proto::memory::human_bytes(r.database_bytes);
        println!("deleted {}; the database now holds {size}", printable(&job));
    }
    Ok(exit::OK)
}

pub async fn cancel(client: &mut Client, job: String, json: bool) -> anyhow::Result<u8> {
    let s = client
        .cancel_job(v1::CancelJobRequest { job_id: job })
        .await?
        .into_inner();
    print_status(s.job.as_ref(), json);
    Ok(exit::OK)
}

pub fn print_status(s: Option<&v1::JobStatus>, json: bool) {
    let Some(s) = s else { return };
    if json {
        println!("{}", output::status_json(s));
    } else {
        println!("{}", output::status_text(s));
    }
}
