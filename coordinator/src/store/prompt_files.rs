//! Prompt files stored once, by content. A request carries its prompt files (about 280 KB
//! for 1,000 IOI prompts), and sweeps submit the same files job after job: each file's text
//! is kept once under its SHA-256, and a job's stored request keeps references to it. A
//! text goes when the last job using it is deleted.
//!
//! Requests stored before this layout (3) keep their texts inline and read back unchanged.

use attrib_proto::v1;
use rusqlite::{params, Connection, Transaction};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS prompt_files (
    sha256 TEXT PRIMARY KEY,
    json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS job_prompt_files (
    job_id TEXT NOT NULL,
    dataset INTEGER NOT NULL,
    file INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (job_id, dataset, file)
);
CREATE INDEX IF NOT EXISTS job_prompt_files_by_text ON job_prompt_files (sha256);
";

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Stores `req`'s prompt texts for `job` (each text once, whoever else uses it) and moves
/// them out of `req`, which is then the request to store: every file's text empty.
pub(super) fn share(tx: &Transaction<'_>, job: &str, req: &mut v1::SubmitJobRequest) -> Result<()> {
    for (d, dataset) in req.datasets.iter_mut().enumerate() {
        for (f, file) in dataset.files.iter_mut().enumerate() {
            let text = std::mem::take(&mut file.json);
            let hash = sha256_hex(&text);
            tx.execute(
                "INSERT OR IGNORE INTO prompt_files (sha256, json) VALUES (?1, ?2)",
                params![hash, text],
            )?;
            tx.execute(
                "INSERT INTO job_prompt_files (job_id, dataset, file, sha256) VALUES (?1, ?2, ?3, ?4)",
                params![job, d as i64, f as i64, hash],
            )?;
        }
    }
    Ok(())
}

/// Puts the shared texts back into `job`'s stored request.
pub(super) fn restore(conn: &Connection, job: &str, req: &mut v1::SubmitJobRequest) -> Result<()> {
    let mut stmt = conn.prepare(
        "SELECT l.dataset, l.file, p.json FROM job_prompt_files l
         JOIN prompt_files p ON p.sha256 = l.sha256 WHERE l.job_id = ?1",
    )?;
    let rows = stmt.query_map([job], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    for row in rows {
        let (d, f, text) = row?;
        let file = req
            .datasets
            .get_mut(d as usize)
            .and_then(|ds| ds.files.get_mut(f as usize))
            .ok_or_else(|| Error::Corrupt {
                job: job.to_string(),
                reason: format!(
                    "a stored prompt file points at dataset {d} file {f}, which the request lacks"
                ),
            })?;
        file.json = text;
    }
    Ok(())
}

/// Drops `job`'s references, and every text no job uses any more.
pub(super) fn release(tx: &Transaction<'_>, job: &str) -> Result<()> {
    tx.execute("DELETE FROM job_prompt_files WHERE job_id = ?1", [job])?;
    tx.execute(
        "DELETE FROM prompt_files WHERE sha256 NOT IN (SELECT sha256 FROM job_prompt_files)",
        [],
    )?;
    Ok(())
}

/// Bytes of prompt text stored, each text once.
#[cfg(test)]
pub(super) fn stored_text_bytes(conn: &Connection) -> i64 {
    conn.query_row(
        "SELECT coalesce(sum(length(json)), 0) FROM prompt_files",
        [],
        |r| r.get(0),
    )
    .unwrap()
}
