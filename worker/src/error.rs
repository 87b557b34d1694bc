//! The engine's errors: each variant names its cause, so a user knows what to fix.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("model folder {dir} has no {file}")]
    MissingModelFile { dir: PathBuf, file: &'static str },
    #[error("bad model config {path}: {reason}")]
    BadConfig { path: PathBuf, reason: String },
    #[error("unsupported model: {0}")]
    Unsupported(String),
    #[error("cannot read model weights {path}: {reason}")]
    BadWeights { path: PathBuf, reason: String },
    #[error(transparent)]
    Weights(#[from] attrib_proto::safetensors_check::WeightsError),
    #[error("model weights {path} lack tensor {name}")]
    MissingTensor { path: PathBuf, name: String },
    #[error("tensor {name} in {path} has shape {got:?}, expected {expected:?}")]
    TensorShape {
        path: PathBuf,
        name: String,
        expected: Vec<i64>,
        got: Vec<i64>,
    },
    #[error("model {model:?} is neither a folder nor in the local HuggingFace cache ({searched})")]
    ModelNotFound { model: String, searched: String },
    #[error("bad device {0:?}: use auto, cpu or cuda:N")]
    BadDevice(String),
    #[error("device {device} is not available: {reason}")]
    DeviceUnavailable { device: String, reason: String },
    #[error("token id {id} is outside the model's vocabulary of {vocab}")]
    TokenOutOfVocab { id: i64, vocab: usize },
    #[error("the batch is {width} tokens wide but the graph has {seq_len} token positions")]
    SeqLenMismatch { width: usize, seq_len: usize },
    #[error("{width} tokens per prompt exceed the model's context of {n_ctx}")]
    ContextTooLong { width: usize, n_ctx: usize },
    #[error("batches of one unit must share size and width")]
    UnevenBatches,
    #[error("{scores} scores do not fit the graph's {edges} edges")]
    ScoresDoNotFitGraph { scores: usize, edges: usize },
    #[error("bad scores file: {0}")]
    BadScores(String),
    #[error("no test batch: {test_size} test prompts make no full batch of {batch_size}")]
    NoTestBatches { test_size: usize, batch_size: usize },
    #[error("no batch to attribute")]
    NoBatches,
    #[error("bad unit from the coordinator: {0}")]
    BadUnit(String),
    #[error("unit {unit}: {reason}")]
    Unit { unit: u32, reason: String },
    #[error("libtorch failed: {0}")]
    TorchPanic(String),
    #[error("the unit's job was cancelled")]
    Cancelled,
    #[error("{device} ran out of memory on a unit estimated at {estimate}: {message}")]
    OutOfMemory {
        device: String,
        estimate: String,
        message: String,
    },
    #[error("the NCCL collective cannot run here: {0} (--collective host sums without NCCL)")]
    NcclUnavailable(String),
    #[error("the NCCL collective runs on CUDA devices, not {0}")]
    NcclNeedsCuda(String),
    #[error("NCCL: {0}")]
    Nccl(String),
    #[error("the node group abandoned the round: {0}; its units are computed again")]
    RoundAbandoned(String),
    #[error("CUDA on {device}: {message}")]
    Cuda { device: String, message: String },
    #[error(
        "{0} is listed twice: a group takes each GPU once (NCCL refuses two ranks on one GPU)"
    )]
    GpuListedTwice(String),
    #[error(
        "a node group's devices must be of one device class, but {0}: start one worker per class"
    )]
    MixedDeviceClasses(String),
    #[error("a broadcast tensor must be contiguous")]
    NotContiguous,
    #[error("node group members summed vectors of {0} and {1} values")]
    MembersDisagree(usize, usize),
    #[error("the node group's summed limbs are not a sum: {0}")]
    BadLimbs(String),
    #[error("collective check: {0}")]
    CollectiveCheckFailed(String),
    #[error("memory check: {0}")]
    MemoryCheck(String),
    #[error("the engine thread is gone (it stopped after an earlier failure): restart the worker")]
    EngineGone,
    #[error("{what} died while loading the model (see the log above for its error)")]
    DiedLoading { what: &'static str },
    #[error("node group member {rank} panicked while loading the model: {message}")]
    MemberPanicked { rank: usize, message: String },
    #[error("cannot start {what}: {source}")]
    ThreadSpawn {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("no device to compute on")]
    NoDevice,
    #[error("unknown collective {0:?}: use auto, host or nccl")]
    UnknownCollective(String),
    #[error("the unit's result cannot be summed: {0}")]
    BadResult(String),
    #[error("the unit needs about {needed} but this worker has {have} ({how})")]
    TooBig {
        needed: String,
        have: String,
        how: &'static str,
    },
    #[error("self-test fixture {path} is missing: pass --fixtures DIR, the folder holding tests/fixtures/, assets/ and datasets/ (`attrib-worker self-test --list-fixtures` lists the files)")]
    MissingFixture { path: PathBuf },
    #[error("no self-test check is named {name:?}; the checks: {known}")]
    UnknownCheck { name: String, known: String },
    #[error("no self-test fixtures found above {searched}: pass --fixtures DIR (a checkout of the repository, or a bundle's fixtures/)")]
    NoFixtures { searched: String },
    #[error("{var} asks libtorch for TF32 matmuls, which the goldens' float32 tolerances do not allow: unset it")]
    Tf32Enabled { var: &'static str },
    #[error(transparent)]
    Dataset(#[from] attrib_datasets::Error),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl From<attrib_proto::model_config::ConfigError> for Error {
    fn from(e: attrib_proto::model_config::ConfigError) -> Self {
        use attrib_proto::model_config::ConfigError as C;
        match e {
            C::Io { path, source } => Error::Io { path, source },
            C::Bad { path, reason } => Error::BadConfig { path, reason },
            C::Unsupported(what) => Error::Unsupported(what),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
