//! Every file attrib writes (scores, curves, comparisons, drawings, reports) goes through one
//! writer, which creates the folder and names the file in its error.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

/// Writing a file failed: which file, and why.
#[derive(Debug, thiserror::Error)]
#[error("writing {path}: {source}")]
pub struct WriteFileError {
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

/// Writes `bytes` to `out`, creating its folder.
pub fn write_file(out: &Path, bytes: &[u8]) -> Result<(), WriteFileError> {
    create(out)?.write_all(bytes).map_err(|e| failed(out, e))
}

/// Writes `value` as compact JSON to `out`, creating its folder. Streamed: a token-wise
/// scores file (tens of MB) is not held a second time as text.
pub fn write_json_file(value: &impl Serialize, out: &Path) -> Result<(), WriteFileError> {
    let mut w = std::io::BufWriter::new(create(out)?);
    serde_json::to_writer(&mut w, value).map_err(|e| failed(out, e.into()))?;
    w.flush().map_err(|e| failed(out, e))
}

/// `out`, created (its folder too) and truncated.
fn create(out: &Path) -> Result<std::fs::File, WriteFileError> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| failed(out, e))?;
    }
    std::fs::File::create(out).map_err(|e| failed(out, e))
}

fn failed(out: &Path, source: std::io::Error) -> WriteFileError {
    WriteFileError {
        path: out.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_into_new_folders_and_names_the_file_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("a/b/scores.json");
        write_json_file(&serde_json::json!({"n_edges": 3}), &out).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), r#"{"n_edges":3}"#);
        let blocked = out.join("under-a-file.json");
        let err = write_file(&blocked, b"x").unwrap_err().to_string();
        assert!(err.contains("under-a-file.json"), "{err}");
    }
}
