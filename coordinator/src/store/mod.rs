//! Job state that survives a restart, in SQLite: each job's request; a running job's exact
//! accumulators and the set of units folded into them, replaced together at every group
//! commit; the final scores (or faithfulness curve); and each finished job's last status.
//! A job's state is O(edges), whatever its unit count. Pages freed by finished jobs go back
//! to the file system (incremental auto-vacuum), and the write-ahead log is trimmed after
//! checkpoints, so the file does not only grow.
//! Synchronous; async callers go through `Store::run` (a blocking thread).

mod deletion;
mod migrate;
mod prompt_files;
mod reserve;

use std::path::Path;
use std::sync::{Arc, Mutex};

use attrib_proto::{v1, GraphShape, ScoresMetadata};
use prost::Message;
use rusqlite::{params, Connection, OptionalExtension};

use crate::sums::Snapshot;
use crate::{Error, Result};

/// Index of the combined scores in the `scores` table.
pub const COMBINED: i64 = -1;

#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    reserve: reserve::Reserve,
}

/// A job the store knows, as loaded at start.
pub struct StoredJob {
    pub id: String,
    pub label: String,
    pub state: v1::JobState,
    pub model_fingerprint: String,
    pub created_ms: i64,
    pub retried: u32,
    /// The device class its committed units were computed on; empty: not chosen yet.
    pub device_class: String,
}

/// A running job's last committed state: its accumulators (index, bytes) and folded-unit
/// bitmap, as `sums::Snapshot` wrote them.
pub struct StoredProgress {
    pub sums: Vec<(usize, Vec<u8>)>,
    pub folded: Vec<u8>,
}

/// Reduced scores as stored.
pub struct StoredScores {
    pub metadata: ScoresMetadata,
    pub graph: GraphShape,
    pub scores: Vec<f64>,
}

/// `PRAGMA user_version` of this layout. Version 0 stored one f64 vector per batch; version
/// 2 every request's prompt texts inline (3 reads those too: see `prompt_files`); version 3
/// had no `jobs.device_class` (`add_device_class` adds it, empty: not chosen yet).
const SCHEMA_VERSION: i64 = 4;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL,
    state TEXT NOT NULL,
    model_fingerprint TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    retried INTEGER NOT NULL DEFAULT 0,
    final_status BLOB,
    device_class TEXT NOT NULL DEFAULT ''
);
-- Apart from `jobs`: SQLite rewrites a whole row on every update, and a request carries its
-- prompt files (megabytes).
CREATE TABLE IF NOT EXISTS requests (
    job_id TEXT PRIMARY KEY,
    request BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS accumulators (
    job_id TEXT NOT NULL,
    slot INTEGER NOT NULL,
    sums BLOB NOT NULL,
    PRIMARY KEY (job_id, slot)
);
CREATE TABLE IF NOT EXISTS progress (
    job_id TEXT PRIMARY KEY,
    folded BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS scores (
    job_id TEXT NOT NULL,
    dataset INTEGER NOT NULL,
    metadata TEXT NOT NULL,
    graph BLOB NOT NULL,
    scores BLOB NOT NULL,
    PRIMARY KEY (job_id, dataset)
);
CREATE TABLE IF NOT EXISTS curves (
    job_id TEXT PRIMARY KEY,
    scores_job TEXT NOT NULL,
    curve TEXT NOT NULL
);
";

/// Opens the transaction that finishes `job`: its running state is dropped first, so that the
/// results written next reuse the freed pages instead of growing the file. Commit it with
/// `close_job`.
fn begin_close<'c>(conn: &'c mut Connection, job: &str) -> Result<rusqlite::Transaction<'c>> {
    let tx = conn.transaction()?;
    drop_running_state(&tx, job)?;
    Ok(tx)
}

/// Records `job`'s final status and commits `tx` (from `begin_close`, holding the job's
/// results): either the job is finished with its results, or nothing changed.
fn close_job(tx: rusqlite::Transaction<'_>, job: &str, status: &v1::JobStatus) -> Result<()> {
    set_final(&tx, job, status)?;
    tx.commit()?;
    Ok(())
}

fn drop_running_state(tx: &rusqlite::Transaction<'_>, job: &str) -> Result<()> {
    tx.execute("DELETE FROM accumulators WHERE job_id = ?1", [job])?;
    tx.execute("DELETE FROM progress WHERE job_id = ?1", [job])?;
    Ok(())
}

/// Records the end of a job that has not ended yet; a job ends once.
fn set_final(tx: &rusqlite::Transaction<'_>, job: &str, status: &v1::JobStatus) -> Result<()> {
    let changed = tx.execute(
        "UPDATE jobs SET state = ?1, final_status = ?2
         WHERE id = ?3 AND state NOT IN ('done', 'failed', 'cancelled')",
        params![status.state().label(), status.encode_to_vec(), job],
    )?;
    if changed != 1 {
        return Err(Error::Ended {
            job: job.to_string(),
            state: status.state().label(),
        });
    }
    Ok(())
}

impl Store {
    /// Opens (or creates) the database. WAL with synchronous=NORMAL: a commit survives the
    /// coordinator process being killed. A database of the per-batch layout is migrated:
    /// its finished jobs keep their scores, its unfinished ones fail with a message (their
    /// batch results cannot become exact unit sums).
    ///
    /// A file that is not a sound database is reported (`Error::Damaged`) and left as it is,
    /// never recreated. `max_bytes` (0: none) caps the file: past it writes fail as on a
    /// full disk.
    pub fn open(path: &Path, max_bytes: u64) -> Result<Self> {
        Self::open_checked(path, max_bytes).map_err(|e| match e {
            Error::Store(ref s) if is_damage(s) => Error::Damaged {
                path: path.display().to_string(),
                reason: s.to_string(),
            },
            e => e,
        })
    }

    fn open_checked(path: &Path, max_bytes: u64) -> Result<Self> {
        let existed = path.metadata().is_ok_and(|m| m.len() > 0);
        let mut conn = Connection::open(path)?;
        if existed {
            // Reads every page's structure (not the rows): a damaged file stops here, before
            // anything is written to it.
            let verdict: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
            if verdict != "ok" {
                return Err(Error::Damaged {
                    path: path.display().to_string(),
                    reason: format!("integrity check: {verdict}"),
                });
            }
        }
        if max_bytes > 0 {
            let page: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
            conn.pragma_update(None, "max_page_count", (max_bytes as i64 / page).max(1))?;
        }
        if !existed {
            // Before any table exists, so that a new file frees pages incrementally. Not on
            // an existing file: SQLite writes the header even to set the same value, which
            // fails on a full disk.
            conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        }
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // After a checkpoint the WAL is cut back to this size instead of staying at its peak.
        conn.pragma_update(None, "journal_size_limit", 1 << 20)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(Error::Corrupt {
                job: "(database)".into(),
                reason: format!(
                    "layout version {version} is newer than this coordinator's {SCHEMA_VERSION}"
                ),
            });
        }
        if version == SCHEMA_VERSION {
            // Nothing to write: a database on a full disk still opens, and serves what it holds.
            return Ok(Store::with(conn, path));
        }
        let tx = conn.transaction()?;
        tx.execute_batch(SCHEMA)?;
        tx.execute_batch(prompt_files::SCHEMA)?;
        let migrated = migrate::batch_results(&tx)?;
        migrate::add_device_class(&tx)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        tx.commit()?;
        if migrated {
            // A file made before incremental auto-vacuum gets it (and its space back) here.
            conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
            conn.execute_batch("VACUUM")?;
        }
        Ok(Store::with(conn, path))
    }

    fn with(conn: Connection, path: &Path) -> Store {
        let reserve = reserve::Reserve::beside(path);
        reserve.take();
        Store {
            conn: Arc::new(Mutex::new(conn)),
            reserve,
        }
    }

    /// The database's size in bytes (its pages; freed pages are given back after jobs end).
    pub fn size_bytes(&self) -> Result<u64> {
        let conn = self.conn();
        let pages: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
        let page: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
        Ok((pages * page) as u64)
    }

    /// Runs `f` on a blocking thread (SQLite calls block).
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store)).await?
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back).
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a queued job and returns its id (`job-` and a number that never repeats in this
    /// database).
    pub fn insert_job(
        &self,
        mut request: v1::SubmitJobRequest,
        fingerprint: &str,
        created_ms: i64,
    ) -> Result<String> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO jobs (id, label, state, model_fingerprint, created_ms)
             VALUES ('pending', ?1, 'queued', ?2, ?3)",
            params![request.label, fingerprint, created_ms],
        )?;
        let seq = tx.last_insert_rowid();
        let id = format!("job-{seq:06}");
        tx.execute("UPDATE jobs SET id = ?1 WHERE seq = ?2", params![id, seq])?;
        prompt_files::share(&tx, &id, &mut request)?;
        tx.execute(
            "INSERT INTO requests (job_id, request) VALUES (?1, ?2)",
            params![id, request.encode_to_vec()],
        )?;
        tx.commit()?;
        Ok(id)
    }

    /// Commits a running job's snapshot, retry count and device class (that of the snapshot's
    /// units) in one transaction, unless the job has finished meanwhile (its final state
    /// wins). Returns whether it was written.
    pub fn save_progress(
        &self,
        job: &str,
        snap: &Snapshot,
        retried: u32,
        device_class: &str,
    ) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let state: Option<String> = tx
            .query_row("SELECT state FROM jobs WHERE id = ?1", [job], |r| r.get(0))
            .optional()?;
        if state
            .as_deref()
            .and_then(parse_state)
            .is_none_or(|s| s.is_terminal())
        {
            return Ok(false);
        }
        for (slot, bytes) in &snap.sums {
            tx.execute(
                "INSERT OR REPLACE INTO accumulators (job_id, slot, sums) VALUES (?1, ?2, ?3)",
                params![job, *slot as i64, bytes],
            )?;
        }
        tx.execute(
            "INSERT OR REPLACE INTO progress (job_id, folded) VALUES (?1, ?2)",
            params![job, snap.folded],
        )?;
        tx.execute(
            "UPDATE jobs SET retried = ?1, device_class = ?2 WHERE id = ?3",
            params![retried, device_class, job],
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// A running job's last committed state, if it has one.
    pub fn progress(&self, job: &str) -> Result<Option<StoredProgress>> {
        let conn = self.conn();
        let folded: Option<Vec<u8>> = conn
            .query_row(
                "SELECT folded FROM progress WHERE job_id = ?1",
                [job],
                |r| r.get(0),
            )
            .optional()?;
        let Some(folded) = folded else {
            return Ok(None);
        };
        let mut stmt =
            conn.prepare("SELECT slot, sums FROM accumulators WHERE job_id = ?1 ORDER BY slot")?;
        let sums = stmt
            .query_map([job], |r| Ok((r.get::<_, i64>(0)? as usize, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        Ok(Some(StoredProgress { sums, folded }))
    }

    /// Every job, oldest first (without requests: `request` loads one).
    pub fn jobs(&self) -> Result<Vec<StoredJob>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, label, state, model_fingerprint, created_ms, retried, device_class
             FROM jobs ORDER BY seq",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, u32>(5)?,
                r.get::<_, String>(6)?,
            ))
        })?;
        let mut jobs = Vec::new();
        for row in rows {
            let (id, label, state, model_fingerprint, created_ms, retried, device_class) = row?;
            let state = parse_state(&state).ok_or_else(|| Error::Corrupt {
                job: id.clone(),
                reason: format!("state {state:?}"),
            })?;
            jobs.push(StoredJob {
                id,
                label,
                state,
                model_fingerprint,
                created_ms,
                retried,
                device_class,
            });
        }
        Ok(jobs)
    }

    /// Stores the reduced scores and the final status and drops the running state, in one
    /// transaction: either the job is done with its scores, or it still has its accumulators.
    pub fn finish_job(
        &self,
        job: &str,
        scores: &[(i64, ScoresMetadata, GraphShape, Vec<f64>)],
        status: &v1::JobStatus,
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = begin_close(&mut conn, job)?;
        for (dataset, meta, graph, values) in scores {
            tx.execute(
                "INSERT OR REPLACE INTO scores (job_id, dataset, metadata, graph, scores)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    job,
                    dataset,
                    serde_json::to_string(meta).expect("metadata serializes"),
                    v1::GraphShape::from(graph).encode_to_vec(),
                    f64_bytes(values)
                ],
            )?;
        }
        close_job(tx, job, status)
    }

    /// Stores a faithfulness job's curve (JSON) and final status and drops its running
    /// state, in one transaction.
    pub fn finish_curve(
        &self,
        job: &str,
        scores_job: &str,
        curve_json: &str,
        status: &v1::JobStatus,
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = begin_close(&mut conn, job)?;
        tx.execute(
            "INSERT OR REPLACE INTO curves (job_id, scores_job, curve) VALUES (?1, ?2, ?3)",
            params![job, scores_job, curve_json],
        )?;
        close_job(tx, job, status)
    }

    /// The curve of faithfulness job `job`, or else the newest curve made from attribution
    /// job `job`'s scores: (faithfulness job, curve JSON).
    pub fn curve(&self, job: &str) -> Result<Option<(String, String)>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT job_id, curve FROM curves WHERE job_id = ?1 OR scores_job = ?1
                 ORDER BY job_id = ?1 DESC, job_id DESC LIMIT 1",
                [job],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// The request job `job` was submitted with.
    pub fn request(&self, job: &str) -> Result<v1::SubmitJobRequest> {
        let blob: Option<Vec<u8>> = self
            .conn()
            .query_row(
                "SELECT request FROM requests WHERE job_id = ?1",
                [job],
                |r| r.get(0),
            )
            .optional()?;
        let blob = blob.ok_or_else(|| Error::UnknownJob(job.to_string()))?;
        let mut req =
            v1::SubmitJobRequest::decode(blob.as_slice()).map_err(|e| Error::Corrupt {
                job: job.to_string(),
                reason: e.to_string(),
            })?;
        prompt_files::restore(&self.conn(), job, &mut req)?;
        Ok(req)
    }

    /// Marks a job failed, keeping its last committed accumulators (nothing computed is
    /// thrown away).
    pub fn fail_job(&self, job: &str, status: &v1::JobStatus) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        set_final(&tx, job, status)?;
        tx.commit()?;
        Ok(())
    }

    /// The last status of a finished (done, failed, cancelled) job.
    pub fn final_status(&self, job: &str) -> Result<Option<v1::JobStatus>> {
        let blob: Option<Option<Vec<u8>>> = self
            .conn()
            .query_row("SELECT final_status FROM jobs WHERE id = ?1", [job], |r| {
                r.get(0)
            })
            .optional()?;
        match blob {
            None => Err(Error::UnknownJob(job.to_string())),
            Some(None) => Ok(None),
            Some(Some(b)) => {
                v1::JobStatus::decode(b.as_slice())
                    .map(Some)
                    .map_err(|e| Error::Corrupt {
                        job: job.to_string(),
                        reason: e.to_string(),
                    })
            }
        }
    }

    /// Every finished job's final status, oldest first.
    pub fn final_statuses(&self) -> Result<Vec<v1::JobStatus>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT final_status FROM jobs WHERE final_status IS NOT NULL ORDER BY seq")?;
        let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
        let mut out = Vec::new();
        for b in rows {
            out.push(
                v1::JobStatus::decode(b?.as_slice()).map_err(|e| Error::Corrupt {
                    job: "(listing)".into(),
                    reason: e.to_string(),
                })?,
            );
        }
        Ok(out)
    }

    pub fn scores(&self, job: &str, dataset: i64) -> Result<Option<StoredScores>> {
        let row: Option<(String, Vec<u8>, Vec<u8>)> = self
            .conn()
            .query_row(
                "SELECT metadata, graph, scores FROM scores WHERE job_id = ?1 AND dataset = ?2",
                params![job, dataset],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((meta, graph, scores)) = row else {
            return Ok(None);
        };
        let corrupt = |reason: String| Error::Corrupt {
            job: job.to_string(),
            reason,
        };
        Ok(Some(StoredScores {
            metadata: serde_json::from_str(&meta).map_err(|e| corrupt(e.to_string()))?,
            graph: (&v1::GraphShape::decode(graph.as_slice())
                .map_err(|e| corrupt(e.to_string()))?)
                .into(),
            scores: bytes_f64(&scores),
        }))
    }
}

fn parse_state(s: &str) -> Option<v1::JobState> {
    [
        v1::JobState::Queued,
        v1::JobState::Running,
        v1::JobState::Done,
        v1::JobState::Failed,
        v1::JobState::Cancelled,
    ]
    .into_iter()
    .find(|st| st.label() == s)
}

/// Little-endian f64s: exact, so stored scores read back to the same bits.
fn f64_bytes(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn bytes_f64(b: &[u8]) -> Vec<f64> {
    b.chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect()
}

/// SQLite found the file is not a database, or a damaged one.
fn is_damage(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(id: &str, state: v1::JobState) -> v1::JobStatus {
        v1::JobStatus {
            job_id: id.into(),
            state: state as i32,
            ..Default::default()
        }
    }

    fn snapshot(bytes: u8, folded: u8) -> Snapshot {
        Snapshot {
            sums: vec![(0, vec![bytes; 100_000]), (2, vec![bytes; 10])],
            folded: vec![folded],
            units: 1,
        }
    }

    #[test]
    fn progress_survives_reopening_and_finished_jobs_give_their_space_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let store = Store::open(&path, 0).unwrap();
        let req = v1::SubmitJobRequest {
            label: "x".into(),
            ..Default::default()
        };
        let id = store.insert_job(req.clone(), "fp", 1).unwrap();
        assert_eq!(id, "job-000001");
        assert!(store.progress(&id).unwrap().is_none());
        assert!(store.save_progress(&id, &snapshot(1, 0b01), 3, "").unwrap());
        // A later commit replaces the accumulators it names and the folded set.
        let mut later = snapshot(2, 0b11);
        later.sums.truncate(1);
        assert!(store.save_progress(&id, &later, 4, "cpu-x").unwrap());
        drop(store);
        let store = Store::open(&path, 0).unwrap();
        let jobs = store.jobs().unwrap();
        assert_eq!((jobs[0].state, jobs[0].retried), (v1::JobState::Queued, 4));
        assert_eq!(
            jobs[0].device_class, "cpu-x",
            "the class is kept with the units"
        );
        let p = store.progress(&id).unwrap().unwrap();
        assert_eq!(p.folded, vec![0b11]);
        assert_eq!(p.sums, vec![(0, vec![2; 100_000]), (2, vec![1; 10])]);
        let size = || std::fs::metadata(&path).unwrap().len();
        store.release_free_pages().unwrap(); // everything in the main file
        let running = size();
        assert!(running > 100_000, "{running}");
        store
            .finish_job(&id, &[], &status(&id, v1::JobState::Done))
            .unwrap();
        store.release_free_pages().unwrap();
        assert!(store.progress(&id).unwrap().is_none());
        assert!(
            size() + 90_000 <= running,
            "the 100 kB accumulator's pages went back: {running} -> {} bytes",
            size()
        );
        // A job ends once.
        let again = store.fail_job(&id, &status(&id, v1::JobState::Failed));
        assert!(matches!(again, Err(Error::Ended { .. })), "{again:?}");
        // A finished job's state is not overwritten by a late commit.
        assert!(!store
            .save_progress(&id, &snapshot(3, 1), 0, "cpu-x")
            .unwrap());
        assert!(store.progress(&id).unwrap().is_none());
        assert!(matches!(
            store.final_status("nope"),
            Err(Error::UnknownJob(_))
        ));
    }

    #[test]
    fn a_per_batch_database_is_migrated_without_losing_scores() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
                   label TEXT NOT NULL, state TEXT NOT NULL, request BLOB NOT NULL,
                   model_fingerprint TEXT NOT NULL, created_ms INTEGER NOT NULL,
                   retried INTEGER NOT NULL DEFAULT 0, final_status BLOB);
                 CREATE TABLE batch_results (job_id TEXT, batch INTEGER, scores BLOB,
                   clean_logit_diff_sum REAL, n_prompts INTEGER, worker TEXT);
                 CREATE TABLE scores (job_id TEXT NOT NULL, dataset INTEGER NOT NULL,
                   metadata TEXT NOT NULL, graph BLOB NOT NULL, scores BLOB NOT NULL,
                   PRIMARY KEY (job_id, dataset));
                 INSERT INTO jobs (id, label, state, request, model_fingerprint, created_ms)
                   VALUES ('job-000001', '', 'done', x'', 'fp', 1),
                          ('job-000002', '', 'running', x'', 'fp', 2);
                 INSERT INTO scores VALUES ('job-000001', -1, '{}', x'', x'0000000000000000');",
            )
            .unwrap();
        }
        let store = Store::open(&path, 0).unwrap();
        let jobs = store.jobs().unwrap();
        assert_eq!(jobs[0].state, v1::JobState::Done);
        assert_eq!(jobs[0].device_class, "", "an old job's class: not chosen");
        assert_eq!(jobs[1].state, v1::JobState::Failed);
        let st = store.final_status("job-000002").unwrap().unwrap();
        assert!(st.error.contains("resubmit"), "{}", st.error);
        assert_eq!(
            store.request("job-000001").unwrap(),
            v1::SubmitJobRequest::default()
        );
        let n: i64 = store
            .conn()
            .query_row("SELECT count(*) FROM scores", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
        let mode: i64 = store
            .conn()
            .pragma_query_value(None, "auto_vacuum", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, 2, "incremental auto-vacuum after the migration");
    }

    #[test]
    fn a_full_database_fails_writes_as_a_full_disk_and_keeps_what_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("full.db");
        let store = Store::open(&path, 256 << 10).unwrap();
        let req = v1::SubmitJobRequest {
            label: "y".repeat(40_000),
            ..Default::default()
        };
        let first = store.insert_job(req.clone(), "fp", 1).unwrap();
        let full = (0..20)
            .find_map(|i| store.insert_job(req.clone(), "fp", i).err())
            .expect("256 KiB never filled");
        let Error::Store(ref e) = full else {
            panic!("{full}")
        };
        assert!(crate::error::is_full(e), "{e}");
        let status = tonic::Status::from(full);
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(
            status.message().contains("new work is refused"),
            "{status:?}"
        );
        assert_eq!(store.request(&first).unwrap().label, req.label);
        assert!(store.size_bytes().unwrap() <= 256 << 10);
    }

    #[test]
    fn a_file_that_is_not_a_database_is_reported_and_not_touched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.db");
        std::fs::write(&path, "these are not pages".repeat(1000)).unwrap();
        let before = std::fs::read(&path).unwrap();
        let e = Store::open(&path, 0).err().expect("opened a text file");
        assert!(
            matches!(&e, Error::Damaged { path, .. } if path.ends_with("notes.db")),
            "{e}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }
}
