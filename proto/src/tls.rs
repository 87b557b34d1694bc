//! TLS for the callers of the coordinator (the `attrib` client and workers): which CA to
//! trust, and for mutual TLS the caller's own certificate. One helper, so that every caller
//! reads the same flags the same way.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// `--ca-file`, `--tls-cert`, `--tls-key` of a caller.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientTls {
    /// PEM CA certificate(s) the coordinator's certificate must chain to (default: the
    /// system's roots, for `https://` URLs).
    pub ca_file: Option<PathBuf>,
    /// PEM certificate and key this caller presents (mutual TLS: workers).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the CA file {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate { path: PathBuf },
    #[error("give both --tls-cert and --tls-key, or neither")]
    HalfIdentity,
    #[error("TLS files are given but the URL {0:?} is not https://")]
    NotHttps(String),
    #[error("TLS settings for {url:?}: {reason}")]
    Config { url: String, reason: String },
}

pub fn read_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.into(),
        source,
    })
}

/// The CA file a caller named, refused before dialing when it holds no PEM certificate
/// (otherwise the handshake fails later with a vaguer error).
fn check_ca_file(path: &std::path::Path, pem: &[u8]) -> Result<(), TlsError> {
    let text = String::from_utf8_lossy(pem);
    if text.contains("-----BEGIN CERTIFICATE-----") {
        return Ok(());
    }
    Err(TlsError::NoCertificate { path: path.into() })
}

impl ClientTls {
    fn is_set(&self) -> bool {
        self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some()
    }

    /// `endpoint` (for `url`) with TLS when the URL is `https://`. TLS files with an
    /// `http://` URL are refused rather than silently unused.
    pub fn apply(&self, endpoint: Endpoint, url: &str) -> Result<Endpoint, TlsError> {
        if !url.starts_with("https://") {
            return match self.is_set() {
                true => Err(TlsError::NotHttps(url.into())),
                false => Ok(endpoint),
            };
        }
        let mut cfg = ClientTlsConfig::new();
        cfg = match &self.ca_file {
            Some(ca) => {
                let pem = read_pem(ca)?;
                check_ca_file(ca, &pem)?;
                cfg.ca_certificate(Certificate::from_pem(pem))
            }
            None => cfg.with_native_roots(),
        };
        match (&self.cert_file, &self.key_file) {
            (Some(c), Some(k)) => {
                cfg = cfg.identity(Identity::from_pem(read_pem(c)?, read_pem(k)?));
            }
            (None, None) => {}
            _ => return Err(TlsError::HalfIdentity),
        }
        endpoint.tls_config(cfg).map_err(|e| TlsError::Config {
            url: url.into(),
            reason: e.to_string(),
        })
    }
}
