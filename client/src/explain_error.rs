//! Errors a user can act on, said so: a connection failure explained by the URL or the CA
//! file (`attrib_proto::connect_error`), and a request over the coordinator's size limit
//! named by the coordinator's flag rather than by gRPC's generic words.

use attrib_proto::connect_error::diagnose;
use attrib_proto::tls::ClientTls;
use tonic::{Code, Status};

use crate::cli::Cli;

/// The coordinator a command talks to, and how.
pub struct Target {
    url: String,
    tls: ClientTls,
}

impl Target {
    pub fn of(cli: &Cli) -> Self {
        Target {
            url: cli.coordinator.clone(),
            tls: ClientTls {
                ca_file: cli.ca_file.clone(),
                ..Default::default()
            },
        }
    }

    pub fn tls(&self) -> &ClientTls {
        &self.tls
    }

    /// The channel could not be opened: why, in the caller's terms when they explain it.
    pub fn unreachable(&self, e: tonic::transport::Error) -> anyhow::Error {
        let msg = match diagnose(&self.url, &self.tls, &e) {
            Some(d) => d.to_string(),
            None => format!("cannot reach the coordinator at {}: {e}", self.url),
        };
        Status::unavailable(msg).into()
    }

    /// `e`, or a status that says what to do about it.
    pub fn explain(&self, e: anyhow::Error) -> anyhow::Error {
        let Some(s) = e.downcast_ref::<Status>() else {
            return e;
        };
        if let Some(msg) = over_request_limit(s) {
            return Status::new(s.code(), msg).into();
        }
        if matches!(s.code(), Code::Unknown | Code::Unavailable | Code::Internal) {
            if let Some(d) = diagnose(&self.url, &self.tls, s) {
                return Status::unavailable(d.to_string()).into();
            }
        }
        e
    }
}

/// tonic's refusal of a request over the coordinator's `--max-request-mib`, reworded.
fn over_request_limit(s: &Status) -> Option<String> {
    let rest = s
        .message()
        .strip_prefix("Error, decoded message length too large: found ")?;
    let (found, rest) = rest.split_once(" bytes, the limit is: ")?;
    let limit = rest.strip_suffix(" bytes")?;
    let mib = |n: &str| n.parse::<f64>().map(|b| b / (1u64 << 20) as f64);
    let (found, limit) = (mib(found).ok()?, mib(limit).ok()?);
    Some(format!(
        "the request is {found:.1} MiB, over the coordinator's limit of {limit:.1} MiB (its --max-request-mib): submit smaller datasets or raise that flag"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tonics_size_refusal_names_the_coordinators_flag() {
        let s = Status::out_of_range(
            "Error, decoded message length too large: found 2097664 bytes, the limit is: 1048576 bytes",
        );
        assert_eq!(
            over_request_limit(&s).unwrap(),
            "the request is 2.0 MiB, over the coordinator's limit of 1.0 MiB (its --max-request-mib): submit smaller datasets or raise that flag"
        );
        assert_eq!(over_request_limit(&Status::out_of_range("other")), None);
    }
}
