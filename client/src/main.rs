//! `attrib`: the thin client. Talks to a coordinator over gRPC; depends on attrib-proto only.

mod cli;
mod compare;
mod draw;
mod exit;
mod explain_error;
mod faithfulness;
mod output;
mod progress;
mod request;

use std::process::ExitCode;

use anyhow::Context;
use attrib_proto::auth::AttachToken;
use attrib_proto::v1;
use attrib_proto::v1::attrib_client::AttribClient;
use attrib_proto::{write_json_file, GraphShape, ScoresFile, ScoresMetadata};
use clap::Parser;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use cli::{Cli, Command, ScoresArgs};

type Client = AttribClient<InterceptedService<Channel, AttachToken>>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(exit::OTHER);
        }
    };
    let target = explain_error::Target::of(&cli);
    match rt.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let e = target.explain(e);
            let code = exit::code_for(&e);
            match e.downcast_ref::<tonic::Status>() {
                Some(s) => eprintln!("error: {} ({:?})", s.message(), s.code()),
                None => eprintln!("error: {e:#}"),
            }
            ExitCode::from(code)
        }
    }
}

async fn connect(cli: &Cli) -> anyhow::Result<Client> {
    let endpoint = tonic::transport::Endpoint::from_shared(cli.coordinator.clone())
        .with_context(|| format!("bad coordinator URL {:?}", cli.coordinator))?;
    let target = explain_error::Target::of(cli);
    let channel = target
        .tls()
        .apply(endpoint, &cli.coordinator)?
        .connect()
        .await
        .map_err(|e| target.unreachable(e))?;
    let token = AttachToken::new(cli.token.as_deref())?;
    // Scores arrive in chunks well under this; the limit only guards against a rogue server.
    Ok(AttribClient::with_interceptor(channel, token).max_decoding_message_size(64 << 20))
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    // Drawing a scores file needs no coordinator: these commands connect only for a job.
    match &cli.command {
        Command::Render(a) => return draw::render(&cli, a).await,
        Command::Report(a) => return draw::report(&cli, a).await,
        // Comparing files never needs one.
        Command::Compare(a) => return compare::run(&cli, a),
        _ => {}
    }
    let mut client = connect(&cli).await?;
    let json = cli.json;
    match cli.command {
        Command::Submit(a) => {
            let req = request::submit_request(&a)?;
            let r = client.submit_job(req).await?.into_inner();
            if !a.wait {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"job_id": r.job_id, "units_total": r.units_total})
                    );
                } else {
                    println!("{}", r.job_id);
                }
                return Ok(exit::OK);
            }
            eprintln!("[attrib] submitted {} ({} units)", r.job_id, r.units_total);
            follow(&mut client, &r.job_id, json).await
        }
        Command::Watch { job } => follow(&mut client, &job, json).await,
        Command::Status { job } => {
            let s = client
                .get_job(v1::GetJobRequest { job_id: job })
                .await?
                .into_inner();
            print_status(s.job.as_ref(), json);
            Ok(exit::OK)
        }
        Command::Cancel { job } => {
            let s = client
                .cancel_job(v1::CancelJobRequest { job_id: job })
                .await?
                .into_inner();
            print_status(s.job.as_ref(), json);
            Ok(exit::OK)
        }
        Command::Jobs => {
            let jobs = client
                .list_jobs(v1::ListJobsRequest {})
                .await?
                .into_inner()
                .jobs;
            if json {
                let all: Vec<_> = jobs.iter().map(output::status_json).collect();
                println!("{}", serde_json::Value::Array(all));
            } else {
                jobs.iter()
                    .for_each(|s| println!("{}", output::status_line(s)));
            }
            Ok(exit::OK)
        }
        Command::Workers => {
            let ws = client
                .list_workers(v1::ListWorkersRequest {})
                .await?
                .into_inner()
                .workers;
            if json {
                let all: Vec<_> = ws.iter().map(output::worker_json).collect();
                println!("{}", serde_json::Value::Array(all));
            } else {
                ws.iter()
                    .for_each(|w| println!("{}", output::worker_line(w)));
            }
            Ok(exit::OK)
        }
        Command::Scores(a) => scores(&mut client, &a, json).await,
        Command::Faithfulness(a) => faithfulness::run(&mut client, &a, json).await,
        Command::Curve { job, out } => faithfulness::curve(&mut client, &job, &out, json).await,
        Command::Render(_) | Command::Report(_) | Command::Compare(_) => {
            unreachable!("handled before connecting")
        }
    }
}

fn print_status(s: Option<&v1::JobStatus>, json: bool) {
    let Some(s) = s else { return };
    if json {
        println!("{}", output::status_json(s));
    } else {
        println!("{}", output::status_text(s));
    }
}

/// Shows progress until the job ends; exit 1 unless it is done.
async fn follow(client: &mut Client, job: &str, json: bool) -> anyhow::Result<u8> {
    let mut stream = client
        .watch_job(v1::WatchJobRequest {
            job_id: job.to_string(),
        })
        .await?
        .into_inner();
    let mut bar = progress::Progress::new();
    let mut last = None;
    while let Some(msg) = stream.message().await? {
        if let Some(s) = msg.job {
            bar.show(&s);
            last = Some(s);
        }
    }
    let s = last.context("the coordinator closed the watch without a status")?;
    if !s.state().is_terminal() {
        anyhow::bail!(
            "the watch ended while {} was {}",
            s.job_id,
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

async fn scores(client: &mut Client, a: &ScoresArgs, json: bool) -> anyhow::Result<u8> {
    let file = fetch_scores(client, &a.job, a.dataset).await?;
    write_json_file(&file, &a.out)?;
    if json {
        println!(
            "{}",
            serde_json::json!({"out": a.out, "n_edges": file.n_edges, "clean_logit_diff": file.clean_logit_diff})
        );
        return Ok(exit::OK);
    }
    print!("{}", file.summary(a.top));
    println!("scores written to {}", a.out.display());
    Ok(exit::OK)
}

/// Reads the header and every chunk, checking that the chunks tile the vector.
async fn fetch_scores(
    client: &mut Client,
    job: &str,
    dataset: Option<u32>,
) -> anyhow::Result<ScoresFile> {
    let req = v1::GetScoresRequest {
        job_id: job.to_string(),
        dataset,
        chunk_size: 0,
    };
    let mut stream = client.get_scores(req).await?.into_inner();
    let mut header = None;
    let mut values: Vec<f64> = Vec::new();
    while let Some(msg) = stream.message().await? {
        match msg.part {
            Some(v1::get_scores_response::Part::Header(h)) => {
                values.reserve(h.n_edges as usize);
                header = Some(h);
            }
            Some(v1::get_scores_response::Part::Chunk(c)) => {
                anyhow::ensure!(
                    c.offset as usize == values.len(),
                    "scores chunk out of order"
                );
                values.extend(c.scores);
            }
            None => {}
        }
    }
    let h = header.context("the coordinator sent no scores header")?;
    let graph: GraphShape = h
        .graph
        .as_ref()
        .context("scores header without a graph")?
        .into();
    anyhow::ensure!(
        values.len() == h.n_edges as usize && values.len() == graph.n_edges(),
        "got {} scores for a graph of {} edges",
        values.len(),
        graph.n_edges()
    );
    let meta: ScoresMetadata = serde_json::from_str(&h.metadata_json).context("scores metadata")?;
    Ok(ScoresFile::from_parts(meta, &graph, &values))
}
