//! The check in front of each service: the token, and for worker sessions with a worker CA a
//! verified client certificate. Every refusal is counted
//! (`attrib_auth_failures_total{role,reason}`) and logged with the caller's address, but at
//! most one line per second per role and reason, with the number left out since: a fleet
//! with a stale token or a scanner must not flood the log.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use attrib_proto::auth::{RequireToken, Role};
use tonic::{Request, Status};

/// Least time between two log lines of one role and reason.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// A service's gate: `token` (whose role names the service's callers) and, when `cert`,
/// the worker certificate.
#[derive(Clone)]
pub struct AuthGate {
    token: RequireToken,
    cert: bool,
    log: Arc<RateLimitedLog>,
}

impl AuthGate {
    pub fn new(token: RequireToken, cert: bool) -> Self {
        AuthGate {
            token,
            cert,
            log: Arc::default(),
        }
    }

    fn refuse<T>(&self, req: &Request<T>, reason: &'static str, status: Status) -> Status {
        let role = self.token.role().label();
        crate::metrics::auth_failure(role, reason);
        if let Some(left_out) = self.log.admit((role, reason), Instant::now()) {
            let peer = req
                .remote_addr()
                .map_or_else(|| "unknown".to_string(), |a| a.to_string());
            tracing::warn!(%peer, role, reason, not_logged_since_last = left_out, "authentication refused");
        }
        status
    }
}

impl tonic::service::Interceptor for AuthGate {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        if self.cert {
            if let Err(s) = crate::tls::require_worker_cert(&req) {
                return Err(self.refuse(&req, "no_client_certificate", s));
            }
        }
        match self.token.verify(&req) {
            Ok(()) => Ok(req),
            Err(r) => Err(self.refuse(&req, r.label(), self.token.status(r))),
        }
    }
}

/// A log line's kind: role and reason.
type LogKey = (&'static str, &'static str);

/// Per kind: when a line was last logged and how many refusals were not logged since.
#[derive(Default)]
struct RateLimitedLog {
    windows: Mutex<HashMap<LogKey, (Instant, u64)>>,
}

impl RateLimitedLog {
    /// `Some(left out since the last line)` when a line may be logged for `key` at `now`.
    fn admit(&self, key: LogKey, now: Instant) -> Option<u64> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        match windows.get_mut(&key) {
            Some((last, left_out)) if now.duration_since(*last) < LOG_EVERY => {
                *left_out += 1;
                None
            }
            Some((last, left_out)) => {
                *last = now;
                Some(std::mem::take(left_out))
            }
            None => {
                windows.insert(key, (now, 0));
                Some(0)
            }
        }
    }
}

/// The gates of the client service and the worker gateway.
pub fn gates(
    client_token: Option<&str>,
    worker_token: Option<&str>,
    worker_cert: bool,
) -> (AuthGate, AuthGate) {
    (
        AuthGate::new(RequireToken::for_role(client_token, Role::Client), false),
        AuthGate::new(
            RequireToken::for_role(worker_token, Role::Worker),
            worker_cert,
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_second_per_key_with_the_count_left_out() {
        let log = RateLimitedLog::default();
        let t0 = Instant::now();
        let key = ("worker", "wrong_token");
        assert_eq!(log.admit(key, t0), Some(0));
        assert_eq!(log.admit(key, t0 + Duration::from_millis(10)), None);
        assert_eq!(log.admit(("client", "wrong_token"), t0), Some(0));
        assert_eq!(log.admit(key, t0 + Duration::from_millis(500)), None);
        assert_eq!(log.admit(key, t0 + Duration::from_millis(1001)), Some(2));
        assert_eq!(log.admit(key, t0 + Duration::from_millis(1002)), None);
    }
}
