//! The version of a libtorch folder, as its files state it. Shared with build.rs (which
//! includes this file), so that the built-against and the loaded versions are read alike.

use std::path::Path;

/// The version of the libtorch whose libraries are in `lib_dir`: a wheel's `torch/version.py`
/// (`lib/..`), or a standalone libtorch's `build-version`.
pub fn libtorch_version(lib_dir: &Path) -> Option<String> {
    let root = lib_dir.parent()?;
    if let Ok(py) = std::fs::read_to_string(root.join("version.py")) {
        return py.lines().find_map(|l| {
            let v = l.strip_prefix("__version__ = ")?;
            Some(v.trim().trim_matches(['\'', '"']).to_string())
        });
    }
    let v = std::fs::read_to_string(root.join("build-version")).ok()?;
    Some(v.trim().to_string())
}

/// The release of a version string, without its local part: `2.11.0+cu130` → `2.11.0`.
/// The CPU and CUDA builds of one release share libtorch_cpu's ABI.
#[allow(dead_code)] // build.rs includes this file and uses only `libtorch_version`
pub fn release(version: &str) -> &str {
    version.split('+').next().unwrap_or(version)
}
