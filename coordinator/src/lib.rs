//! attrib's coordinator: takes jobs over gRPC, splits them into batches, hands the batches to
//! workers, and reduces their per-batch gradient sums in batch order (f64) into prune scores.
//! State lives in SQLite. No tch: the coordinator never touches a tensor.

pub mod client_service;
pub mod config;
pub mod coordinator;
pub mod error;
pub mod metrics;
pub mod model;
pub mod plan;
pub mod reduce;
pub mod scheduler;
pub mod server;
pub mod spawn;
pub mod store;
pub mod worker_service;

pub use config::CoordinatorConfig;
pub use coordinator::Coordinator;
pub use error::{Error, Result};
pub use server::{start, RunningCoordinator};
