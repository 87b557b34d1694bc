//! attrib's engine: GPT-2 held in libtorch as AutoCircuit's patchable graph, and
//! mask-gradient edge attribution on it. The only crate that depends on tch.

pub mod attribution;
pub mod circuit;
pub mod compute;
pub mod cuda_driver;
pub mod declared_memory;
pub mod device;
pub mod device_class;
pub mod doctor;
pub mod error;
pub mod group;
pub mod host_check;
pub mod host_tuning;
pub mod init_model;
pub mod job;
pub mod libtorch_runtime;
pub mod libtorch_version;
pub mod memory_check;
pub mod model;
pub mod model_dir;
pub mod rss;
pub mod self_test;
pub mod service;

pub use error::{Error, Result};
