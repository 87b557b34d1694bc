//! The contract every attrib role shares: the factorized graph's node names, edge order and
//! index math, the attribution settings, and the scores file. The order of a flat score
//! vector is part of the protocol, so it lives here and nowhere else. No tch, no tensors.

pub mod scores;
pub mod settings;
pub mod topology;

pub use scores::{sum_in_batch_order, DataSettings, EdgeScore, ModelRecord, ScoresFile};
pub use settings::{AnswerFunction, AttributionSettings, GradFunction, MaskPoints, SettingsError};
pub use topology::{DestKind, DestModule, Edge, GraphShape, NamedEdge, TopologyError};
