//! The libtorch this process runs against: where it was loaded from, its version against the
//! one the binary was built for, and its CUDA half. One binary serves CPU and GPU nodes: it is
//! linked to libtorch_cpu only (the linker's `--as-needed` drops libtorch_cuda, tch-rs #907),
//! so `load_cuda` opens libtorch_cuda.so from the same folder at start-up, before the first
//! CUDA query (PyTorch caches its "no CUDA" answer). Its static initialisers then register the
//! CUDA backend, as linking it would.

use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use crate::libtorch_version::{libtorch_version, release};

/// The version of the libtorch the binary was built against (`torch/version.py`, or a
/// standalone libtorch's `build-version`), read by build.rs; "unknown" when it had none.
pub const BUILT_AGAINST: &str = env!("ATTRIB_LIBTORCH_BUILT_AGAINST");

/// The folder of the libtorch_cpu.so mapped into this process (`/proc/self/maps`).
pub fn libtorch_lib_dir() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| {
            Path::new(p)
                .file_name()
                .is_some_and(|f| f == "libtorch_cpu.so")
        })
        .and_then(|p| Path::new(p).parent().map(Path::to_path_buf))
}

/// `Err` naming both versions when the loaded libtorch is another release than the one built
/// against (its C++ ABI differs). Unknown versions pass: nothing to compare.
pub fn check_abi(loaded: Option<&str>) -> Result<(), String> {
    match loaded {
        Some(v) if BUILT_AGAINST != "unknown" && release(v) != release(BUILT_AGAINST) => Err(
            format!(
                "this binary was built against libtorch {BUILT_AGAINST}, but the libtorch loaded is {v} (from {}): run it with torch {} (ATTRIB_LIBTORCH=python uses python3's torch; see docs/gpu.md)",
                libtorch_lib_dir().map_or("?".into(), |d| d.display().to_string()),
                release(BUILT_AGAINST)
            ),
        ),
        _ => Ok(()),
    }
}

/// Start-up, before anything touches CUDA: refuses another libtorch release than the one
/// built against, then opens libtorch_cuda when the loaded libtorch has it.
pub fn start() -> Result<(), String> {
    let version = libtorch_lib_dir().and_then(|d| libtorch_version(&d));
    check_abi(version.as_deref())?;
    // Why it did not load is told where it matters: a CUDA device asked for, or `auto`
    // falling back to the CPU beside an NVIDIA device (`device`), and `doctor`.
    load_cuda();
    Ok(())
}

/// Whether the NVIDIA driver lists a device (no CUDA call: the driver's proc files).
pub fn nvidia_device_present() -> bool {
    std::fs::read_dir("/proc/driver/nvidia/gpus").is_ok_and(|mut d| d.next().is_some())
}

/// What became of libtorch_cuda.so at start-up.
#[derive(Clone, Debug)]
pub struct CudaLoad {
    pub path: Option<PathBuf>,
    pub loaded: bool,
    /// Why it is not loaded: absent (a CPU-only libtorch) or the loader's error.
    pub error: Option<String>,
}

static CUDA: OnceLock<CudaLoad> = OnceLock::new();

/// Opens libtorch_cuda.so from the loaded libtorch's folder (`RTLD_NOW | RTLD_GLOBAL`), once;
/// later calls return the first outcome. Call it before anything asks libtorch about CUDA.
pub fn load_cuda() -> &'static CudaLoad {
    CUDA.get_or_init(|| {
        let Some(dir) = libtorch_lib_dir() else {
            return CudaLoad {
                path: None,
                loaded: false,
                error: Some("libtorch_cpu.so is not mapped into this process".into()),
            };
        };
        let path = dir.join("libtorch_cuda.so");
        if !path.exists() {
            return CudaLoad {
                error: Some(format!(
                    "{} does not exist: a CPU-only libtorch",
                    path.display()
                )),
                path: Some(path),
                loaded: false,
            };
        }
        let error = dlopen_global(&path).err();
        CudaLoad {
            loaded: error.is_none(),
            path: Some(path),
            error,
        }
    })
}

/// `dlopen(path, RTLD_NOW | RTLD_GLOBAL)`, kept open for the life of the process.
pub fn dlopen_global(path: &Path) -> Result<(), String> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: a NUL-terminated path; the handle is never closed, so the library's code stays
    // mapped for as long as anything registered by its initialisers may run.
    let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if handle.is_null() {
        // SAFETY: dlerror returns a thread-local message or null, right after the failure.
        let msg = unsafe { libc::dlerror() };
        return Err(match msg.is_null() {
            true => "dlopen failed".into(),
            false => unsafe { CStr::from_ptr(msg) }
                .to_string_lossy()
                .into_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_loaded_libtorch_and_its_version() {
        let _ = tch::Tensor::zeros([1], tch::kind::FLOAT_CPU); // libtorch is mapped
        let dir = libtorch_lib_dir().expect("libtorch_cpu.so is mapped");
        assert!(dir.join("libtorch_cpu.so").exists());
        let v = libtorch_version(&dir).expect("a version");
        assert_eq!(
            release(&v),
            release(BUILT_AGAINST),
            "{v} vs {BUILT_AGAINST}"
        );
        assert!(check_abi(Some(&v)).is_ok());
    }

    #[test]
    fn another_release_is_refused_naming_both() {
        let e = check_abi(Some("2.10.0+cu128")).unwrap_err();
        assert!(
            e.contains("2.10.0+cu128") && e.contains(BUILT_AGAINST),
            "{e}"
        );
        assert!(check_abi(Some(&format!("{}+cpu", release(BUILT_AGAINST)))).is_ok());
        assert_eq!(release("2.11.0+cu130"), "2.11.0");
    }
}
