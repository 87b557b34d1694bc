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
    /// SQLite file for jobs, batch results and scores.
    pub db: PathBuf,
    /// Shared token every RPC must carry (`None`: no token).
    pub token: Option<String>,
    /// A worker that holds a batch longer than this is treated as hung: its session ends and
    /// the batch goes to another worker.
    pub batch_timeout: Duration,
    /// Attempts per batch before its job fails.
    pub max_attempts: u32,
    /// Largest client request accepted (a SubmitJob with many datasets is the big one).
    pub max_request_bytes: usize,
    /// Largest worker message accepted (a token-specific batch result: 8 bytes per edge).
    pub max_result_bytes: usize,
    /// Prometheus /metrics listener.
    pub metrics_listen: Option<SocketAddr>,
    /// HTTP/2 keepalive: a worker whose connection stops answering pings this long (network
    /// cut) is dropped and its batch handed out again.
    pub keepalive: Duration,
}

impl CoordinatorConfig {
    pub fn new(model_dir: impl Into<PathBuf>, db: impl Into<PathBuf>) -> Self {
        CoordinatorConfig {
            model_dir: model_dir.into(),
            listen: "127.0.0.1:50051".parse().expect("valid address"),
            db: db.into(),
            token: None,
            batch_timeout: Duration::from_secs(600),
            max_attempts: 3,
            max_request_bytes: 64 << 20,
            max_result_bytes: 256 << 20,
            metrics_listen: None,
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

    pub fn with_batch_timeout(mut self, t: Duration) -> Self {
        self.batch_timeout = t;
        self
    }

    pub fn with_max_request_bytes(mut self, n: usize) -> Self {
        self.max_request_bytes = n;
        self
    }
}
