//! The contract every attrib role shares: the factorized graph's node names, edge order and
//! index math, the attribution settings, and the scores file. The order of a flat score
//! vector is part of the protocol, so it lives here and nowhere else. No tch, no tensors.

pub mod device_class;
pub mod exact;
pub mod faithfulness;
pub mod job_spec;
pub mod label;
pub mod memory;
pub mod scores;
pub mod settings;
pub mod topology;
pub mod units;

pub use device_class::{check_device_class, DeviceClassError, MAX_DEVICE_CLASS_CHARS};
pub use exact::ExactSum;
pub use faithfulness::{CurvePoint, FaithfulnessCurve};
pub use job_spec::JobSpec;
pub use label::{check_label, printable, LabelError, MAX_LABEL_CHARS};
pub use scores::{DataSettings, EdgeScore, ModelRecord, Reduced, ScoresFile, ScoresMetadata};
pub use settings::{
    AnswerFunction, AttributionSettings, GradFunction, MaskPoints, Method, SettingsError,
};
pub use topology::{DestKind, DestModule, Edge, GraphShape, NamedEdge, TopologyError};
pub use units::Accumulator;
pub use write_file::{write_file, write_json_file};

pub mod auth;
pub mod connect_error;
pub mod convert;
pub mod fingerprint;
pub mod model_config;
pub mod safetensors_check;
pub mod tls;
pub mod write_file;

/// The generated `attrib.v1` gRPC package (messages, clients, servers).
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("attrib.v1");
}

/// HTTP/2 flow-control windows of worker sessions, both ends: a token-wise GPT-2-small unit
/// result is ~2 MB, and several are in flight per connection.
pub const HTTP2_STREAM_WINDOW: u32 = 16 << 20;
pub const HTTP2_CONNECTION_WINDOW: u32 = 64 << 20;

/// The encoded `FileDescriptorSet` of the `attrib.v1` package (comments included), for gRPC
/// server reflection: clients such as grpcurl need no .proto file.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("attrib_v1");

/// The protocol version this build speaks (`v1::ProtocolVersion`). 6: workers state their
/// device class and their results carry it (5: heartbeats).
pub const PROTOCOL_VERSION: v1::ProtocolVersion = v1::ProtocolVersion::ProtocolVersion6;
