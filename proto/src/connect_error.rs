//! Why a caller (the `attrib` client, a worker) could not talk to the coordinator, in words
//! that say what to fix, for the failures gRPC reports only as "transport error": plain text
//! to a TLS port, TLS to a plain port, a coordinator certificate the CA file does not
//! vouch for, and a caller certificate the coordinator refused. One diagnosis for both
//! callers, so that they say the same thing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::tls::ClientTls;

/// How long the TLS probe waits to connect and for the first bytes back.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A failure to reach the coordinator that the caller's settings explain.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Diagnosis {
    #[error("the coordinator at {url} speaks TLS: use https://{rest}", rest = without_scheme(url))]
    SpeaksTls { url: String },
    #[error("the coordinator at {url} does not speak TLS: use http://{rest} (and no --ca-file)", rest = without_scheme(url))]
    NotTls { url: String },
    #[error("the certificate of the coordinator at {url} is not trusted by {trust} ({detail})")]
    Untrusted {
        url: String,
        trust: String,
        detail: String,
    },
    #[error("the coordinator at {url} refused this caller's TLS certificate ({detail}): it must be signed by the coordinator's --worker-ca")]
    CertificateRefused { url: String, detail: String },
}

fn without_scheme(url: &str) -> &str {
    url.split_once("://").map_or(url, |(_, rest)| rest)
}

/// Every message in `err`'s source chain, outermost first.
fn chain(err: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut out = vec![err.to_string()];
    let mut next = err.source();
    while let Some(e) = next {
        out.push(e.to_string());
        next = e.source();
    }
    out
}

/// What went wrong calling `url` with `tls`, when `err` is a connection failure these
/// settings explain; `None` for any other error. May open one TCP connection to `url`
/// (for at most two seconds) to see whether it speaks TLS; blocks while it does.
pub fn diagnose(
    url: &str,
    tls: &ClientTls,
    err: &(dyn std::error::Error + 'static),
) -> Option<Diagnosis> {
    let chain = chain(err);
    let text = chain.join(": ");
    let url_owned = url.to_string();
    if let Some(detail) = after(&chain, "received fatal alert: ") {
        return Some(Diagnosis::CertificateRefused {
            url: url_owned,
            detail: format!("TLS alert {detail}"),
        });
    }
    if let Some(detail) = after(&chain, "invalid peer certificate: ") {
        let trust = match &tls.ca_file {
            Some(ca) => format!("CA file {}", ca.display()),
            None => "the system's CA roots (give --ca-file)".to_string(),
        };
        return Some(Diagnosis::Untrusted {
            url: url_owned,
            trust,
            detail,
        });
    }
    if url.starts_with("https://") && text.contains("InvalidContentType") {
        return Some(Diagnosis::NotTls { url: url_owned });
    }
    let transport = text.contains("transport error")
        || text.contains("connection")
        || text.contains("frame")
        || text.contains("h2 protocol error");
    if url.starts_with("http://") && transport && speaks_tls(url) {
        return Some(Diagnosis::SpeaksTls { url: url_owned });
    }
    None
}

/// What follows `marker` in the chain's rustls error (whose message starts with it).
fn after(chain: &[String], marker: &str) -> Option<String> {
    chain
        .iter()
        .find_map(|m| m.strip_prefix(marker))
        .map(|detail| detail.trim().to_string())
}

/// Whether the server at `url` answers an HTTP/2 preface with a TLS record (an alert or a
/// handshake message: content type 21 or 22, version major 3).
fn speaks_tls(url: &str) -> bool {
    let Some(addr) = socket_addr(url) else {
        return false;
    };
    let answer = (|| -> std::io::Result<[u8; 2]> {
        let mut s = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
        s.set_read_timeout(Some(PROBE_TIMEOUT))?;
        s.set_write_timeout(Some(PROBE_TIMEOUT))?;
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")?;
        let mut first = [0u8; 2];
        s.read_exact(&mut first)?;
        Ok(first)
    })();
    matches!(answer, Ok([21 | 22, 3]))
}

fn socket_addr(url: &str) -> Option<SocketAddr> {
    let uri: tonic::codegen::http::Uri = url.parse().ok()?;
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    (host, port).to_socket_addrs().ok()?.next()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[derive(Debug)]
    struct Chain(&'static str, Option<Box<Chain>>);
    impl std::fmt::Display for Chain {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for Chain {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|c| c as _)
        }
    }

    fn diagnosed(url: &str, ca: Option<&str>, inner: &'static str) -> Option<Diagnosis> {
        let tls = ClientTls {
            ca_file: ca.map(PathBuf::from),
            ..Default::default()
        };
        let err = Chain("transport error", Some(Box::new(Chain(inner, None))));
        diagnose(url, &tls, &err)
    }

    #[test]
    fn rustls_errors_become_what_to_fix() {
        let d = diagnosed(
            "https://127.0.0.1:1",
            Some("ca.pem"),
            "invalid peer certificate: UnknownIssuer",
        )
        .unwrap();
        assert_eq!(
            d.to_string(),
            "the certificate of the coordinator at https://127.0.0.1:1 is not trusted by CA file ca.pem (UnknownIssuer)"
        );
        let d = diagnosed(
            "https://127.0.0.1:1",
            None,
            "received fatal alert: UnknownCA",
        );
        assert!(matches!(d, Some(Diagnosis::CertificateRefused { .. })));
        let d = diagnosed(
            "https://h:1",
            None,
            "received corrupt message of type InvalidContentType",
        );
        assert_eq!(
            d.unwrap().to_string(),
            "the coordinator at https://h:1 does not speak TLS: use http://h:1 (and no --ca-file)"
        );
    }

    #[test]
    fn a_closed_port_is_left_to_the_caller() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}");
        assert_eq!(diagnosed(&url, None, "connection refused"), None);
    }
}
