//! The worker's side of `WorkerGateway.OpenSession`: dial, say hello, compute what arrives,
//! and come back after the coordinator restarts or the network drops. Up to
//! `units_in_flight` units are held at once: they queue on the model's thread, so the device
//! starts the next unit while the last result is on the wire. Stops for good when the
//! coordinator refuses this worker (another model, a wrong token) or on SIGTERM, after every
//! unit it holds is answered.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use attrib_proto::auth::AttachToken;
use attrib_proto::connect_error::diagnose;
use attrib_proto::tls::ClientTls;
use attrib_proto::units::KeptScores;
use attrib_proto::v1;
use attrib_proto::v1::coordinator_message::Msg as In;
use attrib_proto::v1::worker_gateway_client::WorkerGatewayClient;
use attrib_proto::v1::worker_message::Msg as Out;
use metrics::{counter, histogram};
use tokio::sync::{mpsc, watch};
use tonic::Code;

use super::engine::Engine;
use super::retry::Retry;
use crate::compute::{Answer, Computed, UnitRequest};

#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// `http://host:port` of the coordinator.
    pub coordinator: String,
    pub token: Option<String>,
    /// Shown in the coordinator's logs and worker list.
    pub name: String,
    /// Largest message either way (a token-specific result is 4 bytes per edge).
    pub max_message_bytes: usize,
    /// P: units held at once.
    pub units_in_flight: u32,
    /// CA and client certificate for an `https://` coordinator.
    pub tls: ClientTls,
    /// Memory declared at join: the coordinator sends no unit estimated to need more.
    pub memory_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the coordinator refused this worker: {0}")]
    Refused(String),
    #[error("bad coordinator URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error(transparent)]
    Tls(#[from] attrib_proto::tls::TlsError),
}

/// Why one session ended.
enum Ended {
    /// Shutdown was asked for and the session closed cleanly.
    Drained,
    /// Worth dialing again.
    Lost(String),
    /// This worker's URL or TLS settings do not fit the coordinator (plain text to a TLS
    /// port, an untrusted or refused certificate): the first string says what happened,
    /// the second what to fix. Dialing again helps only once a person mends one side.
    Misconfigured(String, String),
}

/// Answers from the model's thread. They outlive a session: a unit that was computing when
/// its session ended is delivered late in the next one (the coordinator folds it unless
/// another worker's result for it came first), so a coordinator restart or a network blip
/// does not throw finished work away.
struct Answers {
    tx: tokio::sync::mpsc::UnboundedSender<Answer>,
    rx: tokio::sync::mpsc::UnboundedReceiver<Answer>,
}

/// Serves units until `shutdown` turns true (then answers the units held) or the
/// coordinator refuses this worker.
pub async fn serve(
    engine: &Engine,
    cfg: &ServeConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ServeError> {
    let mut retry = Retry::default();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Answer>();
    let mut answers = Answers { tx, rx };
    let mut n = 0;
    loop {
        n += 1;
        let session = session(n, engine, cfg, &mut shutdown, &mut answers, &mut retry);
        let wait = match session.await? {
            Ended::Drained => return Ok(()),
            _ if *shutdown.borrow() => return Ok(()),
            Ended::Lost(why) => retry.after(why, None),
            Ended::Misconfigured(why, fix) => retry.after(why, Some(fix)),
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return Ok(()),
        }
    }
}

type Gateway = WorkerGatewayClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, AttachToken>,
>;

/// A session's way in and out: the messages to send, the coordinator's messages, and how
/// often to report finished passes.
struct Joined {
    tx: mpsc::Sender<v1::WorkerMessage>,
    inbound: tonic::Streaming<v1::CoordinatorMessage>,
    progress_every: Duration,
    heartbeat_every: Duration,
}

/// Session number `n` (answers of earlier sessions are late ones).
async fn session(
    n: u64,
    engine: &Engine,
    cfg: &ServeConfig,
    shutdown: &mut watch::Receiver<bool>,
    answers: &mut Answers,
    retry: &mut Retry,
) -> Result<Ended, ServeError> {
    let client = match connect(cfg).await? {
        Ok(client) => client,
        Err(lost) => return Ok(lost),
    };
    let Joined {
        tx,
        mut inbound,
        progress_every,
        heartbeat_every,
    } = match join(client, engine, cfg).await? {
        Ok(joined) => joined,
        Err(lost) => return Ok(lost),
    };
    retry.joined();
    let mut units = HeldUnits::new(n, &engine.device_class);
    // Passes the engine finished, reported while this session holds units so that a unit
    // longer than the coordinator's unit timeout is not taken for a hung worker.
    let passes = engine.passes.clone();
    let mut reported = passes.load(Ordering::Relaxed);
    let mut beat = tokio::time::interval(progress_every);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Alive, whatever the device does: the model runs on its own thread, so this runtime
    // keeps sending while a unit computes.
    let mut heartbeat = tokio::time::interval(heartbeat_every);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut draining = false;
    loop {
        if draining && units.held.is_empty() {
            return Ok(drain(tx, inbound).await);
        }
        tokio::select! {
            _ = beat.tick() => {
                let now = passes.load(Ordering::Relaxed);
                if now != reported && !units.held.is_empty() {
                    reported = now;
                    if tx.send(msg(Out::Progress(v1::UnitProgress {}))).await.is_err() {
                        return Ok(Ended::Lost("the session closed".into()));
                    }
                }
            }
            _ = heartbeat.tick() => {
                if tx.send(msg(Out::Heartbeat(v1::Heartbeat {}))).await.is_err() {
                    return Ok(Ended::Lost("the session closed".into()));
                }
            }
            m = inbound.message() => {
                let unit = match m {
                    Ok(Some(v1::CoordinatorMessage { msg: Some(In::Unit(u)) })) => u,
                    Ok(Some(v1::CoordinatorMessage { msg: Some(In::Cancel(c)) })) => {
                        units.cancel(&c.job_id);
                        continue;
                    }
                    Ok(Some(_)) => continue,
                    Ok(None) => return Ok(Ended::Lost("the coordinator ended the session".into())),
                    Err(s) => return refused_or_lost(s),
                };
                let req = units.take(unit, &passes, answers);
                if let Err(e) = engine.submit(req) {
                    return Ok(Ended::Lost(e.to_string()));
                }
            }
            Some(answer) = answers.rx.recv() => {
                let Some(out) = units.answer(answer) else { continue };
                if tx.send(msg(out)).await.is_err() {
                    return Ok(Ended::Lost("the session closed before the answer was sent".into()));
                }
            }
            _ = shutdown.changed(), if !draining => {
                // No more units; the ones held are answered first (not raced against shutdown).
                let _ = tx.send(msg(Out::Draining(v1::Draining {}))).await;
                draining = true;
            }
        }
    }
}

/// A client of the coordinator's worker gateway, or why there is none this time.
async fn connect(cfg: &ServeConfig) -> Result<Result<Gateway, Ended>, ServeError> {
    let endpoint = tonic::transport::Endpoint::from_shared(cfg.coordinator.clone())
        .map_err(|e| ServeError::BadUrl {
            url: cfg.coordinator.clone(),
            reason: e.to_string(),
        })?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .initial_stream_window_size(attrib_proto::HTTP2_STREAM_WINDOW)
        .initial_connection_window_size(attrib_proto::HTTP2_CONNECTION_WINDOW)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true);
    let endpoint = cfg.tls.apply(endpoint, &cfg.coordinator)?;
    let channel = match endpoint.connect().await {
        Ok(c) => c,
        Err(e) => {
            let why = format!("cannot connect to {}: {e}", cfg.coordinator);
            return Ok(Err(explained(cfg, e, why).await));
        }
    };
    let token = AttachToken::new(cfg.token.as_deref())
        .map_err(|s| ServeError::Refused(s.message().to_string()))?;
    Ok(Ok(WorkerGatewayClient::with_interceptor(channel, token)
        .max_decoding_message_size(cfg.max_message_bytes)
        .max_encoding_message_size(cfg.max_message_bytes)))
}

/// Says hello and waits for the coordinator's welcome.
async fn join(
    mut client: Gateway,
    engine: &Engine,
    cfg: &ServeConfig,
) -> Result<Result<Joined, Ended>, ServeError> {
    let (tx, rx) = mpsc::channel::<v1::WorkerMessage>(4);
    let hello = v1::WorkerHello {
        protocol: attrib_proto::PROTOCOL_VERSION as i32,
        name: cfg.name.clone(),
        device: engine.device.clone(),
        device_class: engine.device_class.clone(),
        model: Some(engine.identity.clone()),
        units_in_flight: cfg.units_in_flight.max(1),
        memory_bytes: cfg.memory_bytes,
    };
    let _ = tx.send(msg(Out::Hello(hello))).await;
    let mut inbound = match client
        .open_session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
    {
        Ok(r) => r.into_inner(),
        Err(s) if matches!(s.code(), Code::Unknown | Code::Unavailable) => {
            let why = format!("{:?}: {}", s.code(), s.message());
            return Ok(Err(explained(cfg, s, why).await));
        }
        Err(s) => return refused_or_lost(s).map(Err),
    };
    match inbound.message().await {
        Ok(Some(v1::CoordinatorMessage {
            msg: Some(In::Welcome(w)),
        })) => {
            tracing::info!(worker_id = %w.worker_id, coordinator = %cfg.coordinator, "joined the coordinator");
            let progress_every = Duration::from_millis(w.progress_every_ms.max(100).into());
            let heartbeat_every = Duration::from_millis(w.heartbeat_every_ms.max(10).into());
            Ok(Ok(Joined {
                tx,
                inbound,
                progress_every,
                heartbeat_every,
            }))
        }
        Ok(_) => Ok(Err(Ended::Lost(
            "the coordinator did not welcome this worker".into(),
        ))),
        Err(s) => refused_or_lost(s).map(Err),
    }
}

/// The units one session holds, their jobs' cancel flags and faithfulness jobs' scores.
struct HeldUnits {
    /// This session's number.
    n: u64,
    /// Units on the model's thread; cleared when this session ends, so that they are skipped.
    wanted: Arc<AtomicBool>,
    _skip_on_exit: ClearOnDrop,
    held: HashSet<(String, u32)>,
    /// Per job with units held: set when the coordinator cancels it.
    cancelled: HashMap<String, Arc<AtomicBool>>,
    kept: KeptScores<Arc<Vec<f64>>>,
    /// The engine's device class, stamped on every result.
    device_class: String,
}

impl HeldUnits {
    fn new(n: u64, device_class: &str) -> Self {
        let wanted = Arc::new(AtomicBool::new(true));
        HeldUnits {
            n,
            device_class: device_class.to_string(),
            _skip_on_exit: ClearOnDrop(wanted.clone()),
            wanted,
            held: HashSet::new(),
            cancelled: HashMap::new(),
            kept: KeptScores::default(),
        }
    }

    fn cancel(&mut self, job: &str) {
        if let Some(flag) = self.cancelled.remove(job) {
            tracing::info!(%job, "job cancelled: stopping its units");
            flag.store(true, Ordering::Relaxed);
        }
    }

    /// Holds `unit` and makes the engine's request for it.
    fn take(
        &mut self,
        mut unit: v1::UnitAssignment,
        passes: &Arc<std::sync::atomic::AtomicU64>,
        answers: &Answers,
    ) -> UnitRequest {
        // A faithfulness job's scores come with the session's first unit of the job.
        let scores = unit.circuits.as_mut().and_then(|c| {
            if c.scores.is_empty() {
                self.kept.get(&unit.job_id).cloned()
            } else {
                let v = Arc::new(std::mem::take(&mut c.scores));
                self.kept.keep(&unit.job_id, v.clone());
                Some(v)
            }
        });
        self.held.insert((unit.job_id.clone(), unit.unit));
        let stop = self
            .cancelled
            .entry(unit.job_id.clone())
            .or_default()
            .clone();
        UnitRequest {
            session: self.n,
            unit,
            scores,
            wanted: self.wanted.clone(),
            cancelled: stop,
            passes: passes.clone(),
            reply: answers.tx.clone(),
        }
    }

    /// What to tell the coordinator of an answer from the engine, if anything: nothing for a
    /// cancelled unit or a late failure (the coordinator has handed it out again).
    fn answer(&mut self, a: Answer) -> Option<Out> {
        let Answer {
            session,
            job,
            units,
            result,
        } = a;
        let mut late = session != self.n;
        for &u in &units {
            late |= !self.held.remove(&(job.clone(), u));
        }
        if !self.held.iter().any(|(j, _)| *j == job) {
            self.cancelled.remove(&job);
        }
        match result {
            Err(crate::Error::Cancelled) => {
                counter!("attrib_worker_units_total", "outcome" => "cancelled").increment(1);
                tracing::info!(%job, ?units, "unit stopped: its job was cancelled");
                None
            }
            Err(_) if late => None,
            Err(e) => {
                counter!("attrib_worker_units_total", "outcome" => "failed").increment(1);
                tracing::error!(%job, ?units, error = %e, "unit failed");
                Some(Out::Failure(v1::UnitFailure {
                    job_id: job,
                    unit: units[0],
                    error: e.to_string(),
                }))
            }
            Ok(computed) => {
                if late {
                    tracing::info!(%job, ?units, "delivering units finished after their session ended");
                } else {
                    counter!("attrib_worker_units_total", "outcome" => "done")
                        .increment(units.len() as u64);
                }
                let device_class = self.device_class.clone();
                Some(match computed {
                    Computed::Unit(r) => {
                        histogram!("attrib_worker_unit_seconds").record(r.seconds);
                        Out::Result(v1::UnitResult { device_class, ..r })
                    }
                    Computed::Group(g) => Out::GroupResult(v1::GroupResult { device_class, ..g }),
                })
            }
        }
    }
}

/// Clears the flag when the session ends, whichever way.
struct ClearOnDrop(Arc<AtomicBool>);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// Every unit held is answered: closes the stream and waits for the coordinator to end the
/// session.
async fn drain(
    tx: mpsc::Sender<v1::WorkerMessage>,
    mut inbound: tonic::Streaming<v1::CoordinatorMessage>,
) -> Ended {
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = inbound.message().await {}
    })
    .await;
    tracing::info!("drained: left the coordinator");
    Ended::Drained
}

/// A failed dial or call, explained when this worker's URL or TLS settings explain it
/// (`attrib_proto::connect_error`, which may probe the port: off the async threads).
async fn explained(
    cfg: &ServeConfig,
    err: impl std::error::Error + Send + Sync + 'static,
    why: String,
) -> Ended {
    let (url, tls) = (cfg.coordinator.clone(), cfg.tls.clone());
    let diagnosis = tokio::task::spawn_blocking(move || diagnose(&url, &tls, &err)).await;
    match diagnosis {
        Ok(Some(d)) => Ended::Misconfigured(why, d.to_string()),
        _ => Ended::Lost(why),
    }
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
