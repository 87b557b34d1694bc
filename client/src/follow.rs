//! Following a job to its end (`attrib submit --wait`, `attrib watch`, `attrib faithfulness`):
//! progress on stderr, the final status on stdout, and a word when no worker is there to
//! run it (otherwise a queued job just looks stuck).

use anyhow::Context;
use attrib_proto::v1;

use crate::listing::print_status;
use crate::progress::Progress;
use crate::{exit, Client};

/// Shows progress until the job ends; exit 1 unless it is done.
pub async fn follow(client: &mut Client, job: &str, json: bool) -> anyhow::Result<u8> {
    let mut stream = client
        .watch_job(v1::WatchJobRequest {
            job_id: job.to_string(),
        })
        .await?
        .into_inner();
    let mut bar = Progress::new();
    let mut last: Option<v1::JobStatus> = None;
    while let Some(msg) = stream.message().await? {
        if let Some(s) = msg.job {
            if last.is_none() {
                warn_if_nobody_runs(client, &s).await?;
            }
            bar.show(&s);
            last = Some(s);
        }
    }
    let s = last.context("the coordinator closed the watch without a status")?;
    if !s.state().is_terminal() {
        anyhow::bail!(
            "the watch ended while {} was {}",
            attrib_proto::printable(&s.job_id),
            s.state().label()
        );
    }
    print_status(Some(&s), json);
    Ok(if s.state() == v1::JobState::Done {
        exit::OK
    } else {
        exit::JOB_FAILED
    })
}

/// Once, at the first status: a job with nothing done and no worker connected waits for one.
async fn warn_if_nobody_runs(client: &mut Client, s: &v1::JobStatus) -> anyhow::Result<()> {
    if s.state().is_terminal() || s.units_done > 0 {
        return Ok(());
    }
    let workers = client
        .list_workers(v1::ListWorkersRequest {})
        .await?
        .into_inner()
        .workers;
    if workers.is_empty() {
        eprintln!(
            "[attrib] no worker is connected: {} waits until one joins (attrib-worker serve --coordinator URL)",
            attrib_proto::printable(&s.job_id)
        );
    }
    Ok(())
}
