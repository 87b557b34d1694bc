//! Exit codes scripts can trust (listed in `attrib --help`).

use tonic::Code;

pub const OK: u8 = 0;
pub const JOB_FAILED: u8 = 1;
pub const INVALID: u8 = 3;
pub const NOT_FOUND: u8 = 4;
pub const UNREACHABLE: u8 = 5;
pub const UNAUTHENTICATED: u8 = 6;
pub const OTHER: u8 = 7;

/// The exit code for an error: a gRPC status by its code, anything else 7.
pub fn code_for(e: &anyhow::Error) -> u8 {
    if let Some(s) = e.downcast_ref::<tonic::Status>() {
        return match s.code() {
            Code::InvalidArgument
            | Code::OutOfRange
            | Code::ResourceExhausted
            | Code::FailedPrecondition => INVALID,
            Code::NotFound => NOT_FOUND,
            Code::Unavailable => UNREACHABLE,
            Code::Unauthenticated | Code::PermissionDenied => UNAUTHENTICATED,
            _ => OTHER,
        };
    }
    if e.downcast_ref::<tonic::transport::Error>().is_some() {
        return UNREACHABLE;
    }
    OTHER
}
