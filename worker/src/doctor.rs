//! `attrib-worker doctor [--json]`: what a user runs first on a new node (after PyTorch's
//! `collect_env`). It says which libtorch this process loaded and from where, whether its
//! CUDA half loaded, where libcuda and NCCL were found (or why not), every device with its
//! memory, the settings that decide the bits on a GPU, and what `auto` would choose.

use std::path::PathBuf;

use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::group::CollectiveKind;
use crate::libtorch_runtime::{libtorch_lib_dir, libtorch_version, load_cuda, BUILT_AGAINST};

#[derive(Serialize)]
pub struct Report {
    pub libtorch: Libtorch,
    pub libtorch_cuda: LibtorchCuda,
    pub libcuda: Found,
    pub libnccl: Nccl,
    pub devices: Vec<DeviceEntry>,
    pub settings: Settings,
    /// What `--device auto` resolves to for the first worker of this machine.
    pub auto_device: String,
    /// The collective `--collective auto` picks for a node group.
    pub collective_auto: String,
}

#[derive(Serialize)]
pub struct Libtorch {
    pub path: Option<PathBuf>,
    pub version: Option<String>,
    pub built_against: &'static str,
    /// Whether the loaded libtorch ships libtorch_cuda.so.
    pub cuda_build: bool,
}

#[derive(Serialize)]
pub struct LibtorchCuda {
    pub loaded: bool,
    pub path: Option<PathBuf>,
    pub error: Option<String>,
}

#[derive(Serialize)]
pub struct Found {
    pub path: Option<PathBuf>,
    pub error: Option<String>,
}

#[derive(Serialize)]
pub struct Nccl {
    pub path: Option<PathBuf>,
    pub version: Option<String>,
    pub error: Option<String>,
}

#[derive(Serialize)]
pub struct DeviceEntry {
    pub name: String,
    /// `cpu` or `cuda:N`.
    pub kind: String,
    pub memory_total: u64,
    pub memory_free: u64,
    /// Whether libtorch can compute on it (a GPU the driver lists but libtorch does not see
    /// is the first thing to fix).
    pub libtorch_sees: bool,
}

#[derive(Serialize)]
pub struct Settings {
    pub cublas_workspace_config: Option<String>,
    pub nvidia_tf32_override: Option<String>,
    /// Per GPU: max |fp32 − fp64| / max |fp64| of a 4096² matmul. Near 1e-6 without TF32;
    /// near 1e-3 when TF32 is on, which would break the golden tolerances.
    pub tf32_canary: Vec<(String, f64)>,
}

pub fn report() -> Report {
    let dir = libtorch_lib_dir();
    let cuda = load_cuda();
    let gpus = crate::cuda_driver::gpus();
    let torch_gpus = match tch::Cuda::is_available() {
        true => tch::Cuda::device_count() as usize,
        false => 0,
    };
    let mut devices = vec![cpu_entry()];
    let gpu_list = gpus.as_ref().map(Vec::as_slice).unwrap_or_default();
    devices.extend(gpu_list.iter().map(|g| DeviceEntry {
        name: g.name.clone(),
        kind: format!("cuda:{}", g.ordinal),
        memory_total: g.memory_total,
        memory_free: g.memory_free,
        libtorch_sees: g.ordinal < torch_gpus,
    }));
    let nccl = crate::group::nccl_lib::nccl_library();
    Report {
        libtorch: Libtorch {
            version: dir.as_deref().and_then(libtorch_version),
            cuda_build: dir
                .as_ref()
                .is_some_and(|d| d.join("libtorch_cuda.so").exists()),
            path: dir,
            built_against: BUILT_AGAINST,
        },
        libtorch_cuda: LibtorchCuda {
            loaded: cuda.loaded,
            path: cuda.path.clone(),
            error: cuda.error.clone(),
        },
        libcuda: match crate::cuda_driver::libcuda_path() {
            Ok(p) => Found {
                path: Some(p),
                error: gpus.as_ref().err().cloned(),
            },
            Err(e) => Found {
                path: None,
                error: Some(e),
            },
        },
        libnccl: match nccl {
            Ok(n) => Nccl {
                path: Some(n.path.clone()),
                version: Some(n.version.clone()),
                error: None,
            },
            Err(e) => Nccl {
                path: None,
                version: None,
                error: Some(e),
            },
        },
        devices,
        settings: Settings {
            cublas_workspace_config: std::env::var("CUBLAS_WORKSPACE_CONFIG").ok(),
            nvidia_tf32_override: std::env::var("NVIDIA_TF32_OVERRIDE").ok(),
            tf32_canary: (0..torch_gpus)
                .map(|i| (format!("cuda:{i}"), tf32_canary(Device::Cuda(i))))
                .collect(),
        },
        auto_device: crate::device::parse_device("auto")
            .map_or_else(|e| e.to_string(), crate::device::device_name),
        collective_auto: CollectiveKind::parse("auto")
            .map_or_else(|e| e.to_string(), |k| format!("{k:?}").to_lowercase()),
    }
}

fn cpu_entry() -> DeviceEntry {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let name = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split(':').nth(1))
        .map_or("cpu".into(), |n| n.trim().to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib = |key: &str| -> u64 {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(key)?.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    DeviceEntry {
        name: format!("{name} ({} threads)", tch::get_num_threads()),
        kind: "cpu".into(),
        memory_total: kib("MemTotal:") << 10,
        memory_free: kib("MemAvailable:") << 10,
        libtorch_sees: true,
    }
}

/// max |fp32 − fp64| / max |fp64| of a 4096² matmul on `device`.
fn tf32_canary(device: Device) -> f64 {
    let _guard = tch::no_grad_guard();
    let a = Tensor::randn([4096, 4096], (Kind::Double, Device::Cpu)).to_device(device);
    let b = Tensor::randn([4096, 4096], (Kind::Double, Device::Cpu)).to_device(device);
    let exact = a.matmul(&b);
    let fp32 = a.to_kind(Kind::Float).matmul(&b.to_kind(Kind::Float));
    let diff = (fp32.to_kind(Kind::Double) - &exact).abs().max();
    diff.double_value(&[]) / exact.abs().max().double_value(&[])
}

/// The report as lines for a person.
pub fn render(r: &Report) -> String {
    let opt = |p: &Option<PathBuf>| p.as_ref().map_or("-".into(), |p| p.display().to_string());
    let why = |e: &Option<String>| e.as_ref().map_or(String::new(), |e| format!(" ({e})"));
    let mut out = vec![
        format!(
            "libtorch        {} {} (built against {}; {})",
            opt(&r.libtorch.path),
            r.libtorch.version.as_deref().unwrap_or("unknown version"),
            r.libtorch.built_against,
            if r.libtorch.cuda_build {
                "CUDA build"
            } else {
                "CPU-only build"
            }
        ),
        format!(
            "libtorch_cuda   {}{}",
            if r.libtorch_cuda.loaded {
                "loaded"
            } else {
                "not loaded"
            },
            why(&r.libtorch_cuda.error)
        ),
        format!(
            "libcuda         {}{}",
            opt(&r.libcuda.path),
            why(&r.libcuda.error)
        ),
        format!(
            "libnccl         {} {}{}",
            opt(&r.libnccl.path),
            r.libnccl.version.as_deref().unwrap_or(""),
            why(&r.libnccl.error)
        ),
    ];
    for d in &r.devices {
        out.push(format!(
            "device {:<8} {}: {:.1} GiB, {:.1} GiB free{}",
            d.kind,
            d.name,
            d.memory_total as f64 / (1u64 << 30) as f64,
            d.memory_free as f64 / (1u64 << 30) as f64,
            if d.libtorch_sees {
                ""
            } else {
                "; libtorch does not see it"
            }
        ));
    }
    let env = |v: &Option<String>| v.clone().unwrap_or_else(|| "unset".into());
    out.push(format!(
        "settings        CUBLAS_WORKSPACE_CONFIG={} NVIDIA_TF32_OVERRIDE={}",
        env(&r.settings.cublas_workspace_config),
        env(&r.settings.nvidia_tf32_override)
    ));
    for (device, err) in &r.settings.tf32_canary {
        out.push(format!("tf32 canary     {device}: 4096² fp32 matmul vs fp64, rel err {err:.1e} (~1e-6: TF32 off)"));
    }
    out.push(format!(
        "auto            device {}, node-group collective {}",
        r.auto_device, r.collective_auto
    ));
    out.join("\n")
}
