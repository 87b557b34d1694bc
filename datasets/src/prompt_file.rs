//! AutoCircuit's prompt-file format (spec 2.1): reading and validating, nothing else.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{Error, Result};

/// One clean/corrupt prompt pair with its answers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prompt {
    pub clean: String,
    pub corrupt: String,
    pub answers: Vec<String>,
    pub wrong_answers: Vec<String>,
}

/// A parsed prompt file (or several, merged as AutoCircuit merges them).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PromptFile {
    pub prompts: Vec<Prompt>,
    #[serde(default)]
    pub seq_labels: Option<Vec<String>>,
    #[serde(default)]
    pub word_idxs: Option<BTreeMap<String, i64>>,
}

impl PromptFile {
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let malformed = |reason: String| Error::Malformed {
            path: path.to_path_buf(),
            reason,
        };
        let file: PromptFile = serde_json::from_str(text).map_err(|e| malformed(e.to_string()))?;
        if file.prompts.is_empty() {
            return Err(malformed("`prompts` is empty".into()));
        }
        for (i, p) in file.prompts.iter().enumerate() {
            if p.answers.is_empty() || p.wrong_answers.is_empty() {
                return Err(malformed(format!(
                    "prompt {i} has no `answers` or no `wrong_answers`"
                )));
            }
        }
        Ok(file)
    }

    /// AutoCircuit's rule for several files: the first is read in full, only the `prompts` of
    /// the others are appended.
    pub fn read_many(paths: &[PathBuf]) -> Result<Self> {
        Self::merge(
            paths
                .iter()
                .map(|p| Self::read(p))
                .collect::<Result<Vec<_>>>()?,
        )
    }

    /// Merges parsed files by AutoCircuit's rule (see `read_many`).
    pub fn merge(files: Vec<PromptFile>) -> Result<Self> {
        let mut files = files.into_iter();
        let mut file = files.next().ok_or(Error::NoDatasetFiles)?;
        for f in files {
            file.prompts.extend(f.prompts);
        }
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PromptFile> {
        PromptFile::parse(text, Path::new("x.json"))
    }

    #[test]
    fn reads_a_minimal_file() {
        let f = parse(
            r#"{"prompts":[{"clean":"a","corrupt":"b","answers":[" c"],"wrong_answers":[" d"]}]}"#,
        )
        .unwrap();
        assert_eq!(f.prompts.len(), 1);
        assert!(f.seq_labels.is_none());
    }

    #[test]
    fn malformed_json_names_the_file_and_position() {
        let e = parse(r#"{"prompts": [ {"clean": "a", "#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.json") && e.contains("line 1"), "{e}");
    }

    #[test]
    fn missing_field_is_named() {
        let e = parse(r#"{"prompts":[{"clean":"a","answers":[" c"],"wrong_answers":[" d"]}]}"#)
            .unwrap_err();
        assert!(e.to_string().contains("missing field `corrupt`"), "{e}");
    }

    #[test]
    fn empty_answers_are_refused() {
        let e = parse(
            r#"{"prompts":[{"clean":"a","corrupt":"b","answers":[],"wrong_answers":[" d"]}]}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("prompt 0 has no `answers`"), "{e}");
    }

    #[test]
    fn no_prompts_is_refused() {
        let e = parse(r#"{"prompts":[]}"#).unwrap_err();
        assert!(e.to_string().contains("`prompts` is empty"), "{e}");
    }
}
