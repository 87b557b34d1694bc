//! The optional shared token: servers check it on every call, clients attach it. The
//! comparison is in constant time (over SHA-256 digests, so the token's length leaks nothing).

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Metadata key carrying `Bearer <token>`.
pub const AUTH_HEADER: &str = "authorization";

/// Server side: refuses calls without the token when one is configured.
#[derive(Clone, Default)]
pub struct RequireToken {
    digest: Option<[u8; 32]>,
}

impl RequireToken {
    /// `None` or an empty token: every call passes.
    pub fn new(token: Option<&str>) -> Self {
        RequireToken {
            digest: token.filter(|t| !t.is_empty()).map(digest),
        }
    }

    pub fn check<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let Some(expected) = &self.digest else {
            return Ok(());
        };
        let presented = req
            .metadata()
            .get(AUTH_HEADER)
            .ok_or_else(|| {
                Status::unauthenticated("this server needs a token (--token / ATTRIB_TOKEN)")
            })?
            .to_str()
            .map_err(|_| Status::unauthenticated("the authorization header is not text"))?;
        let token = presented.strip_prefix("Bearer ").unwrap_or(presented);
        if bool::from(digest(token).ct_eq(expected)) {
            Ok(())
        } else {
            Err(Status::unauthenticated("wrong token"))
        }
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
    }
}
