//! Moves older database layouts to this one, inside the transaction that opens them: the
//! per-batch layout 0, and layout 3's `jobs` table without `device_class`.

use attrib_proto::v1;

use super::set_final;
use crate::Result;

/// Moves a per-batch database (layout 0) to this layout: requests get their own table, the
/// unfinished jobs fail, saying why, and the batch results go. Returns whether there was
/// anything to migrate.
pub(super) fn batch_results(tx: &rusqlite::Transaction<'_>) -> Result<bool> {
    let old: bool = tx.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'batch_results'",
        [],
        |r| r.get(0),
    )?;
    if !old {
        return Ok(false);
    }
    // Requests move to their own table.
    tx.execute_batch(
        "INSERT OR IGNORE INTO requests (job_id, request) SELECT id, request FROM jobs;
         ALTER TABLE jobs DROP COLUMN request;",
    )?;
    let unfinished: Vec<String> = tx
        .prepare("SELECT id FROM jobs WHERE state IN ('queued', 'running')")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in &unfinished {
        let status = v1::JobStatus {
            job_id: id.clone(),
            state: v1::JobState::Failed as i32,
            error: "made by an older attrib that stored per-batch results; resubmit it".into(),
            finished_unix_ms: crate::clock::now_ms(),
            ..Default::default()
        };
        set_final(tx, id, &status)?;
    }
    tx.execute_batch("DROP TABLE batch_results")?;
    tracing::warn!(failed = unfinished.len(), "migrated a per-batch database");
    Ok(true)
}

/// Gives a layout-3 `jobs` table its `device_class` column (a new table has it already).
pub(super) fn add_device_class(tx: &rusqlite::Transaction<'_>) -> Result<()> {
    let has: bool = tx.query_row(
        "SELECT count(*) FROM pragma_table_info('jobs') WHERE name = 'device_class'",
        [],
        |r| r.get(0),
    )?;
    if !has {
        tx.execute_batch("ALTER TABLE jobs ADD COLUMN device_class TEXT NOT NULL DEFAULT ''")?;
    }
    Ok(())
}
