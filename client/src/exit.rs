//! Exit codes scripts can trust. `TABLE` is the one list: `attrib --help` prints it and a test
//! checks that docs/cluster.md says the same.

use attrib_proto::{LabelError, SettingsError};
use tonic::Code;

pub const OK: u8 = 0;
pub const JOB_FAILED: u8 = 1;
/// Also what clap exits with for its own usage errors, so every bad command line exits 2.
pub const USAGE: u8 = 2;
pub const INVALID: u8 = 3;
pub const NOT_FOUND: u8 = 4;
pub const UNREACHABLE: u8 = 5;
pub const UNAUTHENTICATED: u8 = 6;
pub const OTHER: u8 = 7;

/// Every exit code and what it means, in order.
pub const TABLE: &[(u8, &str)] = &[
    (OK, "ok"),
    (JOB_FAILED, "the job failed or was cancelled"),
    (
        USAGE,
        "bad usage: an unknown flag or a bad value, whether clap or attrib's own checks find it",
    ),
    (INVALID, "the coordinator refused the input"),
    (NOT_FOUND, "unknown job"),
    (UNREACHABLE, "coordinator unreachable"),
    (UNAUTHENTICATED, "wrong or missing token"),
    (OTHER, "anything else"),
];

/// `TABLE` as one sentence: "0 ok; 1 the job failed or was cancelled; …".
pub fn table_text() -> String {
    TABLE
        .iter()
        .map(|(code, meaning)| format!("{code} {meaning}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A bad command-line value found after clap parsed the line (a dataset that is not a
/// regular file, an output format attrib cannot write): it exits `USAGE`, as clap's do.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadValue(pub String);

/// The exit code for an error: a gRPC status by its code, a bad value 2, anything else 7.
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
    // Only the command line makes these here: settings and labels from the flags.
    if e.downcast_ref::<BadValue>().is_some()
        || e.downcast_ref::<SettingsError>().is_some()
        || e.downcast_ref::<LabelError>().is_some()
    {
        return USAGE;
    }
    OTHER
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn clap_usage_errors_share_the_usage_code() {
        let Err(e) = crate::cli::Cli::try_parse_from(["attrib", "--no-such-flag"]) else {
            panic!("an unknown flag parsed");
        };
        assert_eq!(e.exit_code(), i32::from(USAGE));
        let codes: Vec<u8> = TABLE.iter().map(|(c, _)| *c).collect();
        assert_eq!(
            codes,
            (0..=OTHER).collect::<Vec<_>>(),
            "one line per code, in order"
        );
    }

    #[test]
    fn the_docs_list_the_same_exit_codes() {
        let docs = include_str!("../../docs/cluster.md");
        let flat = docs.split_whitespace().collect::<Vec<_>>().join(" ");
        let line = format!("exit codes: {}.", table_text());
        assert!(flat.contains(&line), "docs/cluster.md must say: {line}");
    }

    #[test]
    fn bad_values_exit_as_usage_errors() {
        let e = anyhow::Error::new(BadValue("--out x.pdf".into()));
        assert_eq!(code_for(&e), USAGE);
        let e = anyhow::Error::new(SettingsError::MaskPoints).context("settings");
        assert_eq!(code_for(&e), USAGE);
    }
}
