//! Simulated attrib workers for load and protocol tests: they speak the real worker protocol
//! to a real coordinator over loopback and answer with deterministic synthetic sums of the
//! job's real size, so the coordinator can be driven beyond what this machine's engines could
//! compute. Never part of `attrib-worker`.

pub mod cluster;
pub mod model;
pub mod soak;
pub mod soak_report;
pub mod synthetic;
pub mod worker;

pub use synthetic::Synthetic;
pub use worker::{run, Fault, SimConfig, SimStats, SIM_CLASS};
