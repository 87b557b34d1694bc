//! The device class a worker states in its hello and stamps on its results: the hardware
//! kind whose kernels make the f32 partial sums (a CPU's vector unit and libtorch's thread
//! count, which cuts its reductions; a GPU's compute capability) and the libtorch release
//! that picks those kernels. Two devices of one class
//! compute a unit to the same bits; of two classes, not necessarily, so the coordinator keeps
//! each job on one class. Read from the machine, never set by a flag: a class must be true.

use std::collections::HashSet;

use attrib_proto::MAX_DEVICE_CLASS_CHARS;
use tch::Device;

use crate::device::device_name;
use crate::libtorch_runtime::{libtorch_lib_dir, libtorch_version};
use crate::{Error, Result};

/// The class of `device` with the loaded libtorch, e.g. `cpu-avx512-t8+libtorch-2.11.0+cpu`
/// or `cuda-sm90+libtorch-2.11.0+cu130`. On a CPU, `-t<N>` is libtorch's intra-op thread
/// count: one unit on 1 and on 2 threads differs in most edges (docs/cluster.md).
pub fn device_class(device: Device) -> Result<String> {
    let hardware = match device {
        Device::Cpu => {
            let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
            let forced = std::env::var("ATEN_CPU_CAPABILITY").ok();
            let unit = cpu_class(&cpuinfo, forced.as_deref());
            format!("{unit}-t{}", tch::get_num_threads())
        }
        Device::Cuda(ordinal) => cuda_class(ordinal)?,
        other => device_name(other).to_ascii_lowercase(),
    };
    let version = libtorch_lib_dir()
        .and_then(|d| libtorch_version(&d))
        .unwrap_or_else(|| "unknown".into());
    Ok(compose(&hardware, &version))
}

/// The one class of a node group's `devices`; a group whose members differ is refused (its
/// summed result would mix classes inside one message).
pub fn group_class(devices: &[Device]) -> Result<String> {
    let classes = devices
        .iter()
        .map(|&d| device_class(d))
        .collect::<Result<Vec<_>>>()?;
    one_class(devices, &classes)
}

/// The class every device has (`classes[i]` is `devices[i]`'s), or an error naming each.
fn one_class(devices: &[Device], classes: &[String]) -> Result<String> {
    match classes.iter().collect::<HashSet<_>>().len() {
        0 => Err(Error::NoDevice),
        1 => Ok(classes[0].clone()),
        _ => Err(Error::MixedDeviceClasses(
            devices
                .iter()
                .zip(classes)
                .map(|(&d, c)| format!("{} is {c}", device_name(d)))
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

/// The vector unit ATen's CPU kernels dispatch to. AVX-512 kernels need F, BW, VL and DQ
/// (ATen's own test, not just avx512f), AVX2 ones AVX2 and FMA; `ATEN_CPU_CAPABILITY`
/// (`default`, `avx2`) lowers the choice, as it does in ATen.
fn cpu_class(cpuinfo: &str, forced: Option<&str>) -> &'static str {
    let flags: HashSet<&str> = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, f)| f.split_whitespace().collect())
        .unwrap_or_default();
    let has = |want: &[&str]| want.iter().all(|f| flags.contains(f));
    let hardware = if has(&["avx512f", "avx512bw", "avx512vl", "avx512dq"]) {
        2
    } else if has(&["avx2", "fma"]) {
        1
    } else {
        0
    };
    let allowed = match forced.map(str::to_ascii_lowercase).as_deref() {
        Some("default") => 0,
        Some("avx2") => 1,
        _ => 2,
    };
    ["cpu", "cpu-avx2", "cpu-avx512"][hardware.min(allowed)]
}

/// `cuda-sm<major><minor>` of CUDA device `ordinal`, from the driver.
fn cuda_class(ordinal: usize) -> Result<String> {
    let gpu = crate::cuda_driver::gpu(ordinal).map_err(|message| Error::Cuda {
        device: format!("cuda:{ordinal}"),
        message,
    })?;
    let (major, minor) = gpu.capability;
    Ok(format!("cuda-sm{major}{minor}"))
}

/// `<hardware>+libtorch-<version>`, made a valid class whatever the version file said: odd
/// characters become `_`, and the end is cut at the class's length limit.
fn compose(hardware: &str, version: &str) -> String {
    format!("{hardware}+libtorch-{version}")
        .chars()
        .map(|c| match c {
            c if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-') => c,
            _ => '_',
        })
        .take(MAX_DEVICE_CLASS_CHARS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use attrib_proto::check_device_class;

    const AVX512: &str =
        "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma avx512f avx512dq avx512bw avx512vl\n";

    #[test]
    fn a_cpu_class_is_the_vector_unit_aten_uses() {
        assert_eq!(cpu_class(AVX512, None), "cpu-avx512");
        assert_eq!(cpu_class(AVX512, Some("AVX2")), "cpu-avx2");
        assert_eq!(cpu_class(AVX512, Some("default")), "cpu");
        let no_bw = AVX512.replace(" avx512bw", "");
        assert_eq!(
            cpu_class(&no_bw, None),
            "cpu-avx2",
            "avx512f alone is not ATen's AVX-512"
        );
        assert_eq!(
            cpu_class("flags : sse2 avx2\n", None),
            "cpu",
            "AVX2 kernels need FMA"
        );
        assert_eq!(cpu_class("flags : avx2 fma\n", Some("avx512")), "cpu-avx2");
        assert_eq!(cpu_class("Features : fp asimd\n", None), "cpu");
    }

    #[test]
    fn classes_are_valid_and_name_the_libtorch() {
        let _ = tch::Tensor::zeros([1], tch::kind::FLOAT_CPU); // libtorch is mapped
        let c = device_class(Device::Cpu).unwrap();
        let threads = format!("-t{}+libtorch-", tch::get_num_threads());
        assert!(c.starts_with("cpu") && c.contains(&threads), "{c}");
        let v = libtorch_version(&libtorch_lib_dir().unwrap()).unwrap();
        assert!(c.ends_with(&format!("+libtorch-{v}")), "{c}");
        assert_eq!(check_device_class(&c), Ok(()));
        assert_eq!(group_class(&[Device::Cpu, Device::Cpu]).unwrap(), c);
        let two = [Device::Cuda(0), Device::Cuda(1)];
        let e = one_class(&two, &["cuda-sm90+x".into(), "cuda-sm80+x".into()]).unwrap_err();
        let want = "but cuda:0 is cuda-sm90+x, cuda:1 is cuda-sm80+x: start one worker per class";
        assert!(e.to_string().contains(want), "{e}");
        assert!(matches!(one_class(&[], &[]), Err(Error::NoDevice)));
        assert_eq!(
            compose("cuda-sm90", "2.11.0+cu130"),
            "cuda-sm90+libtorch-2.11.0+cu130"
        );
        let odd = compose("cpu", &format!("2.11 (git {})", "f".repeat(80)));
        assert!(odd.starts_with("cpu+libtorch-2.11__git_f"), "{odd}");
        assert_eq!(check_device_class(&odd), Ok(()));
    }
}
