//! The optional shared token: servers check it on every call, clients attach it. The
//! comparison is in constant time (over SHA-256 digests, so the token's length leaks nothing).

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Metadata key carrying `Bearer <token>`.
pub const AUTH_HEADER: &str = "authorization";

/// Who a token admits, so that a refusal names the setting the caller must fix.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Role {
    /// `attrib` and other clients of the `Attrib` service.
    #[default]
    Client,
    /// `attrib-worker serve` opening a session.
    Worker,
}

impl Role {
    /// The Prometheus label and log field.
    pub fn label(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Worker => "worker",
        }
    }

    fn token_setting(self) -> &'static str {
        match self {
            Role::Client => "the client token: attrib --token or ATTRIB_TOKEN",
            Role::Worker => {
                "the worker token: ATTRIB_WORKER_TOKEN or attrib-worker --token, equal to the coordinator's --worker-token (or its only --token)"
            }
        }
    }
}

/// Why a call's token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    NotText,
    Wrong,
}

impl Refusal {
    /// The Prometheus label and log field.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Missing => "missing_token",
            Refusal::NotText => "token_not_text",
            Refusal::Wrong => "wrong_token",
        }
    }
}

/// Server side: refuses calls without the token when one is configured.
#[derive(Clone, Default)]
pub struct RequireToken {
    digest: Option<[u8; 32]>,
    role: Role,
}

impl RequireToken {
    /// `None` or an empty token: every call passes.
    pub fn new(token: Option<&str>) -> Self {
        Self::for_role(token, Role::Client)
    }

    /// A check whose refusals tell `role` callers which token to send.
    pub fn for_role(token: Option<&str>, role: Role) -> Self {
        RequireToken {
            digest: token.filter(|t| !t.is_empty()).map(digest),
            role,
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether `req` carries the token, and if not, why not.
    pub fn verify<T>(&self, req: &Request<T>) -> Result<(), Refusal> {
        let Some(expected) = &self.digest else {
            return Ok(());
        };
        let presented = req
            .metadata()
            .get(AUTH_HEADER)
            .ok_or(Refusal::Missing)?
            .to_str()
            .map_err(|_| Refusal::NotText)?;
        let token = strip_bearer(presented);
        match bool::from(digest(token).ct_eq(expected)) {
            true => Ok(()),
            false => Err(Refusal::Wrong),
        }
    }

    /// The status a caller gets for `refusal`, naming the token it must send.
    pub fn status(&self, refusal: Refusal) -> Status {
        let setting = self.role.token_setting();
        Status::unauthenticated(match refusal {
            Refusal::Missing => format!("this server needs a token ({setting})"),
            Refusal::NotText => format!("the authorization header is not text ({setting})"),
            Refusal::Wrong => format!("wrong token ({setting})"),
        })
    }

    pub fn check<T>(&self, req: &Request<T>) -> Result<(), Status> {
        self.verify(req).map_err(|r| self.status(r))
    }
}

/// The token of an `authorization` value: the auth scheme `Bearer` is case-insensitive
/// (RFC 7235 section 2.1); a bare token is taken as it is.
fn strip_bearer(value: &str) -> &str {
    match value.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("bearer ") => value[7..].trim_start(),
        _ => value,
    }
}

impl Interceptor for RequireToken {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        self.check(&req)?;
        Ok(req)
    }
}

/// Client side: attaches the token, when there is one, to every call.
#[derive(Clone, Default)]
pub struct AttachToken {
    header: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl AttachToken {
    pub fn new(token: Option<&str>) -> Result<Self, Status> {
        let header = match token.filter(|t| !t.is_empty()) {
            None => None,
            Some(t) => Some(
                format!("Bearer {t}")
                    .parse()
                    .map_err(|_| Status::invalid_argument("the token must be printable ASCII"))?,
            ),
        };
        Ok(AttachToken { header })
    }
}

impl Interceptor for AttachToken {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(h) = &self.header {
            req.metadata_mut().insert(AUTH_HEADER, h.clone());
        }
        Ok(req)
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(server: &RequireToken, client: Option<&str>) -> Result<(), Status> {
        let req = AttachToken::new(client).unwrap().call(Request::new(()))?;
        server.check(&req)
    }

    #[test]
    fn token_is_required_only_when_set() {
        let open = RequireToken::new(None);
        assert!(call(&open, None).is_ok());
        assert!(call(&open, Some("x")).is_ok());
        let closed = RequireToken::new(Some("s3cret"));
        assert!(call(&closed, Some("s3cret")).is_ok());
        let wrong = call(&closed, Some("s3cre")).unwrap_err();
        assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
        let missing = call(&closed, None).unwrap_err();
        assert!(missing.message().contains("needs a token"), "{missing:?}");
        assert!(missing.message().contains("ATTRIB_TOKEN"), "{missing:?}");
    }

    #[test]
    fn a_refused_worker_is_told_to_set_the_worker_token() {
        let gateway = RequireToken::for_role(Some("s3cret"), Role::Worker);
        let wrong = call(&gateway, Some("x")).unwrap_err();
        assert!(wrong.message().starts_with("wrong token"), "{wrong:?}");
        assert!(wrong.message().contains("ATTRIB_WORKER_TOKEN"), "{wrong:?}");
        assert_eq!(gateway.verify(&Request::new(())), Err(Refusal::Missing));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        let closed = RequireToken::new(Some("s3cret"));
        for value in ["Bearer s3cret", "bearer s3cret", "BEARER s3cret", "s3cret"] {
            let mut req = Request::new(());
            req.metadata_mut()
                .insert(AUTH_HEADER, value.parse().unwrap());
            assert_eq!(closed.verify(&req), Ok(()), "{value}");
        }
        let mut req = Request::new(());
        req.metadata_mut()
            .insert(AUTH_HEADER, "bearer s3cre".parse().unwrap());
        assert_eq!(closed.verify(&req), Err(Refusal::Wrong));
    }
}
