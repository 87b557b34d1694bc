//! The coordinator's settings as a library struct: the CLI fills it, tests build it directly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// HF GPT-2 folder; tokenizes prompts and defines the model workers must hold.
    pub model_dir: PathBuf,
    /// Where gRPC listens (port 0: any free port).
    pub listen: SocketAddr,
    /// SQLite file for jobs, running sums and scores.
    pub db: PathBuf,
    /// Token every client RPC must carry (`None`: no token).
    pub token: Option<String>,
    /// Token worker sessions must carry; a client token cannot open one. `None`: workers
    /// carry `token` (one shared secret, roles not separated; a warning is logged).
    pub worker_token: Option<String>,
    /// TLS on the listener (`None`: plain text).
    pub tls: Option<crate::tls::ServerTls>,
    /// What is accepted: request settings, jobs, database size.
    pub limits: crate::admission::Limits,
    /// A worker that holds units and answers none for this long is treated as hung: its
    /// session ends and its units go to other workers.
    pub unit_timeout: Duration,
    /// Attempts per unit before its job fails.
    pub max_attempts: u32,
    /// Group commits: after this many folded units...
    pub commit_units: u32,
    /// ...or this long after the last commit, whichever comes first.
    pub commit_interval: Duration,
    /// Largest client request accepted (a SubmitJob with many datasets is the big one).
    pub max_request_bytes: usize,
    /// Largest worker message accepted (a token-specific unit result: 4 bytes per edge).
    pub max_result_bytes: usize,
    /// Prometheus /metrics listener.
    pub metrics_listen: Option<SocketAddr>,
    /// Finished jobs older than this are deleted with their scores (`None`: kept for good).
    pub retention: Option<Duration>,
    /// How often workers send a heartbeat; one silent for three of them loses its session
    /// and the units it held, whatever the unit timeout.
    pub heartbeat: Duration,
    /// HTTP/2 keepalive: a worker whose connection stops answering pings this long (network
    /// cut) is dropped and its units handed out again.
    pub keepalive: Duration,
}

impl CoordinatorConfig {
    pub fn new(model_dir: impl Into<PathBuf>, db: impl Into<PathBuf>) -> Self {
        CoordinatorConfig {
            model_dir: model_dir.into(),
            listen: "127.0.0.1:50051".parse().expect("valid address"),
            db: db.into(),
            token: None,
            worker_token: None,
            tls: None,
            limits: crate::admission::Limits::default(),
            unit_timeout: Duration::from_secs(600),
            max_attempts: 3,
            commit_units: 1000,
            commit_interval: Duration::from_millis(1000),
            max_request_bytes: 64 << 20,
            max_result_bytes: 256 << 20,
            metrics_listen: None,
            retention: None,
            heartbeat: Duration::from_secs(5),
            keepalive: Duration::from_secs(20),
        }
    }

    pub fn with_listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token.filter(|t| !t.is_empty());
        self
    }

    pub fn with_worker_token(mut self, token: Option<String>) -> Self {
        self.worker_token = token.filter(|t| !t.is_empty());
        self
    }

    pub fn with_unit_timeout(mut self, t: Duration) -> Self {
        self.unit_timeout = t;
        self
    }

    pub fn with_max_request_bytes(mut self, n: usize) -> Self {
        self.max_request_bytes = n;
        self
    }
}
