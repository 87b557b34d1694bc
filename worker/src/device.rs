//! `--device auto|cpu|cuda:N`, resolved to a tch device with a clear error when unavailable;
//! and the few places where a unit's data crosses between host and device.

use tch::{Device, Kind, Tensor};

use crate::{Error, Result};

pub fn parse_device(spec: &str) -> Result<Device> {
    parse_local_device(spec, 0)
}

/// `parse_device` for the `local_index`-th worker of a machine (`serve --local-index`): its
/// `auto` is `cuda:(local_index mod GPUs)`, so that a machine's workers spread over its GPUs.
pub fn parse_local_device(spec: &str, local_index: usize) -> Result<Device> {
    // libtorch_cuda first (once): a library user such as the tests never ran main's start-up,
    // and libtorch keeps the answer of its first CUDA query.
    crate::libtorch_runtime::load_cuda();
    match spec {
        "auto" => Ok(auto_device(local_index)),
        "cpu" => Ok(Device::Cpu),
        "cuda" => parse_device("cuda:0"),
        s => {
            let n: usize = s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| Error::BadDevice(s.to_string()))?;
            if !tch::Cuda::is_available() {
                return Err(Error::DeviceUnavailable {
                    device: s.into(),
                    reason: why_no_cuda(),
                });
            }
            let count = tch::Cuda::device_count() as usize;
            if n >= count {
                return Err(Error::DeviceUnavailable {
                    device: s.into(),
                    reason: format!("only {count} CUDA devices"),
                });
            }
            Ok(Device::Cuda(n))
        }
    }
}

/// `auto`: GPU `local_index mod count` when libtorch sees CUDA; else the CPU, with a warning
/// naming the reason when the driver lists an NVIDIA device all the same.
fn auto_device(local_index: usize) -> Device {
    if tch::Cuda::is_available() {
        let count = tch::Cuda::device_count() as usize;
        return Device::Cuda(spread_over_gpus(local_index, count));
    }
    if crate::libtorch_runtime::nvidia_device_present() {
        eprintln!("[attrib] warning: --device auto runs on the CPU although this node has an NVIDIA device: {}. Run `attrib-worker doctor` for details.", why_no_cuda());
    }
    Device::Cpu
}

/// Why libtorch sees no CUDA device, as far as this process can tell.
fn why_no_cuda() -> String {
    match &crate::libtorch_runtime::load_cuda().error {
        Some(e) => format!("libtorch sees no CUDA device: libtorch_cuda did not load ({e})"),
        None if crate::libtorch_runtime::nvidia_device_present() => "libtorch_cuda loaded, but libtorch sees no CUDA device (a driver older than the CUDA libtorch was built with?)".into(),
        None => "libtorch sees no CUDA device (no NVIDIA driver lists one)".into(),
    }
}

/// The GPU of a machine's `local_index`-th worker among `count` GPUs (count > 0).
pub fn spread_over_gpus(local_index: usize, count: usize) -> usize {
    local_index % count.max(1)
}

/// Deterministic CUDA settings, set before CUDA starts (unless the user set them): cuBLAS's
/// fixed workspace (so its reductions are run-to-run reproducible) and no TF32 in cuBLAS or
/// cuDNN (libtorch's fp32 matmuls already default to full precision; this also covers
/// libraries that read NVIDIA's override). Same unit, same GPU model: same bits.
pub fn deterministic_cuda_env() {
    for (key, value) in [
        ("CUBLAS_WORKSPACE_CONFIG", ":4096:8"),
        ("NVIDIA_TF32_OVERRIDE", "0"),
    ] {
        if std::env::var_os(key).is_none() {
            // Called first thing in main, before any thread exists.
            std::env::set_var(key, value);
        }
    }
}

/// Host data for `device`: on a GPU through a pinned buffer and an asynchronous copy, so
/// that the host never waits for the device. (`_pin_memory`: `pin_memory` given a device, as
/// tch always gives one, prints PyTorch's deprecation warning on every call.)
pub fn upload(host: Tensor, device: Device) -> Tensor {
    match device {
        Device::Cuda(_) => {
            host.internal_pin_memory(device)
                .to_device_(device, host.kind(), true, false)
        }
        _ => host.to_device(device),
    }
}

/// A device tensor's f32 values on the host: the one copy that waits for the device (into a
/// pinned buffer on a GPU).
pub fn download_f32(t: &Tensor) -> Vec<f32> {
    let host = match t.device() {
        Device::Cuda(_) => {
            let mut pinned =
                Tensor::empty(t.size(), (Kind::Float, Device::Cpu)).internal_pin_memory(t.device());
            pinned.copy_(t);
            pinned
        }
        _ => t.to_device(Device::Cpu),
    };
    Vec::<f32>::try_from(host.to_kind(Kind::Float)).expect("f32 values")
}

/// Waits for `device`'s queued work (a no-op on the CPU): stage timers read the clock after.
pub fn synchronize(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Whether libtorch's error is the device running out of memory.
pub fn is_out_of_memory(message: &str) -> bool {
    message.contains("CUDA out of memory") || message.contains("OutOfMemoryError")
}

/// A node group's `--devices a,b,...` (one or more).
pub fn parse_devices(specs: &[String]) -> Result<Vec<Device>> {
    parse_local_devices(specs, 0)
}

/// `parse_devices` for a machine's `local_index`-th worker (each `auto` as its own worker's).
pub fn parse_local_devices(specs: &[String], local_index: usize) -> Result<Vec<Device>> {
    specs
        .iter()
        .enumerate()
        .map(|(i, s)| parse_local_device(s, local_index + i))
        .collect()
}

pub fn device_name(d: Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(n) => format!("cuda:{n}"),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_and_refuses_junk() {
        assert_eq!(parse_device("cpu").unwrap(), Device::Cpu);
        assert!(parse_device("gpu")
            .unwrap_err()
            .to_string()
            .contains("auto, cpu or cuda:N"));
        assert!(parse_device("cuda:x").is_err());
    }

    #[test]
    fn a_machines_workers_spread_over_its_gpus() {
        let gpus: Vec<usize> = (0..7).map(|i| spread_over_gpus(i, 3)).collect();
        assert_eq!(gpus, [0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(spread_over_gpus(5, 1), 0);
        assert_eq!(spread_over_gpus(5, 8), 5);
        // Without CUDA, auto is the CPU whatever the index.
        if !tch::Cuda::is_available() {
            assert_eq!(parse_local_device("auto", 3).unwrap(), Device::Cpu);
        }
    }

    #[test]
    fn host_copies_keep_every_bit_on_the_cpu() {
        let v = [1.5f32, -0.0, f32::MIN_POSITIVE, 3.0e38];
        let t = upload(Tensor::from_slice(&v), Device::Cpu);
        let back = download_f32(&t);
        assert_eq!(
            back.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
        assert!(is_out_of_memory(
            "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 139.81 GiB total capacity)"
        ));
        assert!(!is_out_of_memory("shape mismatch"));
    }
}
