//! Deleting finished jobs, by hand (`attrib delete`) or by age (`--retention-days`), and
//! giving their space back to the file system.

use rusqlite::OptionalExtension;

use super::{parse_state, prompt_files, Store};
use crate::error::is_full;
use crate::{Error, Result};

/// Tables whose rows belong to one job, by `job_id`.
const JOB_TABLES: [&str; 5] = ["requests", "accumulators", "progress", "scores", "curves"];

impl Store {
    /// Deletes a finished job with everything stored for it, then shrinks the file.
    /// `UnknownJob` if there is none; `NotEnded` if it is queued or running. On a full disk
    /// the reserve beside the database is given up for it, and taken back after.
    pub fn delete_job(&self, job: &str) -> Result<()> {
        let full = |r: &Result<()>| matches!(r, Err(Error::Store(e)) if is_full(e));
        let mut deleted = self.delete_rows(job);
        if full(&deleted) && self.reserve.give_up() {
            tracing::warn!(%job, "the disk is full: its reserve is given up for this delete");
            deleted = self.delete_rows(job);
        }
        deleted?;
        let mut shrunk = self.release_free_pages();
        if full(&shrunk) && self.reserve.give_up() {
            shrunk = self.release_free_pages();
        }
        self.reserve.take();
        shrunk
    }

    fn delete_rows(&self, job: &str) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let state: Option<String> = tx
            .query_row("SELECT state FROM jobs WHERE id = ?1", [job], |r| r.get(0))
            .optional()?;
        let state = state.ok_or_else(|| Error::UnknownJob(job.to_string()))?;
        match parse_state(&state) {
            Some(s) if s.is_terminal() => {}
            _ => {
                return Err(Error::NotEnded {
                    job: job.to_string(),
                    state,
                })
            }
        }
        for table in JOB_TABLES {
            tx.execute(&format!("DELETE FROM {table} WHERE job_id = ?1"), [job])?;
        }
        prompt_files::release(&tx, job)?;
        tx.execute("DELETE FROM jobs WHERE id = ?1", [job])?;
        tx.commit()?;
        Ok(())
    }

    /// Finished jobs that ended before `cutoff_ms` (ms since the Unix epoch), oldest first.
    pub fn finished_before(&self, cutoff_ms: i64) -> Result<Vec<String>> {
        Ok(self
            .final_statuses()?
            .into_iter()
            .filter(|s| s.finished_unix_ms > 0 && s.finished_unix_ms < cutoff_ms)
            .map(|s| s.job_id)
            .collect())
    }
}
