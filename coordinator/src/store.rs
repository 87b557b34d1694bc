//! Job state that survives a restart, in SQLite: each job's request, every batch result until
//! the job's scores are reduced, the final scores (or faithfulness curve), and each finished
//! job's last status.
//! Synchronous; async callers go through `Store::run` (a blocking thread).

use std::path::Path;
use std::sync::{Arc, Mutex};

use attrib_proto::{v1, GraphShape, ScoresMetadata};
use prost::Message;
use rusqlite::{params, Connection, OptionalExtension};

use crate::{Error, Result};

/// Index of the combined scores in the `scores` table.
pub const COMBINED: i64 = -1;

#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

/// A job the store knows, as loaded at start.
pub struct StoredJob {
    pub id: String,
    pub label: String,
    pub state: v1::JobState,
    pub request: v1::SubmitJobRequest,
    pub model_fingerprint: String,
    pub created_ms: i64,
    pub retried: u32,
}

/// One batch's result.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRow {
    pub batch: u32,
    pub scores: Vec<f64>,
    pub clean_logit_diff_sum: f64,
    pub n_prompts: u32,
}

/// Reduced scores as stored.
pub struct StoredScores {
    pub metadata: ScoresMetadata,
    pub graph: GraphShape,
    pub scores: Vec<f64>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL,
    state TEXT NOT NULL,
    request BLOB NOT NULL,
    model_fingerprint TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    retried INTEGER NOT NULL DEFAULT 0,
    final_status BLOB
);
CREATE TABLE IF NOT EXISTS batch_results (
    job_id TEXT NOT NULL,
    batch INTEGER NOT NULL,
    scores BLOB NOT NULL,
    clean_logit_diff_sum REAL NOT NULL,
    n_prompts INTEGER NOT NULL,
    worker TEXT NOT NULL,
    PRIMARY KEY (job_id, batch)
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

/// Drops a finished job's batch results and records its final status, committing `tx` (which
/// holds the job's result rows): either the job is finished with its results, or nothing
/// changed.
fn close_job(tx: rusqlite::Transaction<'_>, job: &str, status: &v1::JobStatus) -> Result<()> {
    tx.execute("DELETE FROM batch_results WHERE job_id = ?1", [job])?;
    tx.execute(
        "UPDATE jobs SET state = ?1, final_status = ?2 WHERE id = ?3",
        params![status.state().label(), status.encode_to_vec(), job],
    )?;
    tx.commit()?;
    Ok(())
}

impl Store {
    /// Opens (or creates) the database. WAL with synchronous=NORMAL: a committed batch
    /// survives the coordinator process being killed.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
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
        label: &str,
        request: &v1::SubmitJobRequest,
        fingerprint: &str,
        created_ms: i64,
    ) -> Result<String> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO jobs (id, label, state, request, model_fingerprint, created_ms)
             VALUES ('pending', ?1, 'queued', ?2, ?3, ?4)",
            params![label, request.encode_to_vec(), fingerprint, created_ms],
        )?;
        let seq = tx.last_insert_rowid();
        let id = format!("job-{seq:06}");
        tx.execute("UPDATE jobs SET id = ?1 WHERE seq = ?2", params![id, seq])?;
        tx.commit()?;
        Ok(id)
    }

    pub fn set_retried(&self, job: &str, retried: u32) -> Result<()> {
        self.conn().execute(
            "UPDATE jobs SET retried = ?1 WHERE id = ?2",
            params![retried, job],
        )?;
        Ok(())
    }

    /// Every job, oldest first.
    pub fn jobs(&self) -> Result<Vec<StoredJob>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, label, state, request, model_fingerprint, created_ms, retried
             FROM jobs ORDER BY seq",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Vec<u8>>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, u32>(6)?,
            ))
        })?;
        let mut jobs = Vec::new();
        for row in rows {
            let (id, label, state, request, model_fingerprint, created_ms, retried) = row?;
            let corrupt = |reason: String| Error::Corrupt {
                job: id.clone(),
                reason,
            };
            let request = v1::SubmitJobRequest::decode(request.as_slice())
                .map_err(|e| corrupt(e.to_string()))?;
            let state = parse_state(&state).ok_or_else(|| corrupt(format!("state {state:?}")))?;
            jobs.push(StoredJob {
                id,
                label,
                state,
                request,
                model_fingerprint,
                created_ms,
                retried,
            });
        }
        Ok(jobs)
    }

    /// Stores one batch result. A second result for the same batch (a batch handed out
    /// twice) is ignored: results are deterministic and the first one is kept.
    pub fn save_batch(&self, job: &str, row: &BatchRow, worker: &str) -> Result<()> {
        self.conn().execute(
            "INSERT OR IGNORE INTO batch_results
             (job_id, batch, scores, clean_logit_diff_sum, n_prompts, worker)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                job,
                row.batch,
                f64_bytes(&row.scores),
                row.clean_logit_diff_sum,
                row.n_prompts,
                worker
            ],
        )?;
        Ok(())
    }

    /// (batch, prompts) of every stored result of `job`.
    pub fn done_batches(&self, job: &str) -> Result<Vec<(u32, u32)>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT batch, n_prompts FROM batch_results WHERE job_id = ?1")?;
        let rows = stmt.query_map([job], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Visits `job`'s batch results in batch order, one at a time (memory stays at one row).
    pub fn for_each_batch(&self, job: &str, mut f: impl FnMut(BatchRow)) -> Result<()> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT batch, scores, clean_logit_diff_sum, n_prompts FROM batch_results
             WHERE job_id = ?1 ORDER BY batch",
        )?;
        let mut rows = stmt.query([job])?;
        while let Some(r) = rows.next()? {
            f(BatchRow {
                batch: r.get(0)?,
                scores: bytes_f64(&r.get::<_, Vec<u8>>(1)?),
                clean_logit_diff_sum: r.get(2)?,
                n_prompts: r.get(3)?,
            });
        }
        Ok(())
    }

    /// Stores the reduced scores and the final status and drops the batch results, in one
    /// transaction: either the job is done with its scores, or it still has every batch.
    pub fn finish_job(
        &self,
        job: &str,
        scores: &[(i64, ScoresMetadata, GraphShape, Vec<f64>)],
        status: &v1::JobStatus,
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
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

    /// Stores a faithfulness job's curve (JSON) and final status and drops its unit results,
    /// in one transaction.
    pub fn finish_curve(
        &self,
        job: &str,
        scores_job: &str,
        curve_json: &str,
        status: &v1::JobStatus,
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
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
            .query_row("SELECT request FROM jobs WHERE id = ?1", [job], |r| {
                r.get(0)
            })
            .optional()?;
        let blob = blob.ok_or_else(|| Error::UnknownJob(job.to_string()))?;
        v1::SubmitJobRequest::decode(blob.as_slice()).map_err(|e| Error::Corrupt {
            job: job.to_string(),
            reason: e.to_string(),
        })
    }

    /// Marks a job failed, keeping its batch results (nothing computed is thrown away).
    pub fn fail_job(&self, job: &str, status: &v1::JobStatus) -> Result<()> {
        self.conn().execute(
            "UPDATE jobs SET state = 'failed', final_status = ?1 WHERE id = ?2",
            params![status.encode_to_vec(), job],
        )?;
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

/// Little-endian f64s: exact, so stored results reduce to the same bits.
fn f64_bytes(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn bytes_f64(b: &[u8]) -> Vec<f64> {
    b.chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_survive_reopening_and_reduce_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let store = Store::open(&path).unwrap();
        let req = v1::SubmitJobRequest {
            label: "x".into(),
            ..Default::default()
        };
        let id = store.insert_job("x", &req, "fp", 1).unwrap();
        assert_eq!(id, "job-000001");
        let row = |batch, v: f64| BatchRow {
            batch,
            scores: vec![v, -v, f64::MIN_POSITIVE],
            clean_logit_diff_sum: v,
            n_prompts: 2,
        };
        store.save_batch(&id, &row(1, 0.25), "w").unwrap();
        store.save_batch(&id, &row(0, 1.0 / 3.0), "w").unwrap();
        store.save_batch(&id, &row(1, 9.0), "w").unwrap(); // duplicate: first kept
        drop(store);
        let store = Store::open(&path).unwrap();
        let jobs = store.jobs().unwrap();
        assert_eq!(
            (jobs[0].id.as_str(), jobs[0].state),
            (id.as_str(), v1::JobState::Queued)
        );
        let mut seen = Vec::new();
        store.for_each_batch(&id, |r| seen.push(r)).unwrap();
        assert_eq!(seen, vec![row(0, 1.0 / 3.0), row(1, 0.25)]);
        assert!(matches!(
            store.final_status("nope"),
            Err(Error::UnknownJob(_))
        ));
        assert_eq!(store.final_status(&id).unwrap(), None);
    }
}
