//! A node group's watchdog, shared by its members and its dispatcher: the one place that
//! says a round is abandoned. A member that fails at a collective (or before it) fires it;
//! a member that waits at a collective past the deadline fires it. Every member's wait then
//! ends with the reason, each answers its unit with it (the coordinator computes the unit
//! again), and the dispatcher resets it once every member is out of the round. It owns no
//! communicator: each backend aborts its own when it sees the watch fired.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// `--collective-timeout-secs`' default: a member waits this long at a collective for the
/// others (who may still be computing their units) before it abandons the round.
pub const DEFAULT_TIMEOUT_SECS: u64 = 300;

pub struct Watch {
    timeout: Duration,
    fired: AtomicBool,
    /// The first reason given (later ones are consequences of it).
    reason: Mutex<Option<String>>,
}

impl Watch {
    pub fn new(timeout: Duration) -> Arc<Watch> {
        Arc::new(Watch {
            timeout,
            fired: AtomicBool::new(false),
            reason: Mutex::new(None),
        })
    }

    /// When a wait that starts now must give up.
    pub fn deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }

    /// Abandons the current round for every member; the first reason is kept.
    pub fn fire(&self, reason: impl Into<String>) {
        let mut r = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        if r.is_none() {
            *r = Some(reason.into());
        }
        self.fired.store(true, Ordering::SeqCst);
    }

    /// Fires for a wait at `what` that passed its deadline, and returns the error.
    pub fn timed_out(&self, rank: usize, what: &str) -> Error {
        self.fire(format!(
            "member {rank} waited {} s at {what} for the other members (--collective-timeout-secs)",
            self.timeout.as_secs_f64()
        ));
        self.error()
    }

    /// `Err` naming the reason once the round is abandoned.
    pub fn check(&self) -> Result<()> {
        match self.fired.load(Ordering::SeqCst) {
            false => Ok(()),
            true => Err(self.error()),
        }
    }

    fn error(&self) -> Error {
        let r = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        Error::RoundAbandoned(r.clone().unwrap_or_default())
    }

    /// Clears the watch for the next round and returns the reason it fired, if it did. Only
    /// the dispatcher calls it, once every member has finished the round.
    pub fn reset(&self) -> Option<String> {
        let mut r = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        self.fired.store(false, Ordering::SeqCst);
        r.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_reason_is_kept_until_reset() {
        let w = Watch::new(Duration::from_secs(2));
        assert!(w.check().is_ok());
        w.fire("member 1 failed");
        w.fire("member 0 saw it");
        let e = w.check().unwrap_err().to_string();
        assert!(
            e.contains("member 1 failed") && !e.contains("member 0"),
            "{e}"
        );
        let t = w.timed_out(0, "an all-reduce").to_string();
        assert!(t.contains("member 1 failed"), "{t}");
        assert_eq!(w.reset().as_deref(), Some("member 1 failed"));
        assert!(w.check().is_ok() && w.reset().is_none());
        let t = w.timed_out(2, "an all-reduce").to_string();
        assert!(t.contains("member 2 waited 2 s") && t.contains("--collective-timeout-secs"));
    }
}
