//! `attrib_proto::memory`'s unit estimate against the peak memory units really take on CPU,
//! as `attrib-worker attribute` reports both. The coordinator refuses jobs and the worker
//! refuses units on this estimate, so it must never be under the measured peak (a worker
//! would run out of memory), and at most 2.5x over it (else jobs that fit are refused). Each
//! case runs in a fresh process: memory an earlier case freed but the allocator kept would
//! hide a later unit's growth.

mod common;

use std::process::Command;

use attrib_worker::init_model::{write_random_model, InitOptions};
use common::*;

/// (measured, estimated) MiB from the "unit memory" line, when the platform can measure.
fn unit_memory(stderr: &str) -> Option<(f64, f64)> {
    let line = stderr.lines().find(|l| l.contains("unit memory:"))?;
    let mib: Vec<f64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    Some((mib[0], mib[1]))
}

#[test]
fn unit_memory_estimates_cover_measured_peaks_within_two_and_a_half_times() {
    let dir = tempfile::tempdir().unwrap();
    let wider = dir.path().join("4l8h256");
    let opts = InitOptions {
        n_layers: 4,
        n_heads: 8,
        d_model: 256,
        n_ctx: 128,
        seed: 1,
    };
    write_random_model(&opts, &wider).unwrap();
    let tiny = tiny_dir();
    let cases: [(&std::path::Path, &[&str]); 6] = [
        (&tiny, &["--batch-size", "16"]),
        (&wider, &["--batch-size", "16"]),
        (&wider, &["--batch-size", "16", "--batches-per-unit", "4"]),
        (
            &wider,
            &["--batch-size", "8", "--integrated-grad-samples", "3"],
        ),
        (&wider, &["--batch-size", "16", "--token-positions"]),
        (&wider, &["--batch-size", "32", "--grad-function", "prob"]),
    ];
    for (model, args) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_attrib-worker"))
            .arg("attribute")
            .arg("--model")
            .arg(model)
            .arg("--dataset")
            .arg(ioi_vanilla())
            .arg("--out")
            .arg(dir.path().join("scores.json"))
            .args(["--device", "cpu", "--train-size", "64"])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let Some((measured, estimate)) = unit_memory(&stderr) else {
            eprintln!("no /proc/self/clear_refs here: peaks cannot be measured");
            return;
        };
        let case = format!(
            "{} {}: measured {measured:.1} MiB, estimated {estimate:.1} MiB",
            model.file_name().unwrap().to_string_lossy(),
            args.join(" ")
        );
        eprintln!("{case}");
        assert!(estimate >= measured, "under the peak: {case}");
        assert!(estimate <= 2.5 * measured, "far over the peak: {case}");
    }
}
