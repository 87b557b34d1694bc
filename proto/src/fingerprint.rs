//! A model's identity: SHA-256 over its config and weights, so a coordinator can refuse a
//! worker whose model differs even when the shapes agree.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

/// The files whose bytes define a model's numbers (the tokenizer is checked by the
/// coordinator, which tokenizes; workers only see token ids).
pub const FINGERPRINTED_FILES: [&str; 2] = ["config.json", "model.safetensors"];

/// Hex SHA-256 over each file's name, length and bytes, in `FINGERPRINTED_FILES` order.
pub fn model_fingerprint(dir: &Path) -> std::io::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for name in FINGERPRINTED_FILES {
        let path = dir.join(name);
        let mut f = std::fs::File::open(&path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        h.update(name.as_bytes());
        h.update(f.metadata()?.len().to_le_bytes());
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_byte_changes_the_fingerprint() {
        let dir = std::env::temp_dir().join(format!("attrib-fp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), b"{}").unwrap();
        std::fs::write(dir.join("model.safetensors"), b"abc").unwrap();
        let a = model_fingerprint(&dir).unwrap();
        assert_eq!(a.len(), 64);
        assert_eq!(a, model_fingerprint(&dir).unwrap());
        std::fs::write(dir.join("model.safetensors"), b"abd").unwrap();
        assert_ne!(a, model_fingerprint(&dir).unwrap());
        std::fs::remove_file(dir.join("config.json")).unwrap();
        let e = model_fingerprint(&dir).unwrap_err().to_string();
        assert!(e.contains("config.json"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
