//! The engine behind the cluster: `attrib-worker serve` dials the coordinator, receives
//! batches, and answers with their gradient sums. The model lives on one thread (`engine`);
//! the gRPC session (`session`) only converts messages and never touches a tensor.

pub mod engine;
mod retry;
pub mod session;

pub use crate::compute::EngineConfig;
pub use engine::Engine;
pub use session::{serve, ServeConfig, ServeError};
