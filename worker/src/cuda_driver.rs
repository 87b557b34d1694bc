//! What the NVIDIA driver says about this node's GPUs, through cudarc's driver API loaded at
//! run time (no CUDA is needed to build or to run on CPU). The driver numbers devices as
//! libtorch does, after `CUDA_VISIBLE_DEVICES`, unlike `nvidia-smi --id`; and under MIG it
//! reports the instance, not the whole GPU.

use std::path::PathBuf;

use cudarc::driver::CudaContext;

/// One GPU as the driver sees it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GpuInfo {
    pub ordinal: usize,
    pub name: String,
    /// Compute capability (major, minor): 9.0 on an H100.
    pub capability: (i32, i32),
    pub memory_total: u64,
    /// Free now, in this process' context (`cuMemGetInfo`).
    pub memory_free: u64,
}

/// Whether libcuda can be opened. Every other call here needs it: cudarc panics without it.
pub fn driver_present() -> bool {
    // SAFETY: only tries to open the shared library.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// The libcuda mapped into this process (after `driver_present`), or why there is none.
pub fn libcuda_path() -> Result<PathBuf, String> {
    if !driver_present() {
        return Err("libcuda.so.1 cannot be opened: no NVIDIA driver on this node, or it is not on the loader's path".into());
    }
    let maps = std::fs::read_to_string("/proc/self/maps").map_err(|e| e.to_string())?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| {
            p.rsplit('/')
                .next()
                .is_some_and(|f| f.starts_with("libcuda.so"))
        })
        .map(PathBuf::from)
        .ok_or_else(|| "libcuda opened, but not found in /proc/self/maps".into())
}

/// Every GPU the driver lists, with its memory; empty without a driver.
pub fn gpus() -> Result<Vec<GpuInfo>, String> {
    if !driver_present() {
        return Ok(Vec::new());
    }
    let count = CudaContext::device_count().map_err(|e| format!("cuDeviceGetCount: {e:?}"))?;
    (0..count as usize).map(gpu).collect()
}

/// GPU `ordinal`'s name, capability and memory, from its primary context (the one libtorch
/// uses, so the free figure already counts what libtorch holds).
pub fn gpu(ordinal: usize) -> Result<GpuInfo, String> {
    if !driver_present() {
        return Err("no NVIDIA driver (libcuda.so.1 cannot be opened)".into());
    }
    let err = |what: &str, e: cudarc::driver::DriverError| format!("cuda:{ordinal}: {what}: {e:?}");
    let ctx = CudaContext::new(ordinal).map_err(|e| err("context", e))?;
    let (free, total) = ctx.mem_get_info().map_err(|e| err("cuMemGetInfo", e))?;
    Ok(GpuInfo {
        ordinal,
        name: ctx.name().map_err(|e| err("name", e))?,
        capability: ctx
            .compute_capability()
            .map_err(|e| err("compute capability", e))?,
        memory_total: total as u64,
        memory_free: free as u64,
    })
}

/// How many GPUs the driver lists (0 without a driver).
pub fn gpu_count() -> usize {
    if !driver_present() {
        return 0;
    }
    CudaContext::device_count().map_or(0, |n| n.max(0) as usize)
}
