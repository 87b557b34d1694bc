//! `--retention-days`: finished jobs older than that are deleted, with their scores, at start
//! and then periodically, so a long-lived coordinator's database does not only grow.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::now_ms;

use super::Coordinator;

/// At most this long between sweeps (less for a short retention).
const SWEEP_AT_MOST_EVERY: Duration = Duration::from_secs(3600);

/// Sweeps every so often until the coordinator closes.
pub(super) fn spawn_retention(coord: Arc<Coordinator>, keep: Duration) {
    let every = (keep / 4).clamp(Duration::from_millis(100), SWEEP_AT_MOST_EVERY);
    tokio::spawn(async move {
        let mut closing = coord.closing.subscribe();
        loop {
            coord.sweep(keep).await;
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = closing.wait_for(|&c| c) => return,
            }
        }
    });
}

impl Coordinator {
    /// Deletes every finished job that ended more than `keep` ago.
    async fn sweep(&self, keep: Duration) {
        let cutoff = now_ms() - keep.as_millis().min(i64::MAX as u128) as i64;
        let expired = match self.store.run(move |s| s.finished_before(cutoff)).await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::error!(error = %e, "retention: cannot list finished jobs");
                return;
            }
        };
        for id in expired {
            match self.delete(&id).await {
                Ok(bytes) => {
                    tracing::info!(job = %id, database_bytes = bytes, "retention: deleted")
                }
                // A running faithfulness job still evaluates its scores: next sweep.
                Err(e) => tracing::warn!(job = %id, error = %e, "retention: kept for now"),
            }
        }
    }
}
