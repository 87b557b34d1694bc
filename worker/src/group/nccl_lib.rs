//! Finds and opens `libnccl.so.2` for the NCCL collective, and holds the few functions the
//! group calls. cudarc's own loader cannot be used: it tries `libnccl.so` and
//! `libnccl.so.{13,12,11,10,9,1}` but never `libnccl.so.2`, the only file the
//! `nvidia-nccl-cu13` wheel ships, and it cannot be pointed at a path (glibc reads
//! `LD_LIBRARY_PATH` only when the process starts). Nothing here touches a GPU:
//! `ncclGetVersion` answers on a machine without one.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The file every search looks for (NCCL's ABI has been `.so.2` since NCCL 2).
pub const SONAME: &str = "libnccl.so.2";

/// The NCCL this process uses.
pub struct NcclLibrary {
    /// The file it was loaded from.
    pub path: PathBuf,
    /// `major.minor.patch`, from `ncclGetVersion` (e.g. "2.28.9").
    pub version: String,
    pub(crate) api: Api,
    /// Kept open for the life of the process: `api` points into it.
    _lib: libloading::Library,
}

/// `ncclResult_t` as the C ABI passes it (an `int`): kept raw, so that a code newer than
/// this file is an error to report, not an invalid Rust enum.
pub type RawResult = c_int;
pub const NCCL_SUCCESS: RawResult = 0;
pub const NCCL_IN_PROGRESS: RawResult = 7;
/// `ncclDataType_t` values (nccl.h).
pub const NCCL_INT64: c_int = 4;
pub const NCCL_UINT8: c_int = 1;
/// `ncclRedOp_t::ncclSum`.
pub const NCCL_SUM: c_int = 0;

/// `ncclComm_t`: an opaque pointer.
pub type Comm = *mut c_void;
/// `cudaStream_t`: null is the legacy default stream, the one libtorch uses unless told.
pub type Stream = *mut c_void;

/// `ncclUniqueId`: 128 opaque bytes, passed by value.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct UniqueId {
    pub internal: [c_char; 128],
}

/// The functions the group calls, with nccl.h's signatures (enums as `int`).
pub(crate) struct Api {
    pub get_version: unsafe extern "C" fn(*mut c_int) -> RawResult,
    pub get_unique_id: unsafe extern "C" fn(*mut UniqueId) -> RawResult,
    pub comm_init_rank: unsafe extern "C" fn(*mut Comm, c_int, UniqueId, c_int) -> RawResult,
    /// sendbuff, recvbuff, count, datatype, op, comm, stream.
    pub all_reduce: unsafe extern "C" fn(
        *const c_void,
        *mut c_void,
        usize,
        c_int,
        c_int,
        Comm,
        Stream,
    ) -> RawResult,
    /// sendbuff, recvbuff, count, datatype, root, comm, stream.
    pub broadcast: unsafe extern "C" fn(
        *const c_void,
        *mut c_void,
        usize,
        c_int,
        c_int,
        Comm,
        Stream,
    ) -> RawResult,
    /// Also how a member lets go of its communicator: ncclCommDestroy may wait for the others.
    pub comm_abort: unsafe extern "C" fn(Comm) -> RawResult,
    pub comm_get_async_error: unsafe extern "C" fn(Comm, *mut RawResult) -> RawResult,
    pub get_error_string: unsafe extern "C" fn(RawResult) -> *const c_char,
}

impl NcclLibrary {
    /// NCCL's words for `code` (e.g. "unhandled cuda error"), with the code.
    pub fn error_string(&self, code: RawResult) -> String {
        // SAFETY: ncclGetErrorString returns a static NUL-terminated string for any code
        // (an "unknown result" text for codes it does not know).
        let text = unsafe { (self.api.get_error_string)(code) };
        match text.is_null() {
            true => format!("NCCL error {code}"),
            false => format!(
                "{} (NCCL error {code})",
                unsafe { CStr::from_ptr(text) }.to_string_lossy()
            ),
        }
    }

    /// `Ok` for `ncclSuccess`, else NCCL's words for the code, naming the call.
    pub fn check(&self, call: &str, code: RawResult) -> Result<(), String> {
        match code {
            NCCL_SUCCESS => Ok(()),
            code => Err(format!("{call}: {}", self.error_string(code))),
        }
    }
}

/// Finds and loads libnccl.so.2 once (later calls return the first outcome); `Err` names
/// every path tried and why each failed.
pub fn nccl_library() -> Result<&'static NcclLibrary, String> {
    static LIB: OnceLock<Result<NcclLibrary, String>> = OnceLock::new();
    LIB.get_or_init(|| {
        let torch = crate::libtorch_runtime::libtorch_lib_dir();
        let ld_path = std::env::var("LD_LIBRARY_PATH").ok();
        load_first(&search_order(torch.as_deref(), ld_path.as_deref()))
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// One place to look for libnccl.so.2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Candidate {
    File(PathBuf),
    /// `dlopen("libnccl.so.2")`: the system's library cache (`ldconfig`) and default folders.
    SystemCache,
}

/// Where to look, in order: the `nvidia/nccl/lib` beside the torch in use (its wheel's
/// NCCL, which matches its CUDA), each folder of `LD_LIBRARY_PATH`, the system's cache.
pub fn search_order(torch_lib: Option<&Path>, ld_library_path: Option<&str>) -> Vec<Candidate> {
    let wheel = torch_lib
        .and_then(|lib| lib.parent()?.parent().map(Path::to_path_buf))
        .map(|site| site.join("nvidia/nccl/lib").join(SONAME));
    let on_path = ld_library_path
        .unwrap_or("")
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(SONAME));
    wheel
        .into_iter()
        .chain(on_path)
        .map(Candidate::File)
        .chain([Candidate::SystemCache])
        .collect()
}

/// The first candidate that opens, has every function and tells its version; else every
/// candidate and why it failed.
pub fn load_first(candidates: &[Candidate]) -> Result<NcclLibrary, String> {
    let mut tried = Vec::with_capacity(candidates.len());
    for c in candidates {
        let (what, outcome) = match c {
            Candidate::File(p) if !p.exists() => {
                tried.push(format!("{} (no such file)", p.display()));
                continue;
            }
            Candidate::File(p) => (p.display().to_string(), open(p.as_os_str())),
            Candidate::SystemCache => (
                format!("the system's library cache (dlopen \"{SONAME}\")"),
                open(std::ffi::OsStr::new(SONAME)),
            ),
        };
        match outcome {
            Ok(lib) => return Ok(lib),
            Err(why) => tried.push(format!("{what} ({why})")),
        }
    }
    Err(format!(
        "cannot load {SONAME}; tried: {}. Install NCCL beside torch (pip install nvidia-nccl-cu13 into torch's environment)",
        tried.join("; ")
    ))
}

/// Opens `name` (a path, or a bare name for the system's search) and reads its version.
fn open(name: &std::ffi::OsStr) -> Result<NcclLibrary, String> {
    // SAFETY: loading NCCL runs its initialisers, which only set up NCCL's own state.
    let lib = unsafe { libloading::Library::new(name) }.map_err(|e| e.to_string())?;
    let api = resolve(&lib)?;
    let mut code: c_int = 0;
    // SAFETY: ncclGetVersion writes one int; it needs no GPU.
    let r = unsafe { (api.get_version)(&mut code) };
    if r != NCCL_SUCCESS {
        return Err(format!("ncclGetVersion returned {r}"));
    }
    let path = loaded_path(api.get_version as *const c_void).unwrap_or_else(|| PathBuf::from(name));
    Ok(NcclLibrary {
        path,
        version: version_string(code),
        api,
        _lib: lib,
    })
}

fn resolve(lib: &libloading::Library) -> Result<Api, String> {
    /// Copies one function pointer out of `lib`.
    fn sym<T: Copy>(lib: &libloading::Library, name: &str) -> Result<T, String> {
        // SAFETY: each `T` below is the function's signature in nccl.h; the pointer stays
        // valid while the library is open, and `NcclLibrary` keeps it open.
        unsafe { lib.get::<T>(name.as_bytes()) }
            .map(|s| *s)
            .map_err(|e| format!("no {name}: {e}"))
    }
    Ok(Api {
        get_version: sym(lib, "ncclGetVersion")?,
        get_unique_id: sym(lib, "ncclGetUniqueId")?,
        comm_init_rank: sym(lib, "ncclCommInitRank")?,
        all_reduce: sym(lib, "ncclAllReduce")?,
        broadcast: sym(lib, "ncclBroadcast")?,
        comm_abort: sym(lib, "ncclCommAbort")?,
        comm_get_async_error: sym(lib, "ncclCommGetAsyncError")?,
        get_error_string: sym(lib, "ncclGetErrorString")?,
    })
}

/// The file a loaded function lives in (`dladdr`): the path the system's search chose.
fn loaded_path(f: *const c_void) -> Option<PathBuf> {
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: `f` is a function of a library this process has open; dladdr only reads.
    if unsafe { libc::dladdr(f, &mut info) } == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is the NUL-terminated name of the loaded object.
    let name = unsafe { CStr::from_ptr(info.dli_fname) }.to_string_lossy();
    let path = PathBuf::from(name.as_ref());
    Some(std::fs::canonicalize(&path).unwrap_or(path))
}

/// NCCL's version code as `major.minor.patch` (the code is major*10000 + minor*100 + patch
/// since NCCL 2.9; major*1000 + minor*100 + patch before).
fn version_string(code: c_int) -> String {
    let (major, rest) = match code >= 10000 {
        true => (code / 10000, code % 10000),
        false => (code / 1000, code % 1000),
    };
    format!("{major}.{}.{}", rest / 100, rest % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wheel's folder beside the torch these tests run against (scripts/setup.sh puts
    /// nvidia-nccl-cu13 there).
    fn torch_lib() -> PathBuf {
        let _ = tch::Tensor::zeros([1], tch::kind::FLOAT_CPU); // libtorch is mapped
        crate::libtorch_runtime::libtorch_lib_dir().expect("libtorch_cpu.so is mapped")
    }

    #[test]
    fn the_wheel_beside_torch_comes_first_and_its_version_is_read() {
        let lib = nccl_library().unwrap();
        let wheel = torch_lib().join("../../nvidia/nccl/lib").join(SONAME);
        assert_eq!(lib.path, std::fs::canonicalize(wheel).unwrap());
        assert_eq!(lib.version, "2.28.9", "the version scripts/setup.sh pins");
        assert!(
            lib.error_string(3).contains("internal error"),
            "{}",
            lib.error_string(3)
        );
    }

    #[test]
    fn the_order_is_torch_then_ld_library_path_then_the_system() {
        let got = search_order(Some(Path::new("/s/torch/lib")), Some("/a::/b"));
        let file = |p: &str| Candidate::File(PathBuf::from(p));
        assert_eq!(
            got,
            vec![
                file("/s/nvidia/nccl/lib/libnccl.so.2"),
                file("/a/libnccl.so.2"),
                file("/b/libnccl.so.2"),
                Candidate::SystemCache,
            ]
        );
        assert_eq!(search_order(None, None), vec![Candidate::SystemCache]);
    }

    #[test]
    fn a_folder_on_the_search_path_is_used_when_torch_has_no_nccl_beside_it() {
        let fake = tempfile::tempdir().unwrap();
        let fake_torch = fake.path().join("site-packages/torch/lib");
        std::fs::create_dir_all(&fake_torch).unwrap();
        let wheel_dir = torch_lib().join("../../nvidia/nccl/lib");
        let ld = format!("/nonexistent:{}", wheel_dir.display());
        let order = search_order(Some(&fake_torch), Some(&ld));
        let lib = load_first(&order[..3]).unwrap();
        let want = std::fs::canonicalize(wheel_dir.join(SONAME)).unwrap();
        assert_eq!(lib.path, want);
    }

    #[test]
    fn a_missing_library_names_each_path_tried_and_why() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join(SONAME);
        std::fs::write(&junk, b"not an ELF file").unwrap();
        let absent = PathBuf::from("/nonexistent/libnccl.so.2");
        let e = load_first(&[Candidate::File(absent), Candidate::File(junk.clone())])
            .err()
            .expect("nothing loads");
        assert!(
            e.contains("/nonexistent/libnccl.so.2 (no such file)"),
            "{e}"
        );
        assert!(e.contains(&format!("{} (", junk.display())), "{e}");
        assert!(e.contains("pip install nvidia-nccl-cu13"), "{e}");
    }

    #[test]
    fn version_codes_read_as_nccl_prints_them() {
        assert_eq!(version_string(22809), "2.28.9");
        assert_eq!(version_string(2708), "2.7.8");
    }
}
