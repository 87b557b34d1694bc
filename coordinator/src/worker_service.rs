//! The worker-facing `attrib.v1.WorkerGateway` service: one session per connected worker.
//! A session hands out one batch at a time and waits for its answer; whatever ends the
//! session (disconnect, a hung worker's timeout, draining) releases the batch it held.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use attrib_proto::v1;
use attrib_proto::v1::coordinator_message::Msg as Out;
use attrib_proto::v1::worker_gateway_server::WorkerGateway;
use attrib_proto::v1::worker_message::Msg as In;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::coordinator::Coordinator;

pub struct WorkerService {
    pub coord: Arc<Coordinator>,
}

type Outbound = mpsc::Sender<Result<v1::CoordinatorMessage, Status>>;

#[tonic::async_trait]
impl WorkerGateway for WorkerService {
    type OpenSessionStream =
        Pin<Box<dyn Stream<Item = Result<v1::CoordinatorMessage, Status>> + Send + 'static>>;

    async fn open_session(
        &self,
        req: Request<Streaming<v1::WorkerMessage>>,
    ) -> Result<Response<Self::OpenSessionStream>, Status> {
        let mut inbound = req.into_inner();
        let hello = match inbound.message().await? {
            Some(v1::WorkerMessage {
                msg: Some(In::Hello(h)),
            }) => h,
            _ => {
                return Err(Status::invalid_argument(
                    "a worker session starts with WorkerHello",
                ))
            }
        };
        let worker = match self.coord.register_worker(&hello) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(name = %hello.name, error = %e, "worker refused");
                return Err(e.into());
            }
        };
        tracing::info!(%worker, name = %hello.name, device = %hello.device, "worker joined");
        let (tx, rx) = mpsc::channel(2);
        let welcome = v1::CoordinatorMessage {
            msg: Some(Out::Welcome(v1::Welcome {
                worker_id: worker.clone(),
            })),
        };
        tx.send(Ok(welcome))
            .await
            .map_err(|_| Status::cancelled("worker left"))?;
        let coord = self.coord.clone();
        tokio::spawn(async move {
            let why = serve_worker(&coord, &worker, &mut inbound, &tx).await;
            tracing::info!(%worker, reason = why, "worker session ended");
            coord.release_worker(&worker).await;
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// Runs one worker's session until it ends; returns why it ended.
async fn serve_worker(
    coord: &Coordinator,
    worker: &str,
    inbound: &mut Streaming<v1::WorkerMessage>,
    tx: &Outbound,
) -> &'static str {
    let mut draining = false;
    loop {
        if draining {
            return "worker drained";
        }
        // Idle: wait for work while watching for the worker leaving.
        let batch = tokio::select! {
            b = coord.next_batch(worker) => b,
            m = inbound.message() => match m {
                Ok(Some(v1::WorkerMessage { msg: Some(In::Draining(_)) })) => return "worker drained",
                Ok(Some(_)) => return "protocol error: a message while idle",
                Ok(None) | Err(_) => return "worker disconnected",
            },
            _ = tx.closed() => return "worker disconnected",
        };
        let (job, index) = (batch.job_id.clone(), batch.batch);
        let sent = Instant::now();
        if tx
            .send(Ok(v1::CoordinatorMessage {
                msg: Some(Out::Batch(batch)),
            }))
            .await
            .is_err()
        {
            return "worker disconnected";
        }
        // Busy: wait for the answer, at most the batch timeout.
        let deadline = tokio::time::sleep(coord.config.batch_timeout);
        tokio::pin!(deadline);
        loop {
            let msg = tokio::select! {
                m = inbound.message() => m,
                _ = &mut deadline => {
                    tracing::warn!(%worker, %job, batch = index, "worker hung past the batch timeout");
                    let _ = tx.send(Err(Status::deadline_exceeded("batch timeout: session closed"))).await;
                    return "batch timeout";
                }
            };
            match msg {
                Ok(Some(v1::WorkerMessage {
                    msg: Some(In::Result(r)),
                })) if r.job_id == job && r.batch == index => {
                    if let Err(e) = coord
                        .complete(worker, r, sent.elapsed().as_secs_f64())
                        .await
                    {
                        tracing::error!(%worker, %job, batch = index, error = %e, "cannot record a result");
                        return "result not recorded";
                    }
                    break;
                }
                Ok(Some(v1::WorkerMessage {
                    msg: Some(In::Failure(f)),
                })) if f.job_id == job && f.batch == index => {
                    if let Err(e) = coord.fail_batch(worker, &job, index, &f.error).await {
                        tracing::error!(%worker, error = %e, "cannot record a failure");
                        return "failure not recorded";
                    }
                    break;
                }
                Ok(Some(v1::WorkerMessage {
                    msg: Some(In::Draining(_)),
                })) => draining = true,
                Ok(Some(_)) => return "protocol error: an answer to another batch",
                Ok(None) | Err(_) => return "worker disconnected mid-batch",
            }
        }
    }
}
