//! The worker's side of `WorkerGateway.OpenSession`: dial, say hello, compute what arrives,
//! and come back after the coordinator restarts or the network drops. Stops for good when the
//! coordinator refuses this worker (another model, a wrong token) or on SIGTERM, after the
//! batch in flight is answered.

use std::time::{Duration, Instant};

use attrib_proto::auth::AttachToken;
use attrib_proto::v1;
use attrib_proto::v1::coordinator_message::Msg as In;
use attrib_proto::v1::worker_gateway_client::WorkerGatewayClient;
use attrib_proto::v1::worker_message::Msg as Out;
use metrics::{counter, histogram};
use tokio::sync::{mpsc, watch};
use tonic::Code;

use super::engine::Engine;

#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// `http://host:port` of the coordinator.
    pub coordinator: String,
    pub token: Option<String>,
    /// Shown in the coordinator's logs and worker list.
    pub name: String,
    /// Largest message either way (a token-specific result is 8 bytes per edge).
    pub max_message_bytes: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the coordinator refused this worker: {0}")]
    Refused(String),
    #[error("bad coordinator URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
}

/// Why one session ended.
enum Ended {
    /// Shutdown was asked for and the session closed cleanly.
    Drained,
    /// Worth dialing again.
    Lost(String),
}

/// Serves batches until `shutdown` turns true (then finishes the batch in flight) or the
/// coordinator refuses this worker.
pub async fn serve(
    engine: &Engine,
    cfg: &ServeConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ServeError> {
    let mut backoff = Duration::from_millis(200);
    loop {
        match session(engine, cfg, &mut shutdown).await? {
            Ended::Drained => return Ok(()),
            Ended::Lost(why) => {
                if *shutdown.borrow() {
                    return Ok(());
                }
                tracing::warn!(reason = %why, retry_in = ?backoff, "no session with the coordinator");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => return Ok(()),
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn session(
    engine: &Engine,
    cfg: &ServeConfig,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Ended, ServeError> {
    let endpoint = tonic::transport::Endpoint::from_shared(cfg.coordinator.clone())
        .map_err(|e| ServeError::BadUrl {
            url: cfg.coordinator.clone(),
            reason: e.to_string(),
        })?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true);
    let channel = match endpoint.connect().await {
        Ok(c) => c,
        Err(e) => {
            return Ok(Ended::Lost(format!(
                "cannot connect to {}: {e}",
                cfg.coordinator
            )))
        }
    };
    let token = AttachToken::new(cfg.token.as_deref())
        .map_err(|s| ServeError::Refused(s.message().to_string()))?;
    let mut client = WorkerGatewayClient::with_interceptor(channel, token)
        .max_decoding_message_size(cfg.max_message_bytes)
        .max_encoding_message_size(cfg.max_message_bytes);
    let (tx, rx) = mpsc::channel::<v1::WorkerMessage>(4);
    let hello = v1::WorkerHello {
        protocol: attrib_proto::PROTOCOL_VERSION as i32,
        name: cfg.name.clone(),
        device: engine.device.clone(),
        model: Some(engine.identity.clone()),
    };
    let _ = tx.send(msg(Out::Hello(hello))).await;
    let mut inbound = match client
        .open_session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
    {
        Ok(r) => r.into_inner(),
        Err(s) => return refused_or_lost(s),
    };
    match inbound.message().await {
        Ok(Some(v1::CoordinatorMessage {
            msg: Some(In::Welcome(w)),
        })) => {
            tracing::info!(worker_id = %w.worker_id, coordinator = %cfg.coordinator, "joined the coordinator")
        }
        Ok(_) => {
            return Ok(Ended::Lost(
                "the coordinator did not welcome this worker".into(),
            ))
        }
        Err(s) => return refused_or_lost(s),
    }
    loop {
        let next = tokio::select! {
            m = inbound.message() => m,
            _ = shutdown.changed() => return Ok(drain(tx, inbound).await),
        };
        let batch = match next {
            Ok(Some(v1::CoordinatorMessage {
                msg: Some(In::Batch(b)),
            })) => b,
            Ok(Some(_)) => continue,
            Ok(None) => return Ok(Ended::Lost("the coordinator ended the session".into())),
            Err(s) => return refused_or_lost(s),
        };
        let (job, index) = (batch.job_id.clone(), batch.batch);
        let t0 = Instant::now();
        // Not raced against shutdown: a batch in flight is always answered.
        let answer = match engine.compute(batch).await {
            Ok(r) => {
                counter!("attrib_worker_batches_total", "outcome" => "done").increment(1);
                histogram!("attrib_worker_batch_seconds").record(t0.elapsed().as_secs_f64());
                Out::Result(r)
            }
            Err(e) => {
                counter!("attrib_worker_batches_total", "outcome" => "failed").increment(1);
                tracing::error!(%job, batch = index, error = %e, "batch failed");
                Out::Failure(v1::BatchFailure {
                    job_id: job,
                    batch: index,
                    error: e.to_string(),
                })
            }
        };
        if tx.send(msg(answer)).await.is_err() {
            return Ok(Ended::Lost(
                "the session closed before the answer was sent".into(),
            ));
        }
        if *shutdown.borrow() {
            return Ok(drain(tx, inbound).await);
        }
    }
}

/// Tells the coordinator no more batches are wanted and waits for it to close the session.
async fn drain(
    tx: mpsc::Sender<v1::WorkerMessage>,
    mut inbound: tonic::Streaming<v1::CoordinatorMessage>,
) -> Ended {
    let _ = tx.send(msg(Out::Draining(v1::Draining {}))).await;
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = inbound.message().await {}
    })
    .await;
    tracing::info!("drained: left the coordinator");
    Ended::Drained
}

fn refused_or_lost(s: tonic::Status) -> Result<Ended, ServeError> {
    match s.code() {
        Code::FailedPrecondition
        | Code::Unauthenticated
        | Code::PermissionDenied
        | Code::InvalidArgument => Err(ServeError::Refused(s.message().to_string())),
        _ => Ok(Ended::Lost(format!("{:?}: {}", s.code(), s.message()))),
    }
}

fn msg(m: Out) -> v1::WorkerMessage {
    v1::WorkerMessage { msg: Some(m) }
}
