//! `--device auto|cpu|cuda:N`, resolved to a tch device with a clear error when unavailable.

use tch::Device;

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
}
