//! TLS on the coordinator's listener (rustls through tonic): its certificate and key, and
//! optionally a CA that worker certificates must chain to (mutual TLS for workers; clients
//! still authenticate with their token and need no certificate).

use std::path::PathBuf;

use attrib_proto::tls::read_pem;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic::{Request, Status};

use crate::Result;

#[derive(Debug, Clone, PartialEq)]
pub struct ServerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Workers must present a certificate signed by this CA.
    pub worker_ca_file: Option<PathBuf>,
}

impl ServerTls {
    pub fn server_config(&self) -> Result<ServerTlsConfig> {
        let read = |p: &PathBuf| read_pem(p).map_err(|e| crate::Error::Tls(e.to_string()));
        let mut cfg = ServerTlsConfig::new().identity(Identity::from_pem(
            read(&self.cert_file)?,
            read(&self.key_file)?,
        ));
        if let Some(ca) = &self.worker_ca_file {
            // Optional at the handshake (clients have none); the worker gateway requires it.
            cfg = cfg
                .client_ca_root(Certificate::from_pem(read(ca)?))
                .client_auth_optional(true);
        }
        Ok(cfg)
    }
}

/// A worker session's caller presented a certificate that the handshake verified against
/// the worker CA.
pub fn require_worker_cert<T>(req: &Request<T>) -> std::result::Result<(), Status> {
    match req.peer_certs() {
        Some(certs) if !certs.is_empty() => Ok(()),
        _ => Err(Status::unauthenticated(
            "worker sessions need a client certificate signed by the coordinator's worker CA (--tls-cert/--tls-key on the worker)",
        )),
    }
}
