//! attrib's coordinator: takes jobs over gRPC, cuts them into work units, keeps workers
//! supplied with units, and folds their f32 sums exactly into one accumulator per dataset,
//! rounded to prune scores once at the end. A running job's durable state (accumulators and
//! the set of folded units) lives in SQLite, committed in groups. No tch: the coordinator
//! never touches a tensor.

pub mod admission;
pub mod auth_gate;
pub mod client_service;
pub mod clock;
pub mod config;
pub mod coordinator;
pub mod db_lock;
pub mod error;
pub mod metrics;
pub mod model;
pub mod plan;
pub mod scheduler;
pub mod server;
pub mod spawn;
pub mod store;
pub mod sums;
pub mod tls;
pub mod worker_service;

pub use config::CoordinatorConfig;
pub use coordinator::Coordinator;
pub use error::{Error, Result};
pub use server::{start, RunningCoordinator};
