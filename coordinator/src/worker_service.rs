//! The worker-facing `attrib.v1.WorkerGateway` service: one session per connected worker.
//! A session keeps the worker supplied with up to its `units_in_flight` units and takes the
//! answers in any order; whatever ends the session (disconnect, a hung worker's timeout,
//! draining) releases every unit it held.

use std::pin::Pin;
use std::sync::Arc;

use attrib_proto::units::KeptScores;
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

/// What a worker is told when the coordinator stops (it dials again until the restart).
const SHUTTING_DOWN: &str = "the coordinator is shutting down; dial again after its restart";

/// Heartbeats a worker may miss before its session ends and its units move on.
const MISSED_HEARTBEATS: u32 = 3;

#[tonic::async_trait]
impl WorkerGateway for WorkerService {
    type OpenSessionStream =
        Pin<Box<dyn Stream<Item = Result<v1::CoordinatorMessage, Status>> + Send + 'static>>;

    async fn open_session(
        &self,
        req: Request<Streaming<v1::WorkerMessage>>,
    ) -> Result<Response<Self::OpenSessionStream>, Status> {
        if self.coord.is_leaving() {
            // Not FAILED_PRECONDITION: the worker must dial again, and find the restart.
            return Err(Status::unavailable(SHUTTING_DOWN));
        }
        let mut inbound = req.into_inner();
        // Bytes that are no protobuf message are the caller's fault, not an internal error.
        let first = inbound
            .message()
            .await
            .map_err(|s| Status::invalid_argument(format!("first message: {}", s.message())))?;
        let hello = match first {
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
        tracing::info!(%worker, name = %hello.name, device = %hello.device, units_in_flight = hello.units_in_flight, "worker joined");
        let (tx, rx) = mpsc::channel(2);
        let welcome = v1::CoordinatorMessage {
            msg: Some(Out::Welcome(v1::Welcome {
                worker_id: worker.clone(),
                progress_every_ms: (self.coord.config.unit_timeout.as_millis() / 4)
                    .clamp(1, u32::MAX as u128) as u32,
                heartbeat_every_ms: self
                    .coord
                    .config
                    .heartbeat
                    .as_millis()
                    .clamp(1, u32::MAX as u128) as u32,
            })),
        };
        tx.send(Ok(welcome))
            .await
            .map_err(|_| Status::cancelled("worker left"))?;
        let coord = self.coord.clone();
        tokio::spawn(async move {
            let why = serve_worker(&coord, &worker, &mut inbound, &tx).await;
            tracing::info!(%worker, reason = %why, "worker session ended");
            coord.release_worker(&worker, &why).await;
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// Runs one worker's session until it ends; returns why it ended (the reason its held units
/// lost an attempt). Which units the worker holds is the scheduler's to know (it caps them at
/// `units_in_flight` and requeues them when the session ends). Jobs that end meanwhile are
/// cancelled on the worker, so that it stops computing them.
async fn serve_worker(
    coord: &Coordinator,
    worker: &str,
    inbound: &mut Streaming<v1::WorkerMessage>,
    tx: &Outbound,
) -> String {
    let mut ended = coord.ended_jobs();
    // Faithfulness jobs whose score vector this worker keeps (it mirrors the same rule).
    let mut kept: KeptScores<()> = KeptScores::default();
    let mut draining = false;
    // Hung: holding units, answering none and reporting no finished pass for the unit timeout.
    let timeout = coord.config.unit_timeout;
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    // Silent: no message at all (heartbeats included) for a few heartbeats, holding units or
    // not: the process is stopped, frozen or cut off.
    let silence = coord.config.heartbeat * MISSED_HEARTBEATS;
    let silent = tokio::time::sleep(silence);
    tokio::pin!(silent);
    let mut leaving = coord.leaving();
    loop {
        let holding = coord.held(worker) > 0;
        if draining && !holding {
            return "drained".into();
        }
        tokio::select! {
            (job, unit, plan) = coord.next_unit(worker), if !draining => {
                let with_scores = plan.circuits.is_some() && kept.get(&job).is_none();
                let Some(a) = plan.assignment(&job, unit, with_scores) else {
                    return "lost by an internal error: a leased unit is not in its plan".into();
                };
                if with_scores {
                    kept.keep(&job, ());
                }
                if !holding {
                    deadline.as_mut().reset(tokio::time::Instant::now() + timeout);
                }
                let msg = v1::CoordinatorMessage { msg: Some(Out::Unit(a)) };
                if tx.send(Ok(msg)).await.is_err() {
                    return "disconnected".into();
                }
            }
            Ok(job_id) = ended.recv() => {
                let msg = v1::CoordinatorMessage { msg: Some(Out::Cancel(v1::CancelJob { job_id })) };
                if tx.send(Ok(msg)).await.is_err() {
                    return "disconnected".into();
                }
            }
            _ = crate::coordinator::left(&mut leaving) => {
                let _ = tx.send(Err(Status::unavailable(SHUTTING_DOWN))).await;
                return "ended: the coordinator is shutting down".into();
            }
            m = inbound.message() => {
                if let Ok(Some(_)) = m {
                    coord.heard_from(worker);
                    silent.as_mut().reset(tokio::time::Instant::now() + silence);
                }
                let answered = match m {
                    Ok(Some(v1::WorkerMessage { msg: Some(In::Result(r)) })) => {
                        coord.complete(worker, r).await
                    }
                    Ok(Some(v1::WorkerMessage { msg: Some(In::GroupResult(g)) })) => {
                        coord.complete_group(worker, g).await
                    }
                    Ok(Some(v1::WorkerMessage { msg: Some(In::Failure(f)) })) => {
                        coord.fail_unit(worker, &f.job_id, f.unit, &f.error).await
                    }
                    Ok(Some(v1::WorkerMessage { msg: Some(In::Draining(_)) })) => {
                        draining = true;
                        continue;
                    }
                    Ok(Some(v1::WorkerMessage { msg: Some(In::Heartbeat(_)) })) => continue,
                    // Passes go on: the units held are being computed, not hung.
                    Ok(Some(v1::WorkerMessage { msg: Some(In::Progress(_)) })) => {
                        deadline.as_mut().reset(tokio::time::Instant::now() + timeout);
                        continue;
                    }
                    Ok(Some(_)) => return "broke the protocol (an unexpected message)".into(),
                    Ok(None) | Err(_) => return "disconnected".into(),
                };
                if let Err(e) = answered {
                    tracing::error!(%worker, error = %e, "cannot record an answer");
                    return format!("lost: its answer could not be recorded ({e})");
                }
                deadline.as_mut().reset(tokio::time::Instant::now() + timeout);
            }
            _ = &mut deadline, if holding => {
                tracing::warn!(%worker, "worker hung past the unit timeout");
                let _ = tx.send(Err(Status::deadline_exceeded("unit timeout: session closed"))).await;
                return format!("timed out (no answer for {} s while holding units)", timeout.as_secs());
            }
            _ = &mut silent => {
                tracing::warn!(%worker, silent_ms = silence.as_millis() as u64, "worker silent: no heartbeat");
                let _ = tx.send(Err(Status::deadline_exceeded("no heartbeat: session closed"))).await;
                return format!("went silent (no heartbeat for {} ms)", silence.as_millis());
            }
            _ = tx.closed() => return "disconnected".into(),
        }
    }
}
