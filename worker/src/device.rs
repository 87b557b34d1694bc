//! `--device auto|cpu|cuda:N`, resolved to a tch device with a clear error when unavailable;
//! and the few places where a unit's data crosses between host and device.

use tch::{Device, Kind, Tensor};

use crate::{Error, Result};

pub fn parse_device(spec: &str) -> Result<Device> {
    match spec {
        "auto" => Ok(Device::cuda_if_available()),
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
                    reason: "libtorch sees no CUDA device".into(),
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
/// that the host never waits for the device.
pub fn upload(host: Tensor, device: Device) -> Tensor {
    match device {
        Device::Cuda(_) => host
            .pin_memory(device)
            .to_device_(device, host.kind(), true, false),
        _ => host.to_device(device),
    }
}

/// A device tensor's f32 values on the host: the one copy that waits for the device (into a
/// pinned buffer on a GPU).
pub fn download_f32(t: &Tensor) -> Vec<f32> {
    let host = match t.device() {
        Device::Cuda(_) => {
            let mut pinned =
                Tensor::empty(t.size(), (Kind::Float, Device::Cpu)).pin_memory(t.device());
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
    specs.iter().map(|s| parse_device(s)).collect()
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
