//! Link flags tch applies only to its own targets (SETUP.md, "the trap"): a RUNPATH to
//! libtorch so the binaries run without LD_LIBRARY_PATH. libtorch_cuda is not linked: the
//! worker opens it at start-up when it is there (`libtorch_runtime::load_cuda`), so one binary
//! serves CPU and GPU nodes. Also hands the code the version of the libtorch it is built
//! against, which the worker checks the loaded one against.
use std::path::Path;

#[path = "src/libtorch_version.rs"]
mod libtorch_version;

fn main() {
    println!("cargo:rerun-if-env-changed=TCH_EXTRA_RPATH");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB").ok();
    let version = lib.as_deref().and_then(|l| {
        let root = Path::new(l).join("..");
        // Only files that exist: cargo reruns a script on every build for a missing one.
        for file in ["version.py", "build-version"].map(|f| root.join(f)) {
            if file.exists() {
                println!("cargo:rerun-if-changed={}", file.display());
            }
        }
        libtorch_version::libtorch_version(Path::new(l))
    });
    println!(
        "cargo:rustc-env=ATTRIB_LIBTORCH_BUILT_AGAINST={}",
        version.as_deref().unwrap_or("unknown")
    );
    let Some(lib) = lib else {
        return;
    };
    // Another libtorch in the same folder (scripts/setup.sh moving .libtorch) relinks.
    println!("cargo:rerun-if-changed={lib}");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if let Ok(extra) = std::env::var("TCH_EXTRA_RPATH") {
        for dir in extra.split(':').filter(|d| !d.is_empty()) {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        }
    }
    println!("cargo:rustc-link-arg=-Wl,--export-dynamic-symbol=mkl_serv_intel_cpu_true");
}
