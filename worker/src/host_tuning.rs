//! Host-side settings that decide libtorch's CPU speed on the machines attrib runs on.
//!
//! * libtorch's MKL picks its generic GEMM kernels on CPUs whose vendor is not Intel (AMD
//!   EPYC here: 26-27 GFLOP/s instead of 55-68 on 2 cores, by `attrib-worker host-check`). MKL asks `mkl_serv_intel_cpu_true`
//!   whether the CPU is Intel; the binaries export their own answer (build.rs adds
//!   `--export-dynamic-symbol`), so MKL then selects kernels by the CPU's feature flags, as it
//!   does on Intel. Results stay IEEE float32 GEMMs; the golden tests run with it.
//! * Fresh pages are expensive in the VMs we run on (5-7 µs each by host-check), and
//!   glibc returns large freed blocks to the kernel. Keeping freed memory in the heap makes
//!   every pass after the first reuse its pages.

use std::sync::Once;

/// MKL's vendor check (see module doc). Exported from the binaries that link this crate.
#[no_mangle]
pub extern "C" fn mkl_serv_intel_cpu_true() -> std::os::raw::c_int {
    1
}

/// Applies the settings once per process; called before a model is loaded.
pub fn tune_host() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Keep the override linked into every binary that loads a model.
        std::hint::black_box(mkl_serv_intel_cpu_true as extern "C" fn() -> std::os::raw::c_int);
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        unsafe {
            // Serve every allocation from the heap and never trim it: freed blocks are reused.
            libc::mallopt(libc::M_MMAP_MAX, 0);
            libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        }
    });
}
