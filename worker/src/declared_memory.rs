//! The memory a worker declares when it joins: what one unit may use, model included. The
//! coordinator sends it no unit estimated to need more (`attrib_proto::memory`).

use tch::Device;

/// `--memory-mib` when given; else on CPU the machine's memory (or the cgroup's limit, in a
/// container), on a GPU what its driver reports free in this process' context
/// (`cuMemGetInfo`: after `CUDA_VISIBLE_DEVICES`, per MIG instance, and net of the context
/// itself) less `gpu_reserve`. 0 (undeclared) when unknown.
pub fn declared_memory(device: Device, flag_mib: Option<u64>) -> u64 {
    if let Some(mib) = flag_mib {
        return mib << 20;
    }
    match device {
        Device::Cuda(i) => match crate::cuda_driver::gpu(i) {
            Ok(g) => g.memory_free.saturating_sub(gpu_reserve(g.memory_total)),
            Err(e) => {
                tracing::warn!("cannot read cuda:{i}'s memory ({e}); give --memory-mib so that the coordinator can size units");
                0
            }
        },
        _ => host_memory().unwrap_or(0),
    }
}

fn host_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let total = kib << 10;
    // cgroup v2: "max" or a byte count.
    let limit = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    Some(limit.map_or(total, |l| l.min(total)))
}

/// What a GPU keeps back from the declared figure: cuBLAS's workspaces, the collectives'
/// buffers and the caching allocator's fragmentation, none of which `cuMemGetInfo` counts
/// before the first unit. 1 GiB, or 5% of the GPU's memory when that is more.
pub fn gpu_reserve(total: u64) -> u64 {
    (1u64 << 30).max(total / 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gpu_reserve_is_a_gib_or_five_percent() {
        assert_eq!(gpu_reserve(16 << 30), 1 << 30);
        assert_eq!(gpu_reserve(80 << 30), 4 << 30);
        assert_eq!(declared_memory(Device::Cpu, Some(100)), 100 << 20);
    }
}
