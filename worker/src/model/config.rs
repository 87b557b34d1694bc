//! The model's config lives in attrib-proto (the coordinator reads it too); re-exported here.

pub use attrib_proto::model_config::{ConfigError, HfGpt2Config, ModelConfig};
