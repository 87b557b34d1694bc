//! `attrib`: the thin client. Talks to a coordinator over gRPC; depends on attrib-proto only.

mod cli;
mod compare;
mod draw;
mod exit;
mod explain_error;
mod faithfulness;
mod follow;
mod listing;
mod output;
mod progress;
mod request;
mod scores;
mod source;

use std::process::ExitCode;

use anyhow::Context;
use attrib_proto::auth::AttachToken;
use attrib_proto::printable;
use attrib_proto::v1::attrib_client::AttribClient;
use clap::Parser;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use cli::{Cli, Command, SubmitArgs};
use follow::follow;

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
            // `{:#}`, never `{:?}`: one line, no backtrace even under RUST_BACKTRACE=1.
            match e.downcast_ref::<tonic::Status>() {
                Some(s) => eprintln!("error: {} ({:?})", printable(s.message()), s.code()),
                None => eprintln!("error: {}", printable(&format!("{e:#}"))),
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
    // Drawing and comparing scores files need no coordinator: these connect only for a job.
    match &cli.command {
        Command::Render(a) => return draw::render(&cli, a).await,
        Command::Report(a) => return draw::report(&cli, a).await,
        Command::Compare(a) => return compare::run(&cli, a).await,
        // Bad settings and files exit 2 whether or not a coordinator answers.
        Command::Submit(a) => {
            let req = request::submit_request(a)?;
            return submit(&mut connect(&cli).await?, a, req, cli.json).await;
        }
        _ => {}
    }
    let mut client = connect(&cli).await?;
    let json = cli.json;
    match cli.command {
        Command::Watch { job } => follow(&mut client, &job, json).await,
        Command::Status { job } => listing::status(&mut client, job, json).await,
        Command::Cancel { job } => listing::cancel(&mut client, job, json).await,
        Command::Delete { job } => listing::delete(&mut client, job, json).await,
        Command::Jobs => listing::jobs(&mut client, json).await,
        Command::Workers => listing::workers(&mut client, json).await,
        Command::Scores(a) => scores::run(&mut client, &a, json).await,
        Command::Faithfulness(a) => faithfulness::run(&mut client, &a, json).await,
        Command::Curve { job, out } => faithfulness::curve(&mut client, &job, &out, json).await,
        Command::Render(_) | Command::Report(_) | Command::Compare(_) | Command::Submit(_) => {
            unreachable!("handled before connecting")
        }
    }
}

async fn submit(
    client: &mut Client,
    a: &SubmitArgs,
    req: attrib_proto::v1::SubmitJobRequest,
    json: bool,
) -> anyhow::Result<u8> {
    let r = client.submit_job(req).await?.into_inner();
    if !a.wait {
        if json {
            println!(
                "{}",
                serde_json::json!({"job_id": r.job_id, "units_total": r.units_total})
            );
        } else {
            println!("{}", printable(&r.job_id));
        }
        return Ok(exit::OK);
    }
    eprintln!(
        "[attrib] submitted {} ({} units)",
        printable(&r.job_id),
        r.units_total
    );
    follow(client, &r.job_id, json).await
}
