//! Link flags tch applies only to its own targets (SETUP.md, "the trap"): a RUNPATH to
//! libtorch so the binaries run without LD_LIBRARY_PATH, and `--no-as-needed -ltorch` so
//! libtorch_cuda is loaded and CUDA is visible. CUDA linking is on when the venv holds the
//! CUDA libraries (ATTRIB_CUDA=1 scripts/setup.sh) or TCH_LINK_CUDA=1, off with TCH_LINK_CUDA=0.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=TCH_LINK_CUDA");
    println!("cargo:rerun-if-env-changed=TCH_EXTRA_RPATH");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if let Ok(extra) = std::env::var("TCH_EXTRA_RPATH") {
        for dir in extra.split(':').filter(|d| !d.is_empty()) {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        }
    }
    // The PyPI wheel keeps CUDA's libraries beside torch, in site-packages/nvidia: per library
    // up to CUDA 12 (nvidia/cublas/lib), all in one folder from CUDA 13 (nvidia/cu13/lib).
    let nvidia = Path::new(&lib).join("../../nvidia");
    let cuda_libs_present = nvidia.join("cublas/lib").exists()
        || std::fs::read_dir(nvidia.join("cu13/lib")).is_ok_and(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("libcublas"))
        });
    let link_cuda = match std::env::var("TCH_LINK_CUDA").as_deref() {
        Ok("0") => false,
        Ok(_) => true,
        Err(_) => cuda_libs_present,
    };
    println!("cargo:rustc-link-arg=-Wl,--export-dynamic-symbol=mkl_serv_intel_cpu_true");
    if link_cuda && Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
