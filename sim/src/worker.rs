//! A simulated worker: the real `WorkerGateway` session over gRPC (hello, up to P units held,
//! results, reconnects after a lost session), answering every unit with synthetic values of
//! its real size (`Synthetic`), at full speed or a set rate. Faults can be injected to test
//! the coordinator's refusals.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use attrib_proto::auth::AttachToken;
use attrib_proto::v1;
use attrib_proto::v1::coordinator_message::Msg as In;
use attrib_proto::v1::worker_gateway_client::WorkerGatewayClient;
use attrib_proto::v1::worker_message::Msg as Out;
use attrib_proto::{AttributionSettings, GraphShape};
use prost::bytes::Bytes;
use tokio::time::Instant;

use crate::synthetic::Synthetic;

/// A misbehaviour to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Unit `unit`'s first edge sum is +∞ (outside the exact sum's range).
    NotFinite {
        unit: u32,
    },
    /// Unit `unit`'s result is sent twice: the second is a late duplicate.
    Duplicate {
        unit: u32,
    },
    /// The worker dies (its connection drops) when it is handed unit `unit`.
    Crash {
        unit: u32,
    },
    /// Unit `unit`'s result says it was computed on another device class than the hello's.
    WrongClass {
        unit: u32,
    },
}

/// The device class simulated workers state unless a test gives them another.
pub const SIM_CLASS: &str = "sim";

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub url: String,
    pub token: Option<String>,
    pub name: String,
    /// Must be the coordinator's model (shape and fingerprint).
    pub identity: v1::ModelIdentity,
    /// The device class it states (WorkerHello.device_class) and stamps on its results.
    pub device_class: String,
    /// P: units held at once.
    pub units_in_flight: u32,
    /// Most units per second this worker answers; `None`: as fast as it can.
    pub rate: Option<f64>,
    pub fault: Fault,
}

/// What simulated workers sent, shared by all of them.
#[derive(Debug, Default)]
pub struct SimStats {
    pub units: AtomicU64,
    /// Result payload bytes (edge sums and logit differences).
    pub bytes: AtomicU64,
    /// Faithfulness units received, and how many of them carried the score vector.
    pub circuit_units: AtomicU64,
    pub score_vectors: AtomicU64,
    /// Results sent per job.
    pub per_job: Mutex<HashMap<String, u64>>,
}

impl SimStats {
    /// Results sent for `job`.
    pub fn units_of(&self, job: &str) -> u64 {
        let per_job = self.per_job.lock().unwrap_or_else(|p| p.into_inner());
        per_job.get(job).copied().unwrap_or(0)
    }
}

/// Runs sessions until the coordinator refuses this worker (the error says why); a lost
/// session is dialled again after a short pause.
pub async fn run(cfg: SimConfig, synthetic: Synthetic, stats: Arc<SimStats>) -> anyhow::Result<()> {
    loop {
        match session(&cfg, &synthetic, &stats).await {
            Ok(()) => {}
            Err(Lost::Refused(why)) => {
                eprintln!("[sim] {} refused: {why}", cfg.name);
                anyhow::bail!("{}: refused: {why}", cfg.name)
            }
            Err(Lost::Crashed(why)) => anyhow::bail!(why),
            Err(Lost::Again(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

enum Lost {
    Refused(String),
    /// `Fault::Crash`: the worker is gone for good.
    Crashed(String),
    Again(#[allow(dead_code)] String),
}

fn lost(s: tonic::Status) -> Lost {
    match s.code() {
        tonic::Code::FailedPrecondition
        | tonic::Code::Unauthenticated
        | tonic::Code::PermissionDenied
        | tonic::Code::InvalidArgument => Lost::Refused(s.message().to_string()),
        _ => Lost::Again(s.message().to_string()),
    }
}

fn msg(m: Out) -> v1::WorkerMessage {
    v1::WorkerMessage { msg: Some(m) }
}

/// Sends `Heartbeat` on the session until dropped, as a real worker does beside its units.
struct Heartbeats(tokio::task::JoinHandle<()>);

impl Heartbeats {
    fn start(tx: tokio::sync::mpsc::Sender<v1::WorkerMessage>, every_ms: u32) -> Self {
        let every = Duration::from_millis(every_ms.max(10).into());
        Heartbeats(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if tx
                    .send(msg(Out::Heartbeat(v1::Heartbeat {})))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }))
    }
}

impl Drop for Heartbeats {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn session(cfg: &SimConfig, synthetic: &Synthetic, stats: &SimStats) -> Result<(), Lost> {
    let channel = tonic::transport::Endpoint::from_shared(cfg.url.clone())
        .map_err(|e| Lost::Refused(e.to_string()))?
        .tcp_nodelay(true)
        .initial_stream_window_size(attrib_proto::HTTP2_STREAM_WINDOW)
        .initial_connection_window_size(attrib_proto::HTTP2_CONNECTION_WINDOW)
        .connect()
        .await
        .map_err(|e| Lost::Again(e.to_string()))?;
    let token = AttachToken::new(cfg.token.as_deref()).map_err(lost)?;
    let mut client = WorkerGatewayClient::with_interceptor(channel, token)
        .max_decoding_message_size(256 << 20)
        .max_encoding_message_size(256 << 20);
    let (tx, rx) =
        tokio::sync::mpsc::channel::<v1::WorkerMessage>(cfg.units_in_flight as usize + 2);
    let hello = v1::WorkerHello {
        protocol: attrib_proto::PROTOCOL_VERSION as i32,
        name: cfg.name.clone(),
        device: "simulated".into(),
        device_class: cfg.device_class.clone(),
        model: Some(cfg.identity.clone()),
        units_in_flight: cfg.units_in_flight,
        memory_bytes: 0, // undeclared: it holds any unit
    };
    let _ = tx.send(msg(Out::Hello(hello))).await;
    let mut inbound = client
        .open_session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(lost)?
        .into_inner();
    let shape = |a: &v1::UnitAssignment| {
        let s = a
            .settings
            .as_ref()
            .and_then(|s| AttributionSettings::try_from(s).ok());
        GraphShape::new(
            cfg.identity.n_layers as usize,
            cfg.identity.n_heads as usize,
            &s.unwrap_or_default(),
            a.width as usize,
        )
    };
    let mut next = Instant::now();
    let mut _heartbeats = None;
    while let Some(m) = inbound.message().await.map_err(lost)? {
        let a = match m.msg {
            Some(In::Unit(a)) => a,
            Some(In::Welcome(w)) => {
                _heartbeats = Some(Heartbeats::start(tx.clone(), w.heartbeat_every_ms));
                continue;
            }
            _ => continue,
        };
        if cfg.fault == (Fault::Crash { unit: a.unit }) {
            return Err(Lost::Crashed(format!(
                "{} crashed on unit {}",
                cfg.name, a.unit
            )));
        }
        if let Some(rate) = cfg.rate {
            tokio::time::sleep_until(next).await;
            next = next.max(Instant::now()) + Duration::from_secs_f64(1.0 / rate);
        }
        // A faithfulness unit's values: per circuit and prompt, then per prompt the corrupt one.
        let n_values = match &a.circuits {
            Some(c) => {
                stats.circuit_units.fetch_add(1, Ordering::Relaxed);
                if !c.scores.is_empty() {
                    stats.score_vectors.fetch_add(1, Ordering::Relaxed);
                }
                (c.circuits.len() + 1) * a.answers.len()
            }
            None => shape(&a).n_edges(),
        };
        let r = result(cfg, synthetic, &a, n_values);
        let copies = if cfg.fault == (Fault::Duplicate { unit: a.unit }) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let bytes = r.values.len() + 4 * r.clean_logit_diffs.len();
            if tx.send(msg(Out::Result(r.clone()))).await.is_err() {
                return Err(Lost::Again("session closed".into()));
            }
            stats.units.fetch_add(1, Ordering::Relaxed);
            stats.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
            let mut per_job = stats.per_job.lock().unwrap_or_else(|p| p.into_inner());
            *per_job.entry(a.job_id.clone()).or_default() += 1;
        }
    }
    Err(Lost::Again("the coordinator ended the session".into()))
}

/// The synthetic result of unit `a` (`n_values` values), with this worker's class and fault.
fn result(
    cfg: &SimConfig,
    synthetic: &Synthetic,
    a: &v1::UnitAssignment,
    n_values: usize,
) -> v1::UnitResult {
    let mut r = synthetic.result(&a.job_id, a.unit, n_values, a.answers.len());
    r.device_class = match cfg.fault {
        Fault::WrongClass { unit } if unit == a.unit => format!("not-{}", cfg.device_class),
        _ => cfg.device_class.clone(),
    };
    if cfg.fault == (Fault::NotFinite { unit: a.unit }) {
        let mut v = r.values.to_vec();
        v[..4].copy_from_slice(&f32::INFINITY.to_le_bytes());
        r.values = Bytes::from(v);
    }
    r
}
