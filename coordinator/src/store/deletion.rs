//! Deleting finished jobs, by hand (`attrib delete`) or by age (`--retention-days`), and
//! giving their space back to the file system.

use rusqlite::OptionalExtension;

use super::{parse_state, prompt_files, Store};
use crate::error::is_full;
use crate::{Error, Result};

/// Pages one step of `release_free_pages` moves (1 MiB of 4 KiB pages).
const VACUUM_STEP_PAGES: i64 = 256;

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

    /// Returns pages freed by deleted rows to the file system, a step at a time: each step
    /// moves up to `VACUUM_STEP_PAGES` pages from the end of the file into free ones, then
    /// checkpoints the log into the main file, which shrinks, and cuts the log back. In
    /// steps, so that the log (which needs disk space) stays small on a nearly full disk.
    pub fn release_free_pages(&self) -> Result<()> {
        let conn = self.conn();
        loop {
            let free: i64 = conn.pragma_query_value(None, "freelist_count", |r| r.get(0))?;
            if free > 0 {
                // The pragma frees pages as it is stepped: step it to the end.
                let mut stmt =
                    conn.prepare(&format!("PRAGMA incremental_vacuum({VACUUM_STEP_PAGES})"))?;
                let mut rows = stmt.query([])?;
                while rows.next()?.is_some() {}
            }
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            if free <= VACUUM_STEP_PAGES {
                return Ok(());
            }
        }
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

#[cfg(test)]
mod tests {
    use attrib_proto::v1;

    use super::super::prompt_files::stored_text_bytes;
    use super::*;

    fn request(texts: &[&str]) -> v1::SubmitJobRequest {
        v1::SubmitJobRequest {
            datasets: vec![v1::DatasetSpec {
                name: "d".into(),
                files: texts
                    .iter()
                    .map(|t| v1::PromptFileText {
                        name: "f".into(),
                        json: t.to_string(),
                    })
                    .collect(),
            }],
            ..Default::default()
        }
    }

    fn finish(store: &Store, job: &str, ended_ms: i64) {
        let status = v1::JobStatus {
            job_id: job.into(),
            state: v1::JobState::Done as i32,
            finished_unix_ms: ended_ms,
            ..Default::default()
        };
        store.finish_job(job, &[], &status).unwrap();
    }

    #[test]
    fn prompt_files_are_stored_once_and_go_with_the_last_job_that_uses_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let store = Store::open(&path, 0).unwrap();
        let (ioi, other) = ("i".repeat(300_000), "o".repeat(1000));
        let a = store.insert_job(request(&[&ioi]), "fp", 1).unwrap();
        let b = store.insert_job(request(&[&ioi, &other]), "fp", 2).unwrap();
        let text_bytes = || stored_text_bytes(&store.conn());
        assert_eq!(text_bytes(), 301_000, "the shared file once");
        assert_eq!(store.request(&a).unwrap(), request(&[&ioi]));
        assert_eq!(store.request(&b).unwrap(), request(&[&ioi, &other]));

        let refused = store.delete_job(&a);
        assert!(
            matches!(refused, Err(Error::NotEnded { .. })),
            "{refused:?}"
        );
        assert!(matches!(
            store.delete_job("job-9"),
            Err(Error::UnknownJob(_))
        ));
        finish(&store, &a, 10);
        finish(&store, &b, 20);
        store.release_free_pages().unwrap();
        let size = || std::fs::metadata(&path).unwrap().len();
        let before = size();
        store.delete_job(&a).unwrap();
        assert_eq!(text_bytes(), 301_000, "b still uses the shared file");
        assert!(matches!(store.request(&a), Err(Error::UnknownJob(_))));
        assert!(matches!(store.final_status(&a), Err(Error::UnknownJob(_))));
        store.delete_job(&b).unwrap();
        assert_eq!(text_bytes(), 0);
        assert!(
            size() + 250_000 <= before,
            "the file shrank: {before} -> {} bytes",
            size()
        );
        assert!(store.jobs().unwrap().is_empty());
    }

    #[test]
    fn finished_before_lists_only_jobs_that_ended_before_the_cutoff() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a.db"), 0).unwrap();
        let ids: Vec<String> = (0..3)
            .map(|i| store.insert_job(request(&["{}"]), "fp", i).unwrap())
            .collect();
        finish(&store, &ids[0], 100);
        finish(&store, &ids[1], 200);
        assert_eq!(store.finished_before(150).unwrap(), vec![ids[0].clone()]);
        assert_eq!(store.finished_before(201).unwrap(), ids[..2].to_vec());
    }
}
