//! The memory a worker declares when it joins: what one unit may use, model included. The
//! coordinator sends it no unit estimated to need more (`attrib_proto::memory`).

use tch::Device;

/// `--memory-mib` when given; else on CPU the machine's memory (or the cgroup's limit, in a
/// container), on a GPU its memory as `nvidia-smi` reports it. 0 (undeclared) when unknown.
pub fn declared_memory(device: Device, flag_mib: Option<u64>) -> u64 {
    if let Some(mib) = flag_mib {
        return mib << 20;
    }
    match device {
        Device::Cuda(i) => gpu_memory(i).unwrap_or_else(|| {
            tracing::warn!("cannot read cuda:{i}'s memory (nvidia-smi); give --memory-mib so that the coordinator can size units");
            0
        }),
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

fn gpu_memory(index: usize) -> Option<u64> {
    let out = std::process::Command::new("nvidia-smi")
        .args([
            "--query-gpu=memory.total",
            "--format=csv,noheader,nounits",
            &format!("--id={index}"),
        ])
        .output()
        .ok()?;
    let mib: u64 = String::from_utf8(out.stdout).ok()?.trim().parse().ok()?;
    Some(mib << 20)
}
