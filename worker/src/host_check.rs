//! `attrib-worker host-check`: the two machine rates that bound attribution speed on CPU,
//! measured the way the engine meets them (libtorch GEMMs, first touch of fresh memory).

use std::time::Instant;

use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HostRates {
    /// fp32 GEMM rate at GPT-2-small's MLP shape for one 16-prompt batch (median of 5).
    pub gemm_gflops: f64,
    /// Microseconds per 4 KiB page to zero fresh memory (256 MiB, first touch).
    pub fresh_page_us: f64,
    pub threads: i32,
}

pub fn measure_host(device: Device) -> HostRates {
    crate::host_tuning::tune_host();
    let _guard = tch::no_grad_guard();
    let a = Tensor::randn([240, 768], (Kind::Float, device)); // 16 prompts × 15 tokens
    let b = Tensor::randn([768, 3072], (Kind::Float, device));
    let _ = a.matmul(&b); // warm-up
    crate::device::synchronize(device);
    let mut rates: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..10 {
                let _ = a.matmul(&b);
            }
            // A GPU queues the matmuls: the clock is read once they are done.
            crate::device::synchronize(device);
            let secs = t.elapsed().as_secs_f64();
            10.0 * 2.0 * 240.0 * 768.0 * 3072.0 / secs / 1e9
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    let bytes = 256usize << 20;
    let t = Instant::now();
    let fresh = Tensor::zeros([(bytes / 4) as i64], (Kind::Float, device));
    let fresh_page_us = t.elapsed().as_secs_f64() * 1e6 / (bytes / 4096) as f64;
    drop(fresh);
    HostRates {
        gemm_gflops: rates[2],
        fresh_page_us,
        threads: tch::get_num_threads(),
    }
}
