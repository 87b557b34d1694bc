//! When a worker dials the coordinator again, and what it says meanwhile. A lost
//! connection (a coordinator restarting) is dialed again within 5 s; a refusal the worker's
//! settings explain (plain text to TLS, an untrusted or refused certificate) needs a person,
//! so the waits grow to a minute and each one says why. Once refused, an unexplained
//! failure before the next session (under TLS 1.3 the coordinator's alert often arrives
//! after the dial, leaving only "transport error") counts as the same refusal.

use std::time::Duration;

const FIRST_WAIT: Duration = Duration::from_millis(200);
/// Longest wait between dials after a lost connection.
const LOST_CAP: Duration = Duration::from_secs(5);
/// Longest wait between dials while the coordinator refuses this worker's settings.
const REFUSED_CAP: Duration = Duration::from_secs(60);

/// The dialing state between sessions.
#[derive(Debug)]
pub struct Retry {
    wait: Duration,
    /// Why the coordinator last refused this worker, since the last session.
    refused: Option<String>,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            wait: FIRST_WAIT,
            refused: None,
        }
    }
}

impl Retry {
    /// A session was welcomed: the next failure starts afresh.
    pub fn joined(&mut self) {
        *self = Retry::default();
    }

    /// The wait before the next dial, after a failure that `refusal` explains (or none).
    pub fn after(&mut self, why: String, refusal: Option<String>) -> Duration {
        if refusal.is_some() {
            self.refused = refusal;
        }
        let wait = self.wait;
        let cap = match &self.refused {
            Some(refused) => {
                tracing::error!(reason = %refused, last_error = %why, retry_in = ?wait, "the coordinator refuses this worker's connection");
                REFUSED_CAP
            }
            None => {
                tracing::warn!(reason = %why, retry_in = ?wait, "no session with the coordinator");
                LOST_CAP
            }
        };
        self.wait = (wait * 2).min(cap);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_wait_up_to_a_minute_and_losses_up_to_five_seconds() {
        let mut r = Retry::default();
        let lost = |r: &mut Retry| r.after("lost".into(), None);
        let waits: Vec<u64> = (0..6).map(|_| lost(&mut r).as_millis() as u64).collect();
        assert_eq!(waits, [200, 400, 800, 1600, 3200, 5000]);
        r.joined();
        assert_eq!(r.after("tls".into(), Some("refused".into())), FIRST_WAIT);
        // The unexplained failures that follow are the same refusal.
        let waits: Vec<u64> = (0..9).map(|_| lost(&mut r).as_secs()).collect();
        assert_eq!(waits, [0, 0, 1, 3, 6, 12, 25, 51, 60]);
        r.joined();
        assert_eq!(lost(&mut r), FIRST_WAIT);
    }
}
