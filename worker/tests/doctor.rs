//! `attrib-worker doctor --json` on this (GPU-less) machine: the libtorch it runs against and
//! its version, NCCL found in that torch's nvidia wheel (scripts/setup.sh installs
//! nvidia-nccl-cu13) and versioned through ncclGetVersion, and the CPU listed. Also
//! `memory-check`, which `serve`'s declared memory is tried with on a GPU node.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn worker() -> Command {
    Command::new(env!("CARGO_BIN_EXE_attrib-worker"))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn doctor(env: &[(&str, &str)]) -> Value {
    let out = worker()
        .args(["doctor", "--json"])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn doctor_names_the_libtorch_and_the_wheels_nccl() {
    let d = doctor(&[]);
    let torch_lib = repo().join(".libtorch/lib").canonicalize().unwrap();
    let lib = PathBuf::from(d["libtorch"]["path"].as_str().unwrap());
    assert_eq!(lib.canonicalize().unwrap(), torch_lib, "{d}");
    assert_eq!(
        d["libtorch"]["version"], d["libtorch"]["built_against"],
        "{d}"
    );
    assert_eq!(
        d["libtorch"]["cuda_build"], true,
        "the PyPI wheel is the CUDA build: {d}"
    );
    // The CPU venv lacks cuBLAS & co., so libtorch_cuda is there but cannot load: said why.
    let cuda = &d["libtorch_cuda"];
    assert!(
        cuda["path"].as_str().unwrap().ends_with("libtorch_cuda.so"),
        "{d}"
    );
    assert!(
        cuda["loaded"].as_bool().unwrap() || cuda["error"].is_string(),
        "{d}"
    );
    // NCCL: the torch wheel's own copy, first in the search order, and its version.
    let nccl = &d["libnccl"];
    let path = PathBuf::from(
        nccl["path"]
            .as_str()
            .unwrap_or_else(|| panic!("no NCCL: {d}")),
    );
    assert_eq!(
        path.canonicalize().unwrap(),
        torch_lib
            .join("../../nvidia/nccl/lib/libnccl.so.2")
            .canonicalize()
            .unwrap()
    );
    let version = nccl["version"].as_str().unwrap();
    assert!(version.starts_with("2."), "{version}");
    // No driver here: libcuda says why, and the CPU is the one device, which auto picks.
    assert!(d["libcuda"]["error"].is_string(), "{d}");
    assert_eq!(d["devices"][0]["kind"], "cpu");
    assert!(d["devices"][0]["memory_total"].as_u64().unwrap() > 0);
    assert_eq!(d["auto_device"], "cpu");
    assert_eq!(d["collective_auto"], "host");
    assert_eq!(d["settings"]["nvidia_tf32_override"], "0");
}

/// `memory-check` on the CPU of the golden tiny model, declaring `mib` MiB.
fn memory_check(mib: &str) -> std::process::Output {
    worker()
        .args([
            "memory-check",
            "--device",
            "cpu",
            "--memory-mib",
            mib,
            "--model",
        ])
        .arg(repo().join("tests/fixtures/golden-tiny"))
        .arg("--dataset")
        .arg(repo().join("datasets/ioi/ioi_vanilla_template_prompts.json"))
        .output()
        .unwrap()
}

#[test]
fn memory_check_fills_the_declared_memory_then_runs_a_collective() {
    let out = memory_check("300");
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}{err}");
    // The unit's estimate is the largest that fits 90% of the 300 MiB declared.
    let pct: f64 = text
        .split("% of it")
        .next()
        .and_then(|s| s.rsplit('(').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!((60.0..=90.0).contains(&pct), "{text}");
    assert!(
        text.contains("then collective-check: Host on cpu"),
        "{text}"
    );
    let refused = memory_check("1");
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("not even one batch fits"), "{err}");
}
