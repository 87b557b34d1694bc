//! Finding a model folder: a path, or a name (`gpt2`) in the local HuggingFace cache.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Resolves `--model`: an existing folder, else `models--{name}` (and `models--openai-community--{name}`)
/// snapshots in the HuggingFace hub cache (`$HF_HUB_CACHE`, `$HF_HOME/hub` or `~/.cache/huggingface/hub`).
pub fn resolve_model_dir(model: &str) -> Result<PathBuf> {
    resolve_with_caches(model, &hub_caches())
}

fn resolve_with_caches(model: &str, caches: &[PathBuf]) -> Result<PathBuf> {
    let p = Path::new(model);
    if p.is_dir() {
        return Ok(p.to_path_buf());
    }
    for cache in caches {
        for repo in [
            model.replace('/', "--"),
            format!("openai-community--{model}"),
        ] {
            let snapshots = cache.join(format!("models--{repo}")).join("snapshots");
            let Ok(entries) = std::fs::read_dir(&snapshots) else {
                continue;
            };
            let mut dirs: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|d| d.join("model.safetensors").exists())
                .collect();
            dirs.sort();
            if let Some(d) = dirs.pop() {
                return Ok(d);
            }
        }
    }
    let searched = caches
        .iter()
        .map(|c| c.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    Err(Error::ModelNotFound {
        model: model.to_string(),
        searched,
    })
}

fn hub_caches() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(c) = std::env::var("HF_HUB_CACHE") {
        out.push(PathBuf::from(c));
    }
    if let Ok(h) = std::env::var("HF_HOME") {
        out.push(PathBuf::from(h).join("hub"));
    }
    if let Ok(h) = std::env::var("HOME") {
        out.push(PathBuf::from(h).join(".cache/huggingface/hub"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_cached_snapshot_by_name_and_explains_a_miss() {
        let tmp = tempfile::tempdir().unwrap();
        let snap = tmp
            .path()
            .join("models--openai-community--gpt2/snapshots/abc123");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(snap.join("model.safetensors"), b"").unwrap();
        let caches = vec![tmp.path().to_path_buf()];
        assert_eq!(resolve_with_caches("gpt2", &caches).unwrap(), snap);
        let e = resolve_with_caches("gpt2-xl", &caches)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"gpt2-xl\" is neither a folder nor in the local HuggingFace cache"),
            "{e}"
        );
    }
}
