//! The contract every attrib role shares: the factorized graph's node names, edge order and
//! index math, the attribution settings, and the scores file. The order of a flat score
//! vector is part of the protocol, so it lives here and nowhere else. No tch, no tensors.

pub mod faithfulness;
pub mod scores;
pub mod settings;
pub mod topology;

pub use faithfulness::{CurvePoint, FaithfulnessCurve};
pub use scores::{
    sum_in_batch_order, BatchOrderSum, DataSettings, EdgeScore, ModelRecord, Reduced, ScoresFile,
    ScoresMetadata,
};
pub use settings::{AnswerFunction, AttributionSettings, GradFunction, MaskPoints, SettingsError};
pub use topology::{DestKind, DestModule, Edge, GraphShape, NamedEdge, TopologyError};

pub mod auth;
pub mod convert;
pub mod fingerprint;
pub mod model_config;

/// The generated `attrib.v1` gRPC package (messages, clients, servers).
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("attrib.v1");
}

/// The protocol version this build speaks (`v1::ProtocolVersion`).
pub const PROTOCOL_VERSION: v1::ProtocolVersion = v1::ProtocolVersion::ProtocolVersion1;
