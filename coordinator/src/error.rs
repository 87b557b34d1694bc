//! The coordinator's errors, and the one table that turns them into gRPC statuses.

use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown job {0:?}")]
    UnknownJob(String),
    #[error("job {job} is {state}; scores exist once it is done")]
    NotDone { job: String, state: &'static str },
    #[error("job {job} is a {kind} job; {wanted}")]
    WrongKind {
        job: String,
        kind: &'static str,
        wanted: &'static str,
    },
    #[error("job {0} has no faithfulness curve yet; run `attrib faithfulness {0}`")]
    NoCurve(String),
    #[error("job {job} has {n} datasets; there is no dataset {index}")]
    NoSuchDataset { job: String, index: u32, n: usize },
    #[error("{field}: {reason}")]
    InvalidRequest { field: &'static str, reason: String },
    #[error("dataset {dataset:?}: {source}")]
    Dataset {
        dataset: String,
        source: attrib_datasets::Error,
    },
    #[error(transparent)]
    Wire(#[from] attrib_proto::convert::WireError),
    #[error("worker refused: its {what} is {worker} but the coordinator's is {coordinator}; start the worker with the coordinator's model folder")]
    ModelMismatch {
        what: &'static str,
        worker: String,
        coordinator: String,
    },
    #[error("worker refused: it speaks protocol {got}, this coordinator speaks {expected}")]
    Protocol { got: i32, expected: i32 },
    #[error("worker refused: {0}")]
    WorkerClass(attrib_proto::DeviceClassError),
    #[error("job {job} is {state}: cancel it first (`attrib cancel {job}`), then delete it")]
    NotEnded { job: String, state: String },
    #[error("job {job} is in use: faithfulness job {by} evaluates its scores; let it end first")]
    InUse { job: String, by: String },
    #[error("job {job} has already ended; it cannot end {state} too")]
    Ended { job: String, state: &'static str },
    #[error("the job was made with model {stored}, but this coordinator serves {current}")]
    ModelChanged { stored: String, current: String },
    #[error(transparent)]
    Model(#[from] attrib_proto::model_config::ConfigError),
    #[error(transparent)]
    Weights(#[from] attrib_proto::safetensors_check::WeightsError),
    #[error("model tokenizer: {0}")]
    Tokenizer(attrib_datasets::Error),
    #[error("cannot fingerprint the model: {0}")]
    Fingerprint(std::io::Error),
    #[error("database: {0}")]
    Store(#[from] rusqlite::Error),
    #[error("stored job {job} cannot be decoded: {reason}")]
    Corrupt { job: String, reason: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{what} {value} is over the limit (--{flag_name} {limit})", flag_name = flag.trim_start_matches('-'))]
    Limit {
        what: &'static str,
        value: u64,
        limit: u64,
        flag: &'static str,
    },
    #[error("{0}")]
    Exhausted(String),
    #[error("database {path}: {reason}; it was left as it is: restore it from a backup, or move it away to start with an empty one")]
    Damaged { path: String, reason: String },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("database {db} is in use by another coordinator ({holder}); stop that one, or give this one another --db")]
    DatabaseInUse { db: String, holder: String },
    #[error("database lock {path}: {source}")]
    LockFile {
        path: String,
        source: std::io::Error,
    },
    #[error("the database task stopped: {0}")]
    Join(#[from] tokio::task::JoinError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        let msg = e.to_string();
        match e {
            Error::Store(ref s) if is_full(s) => Status::resource_exhausted(format!(
                "the database cannot be written ({s}): new work is refused until there is room (delete finished jobs with `attrib delete JOB`, or free disk space); stored jobs and scores stay readable"
            )),
            Error::Limit { .. } => Status::invalid_argument(msg),
            Error::Exhausted(_) => Status::resource_exhausted(msg),
            Error::UnknownJob(_) | Error::NoCurve(_) => Status::not_found(msg),
            Error::NotDone { .. }
            | Error::WrongKind { .. }
            | Error::ModelMismatch { .. }
            | Error::Ended { .. }
            | Error::NotEnded { .. }
            | Error::InUse { .. }
            | Error::Protocol { .. }
            | Error::WorkerClass(_) => Status::failed_precondition(msg),
            Error::NoSuchDataset { .. }
            | Error::InvalidRequest { .. }
            | Error::Dataset { .. }
            | Error::Wire(_) => Status::invalid_argument(msg),
            Error::ModelChanged { .. }
            | Error::Model(_)
            | Error::Weights(_)
            | Error::Tokenizer(_)
            | Error::Fingerprint(_)
            | Error::Store(_)
            | Error::Corrupt { .. }
            | Error::Bind { .. }
            | Error::Damaged { .. }
            | Error::Tls(_)
            | Error::DatabaseInUse { .. }
            | Error::LockFile { .. }
            | Error::Join(_) => Status::internal(msg),
        }
    }
}

/// The database or its disk is full (or its size limit is reached).
pub fn is_full(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
}
