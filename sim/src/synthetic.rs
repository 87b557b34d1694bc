//! Deterministic synthetic unit results of a job's real size, and their in-process fold: what
//! a cluster of simulated workers must reproduce bit for bit.
//!
//! Unit `u`'s edge sums are one of `POOL` precomputed vectors (`u mod POOL`), so simulated
//! workers answer at wire speed instead of generating values. The values mix magnitudes from
//! 2^-30 to 2^10, signs, zeros and an occasional subnormal, so that every path of the exact
//! sum is exercised and an order-dependent reduction would show.
//!
//! Like real devices, simulated workers of two device classes give different values for one
//! unit (`Synthetic::for_class`): a job whose units were computed on two classes would match
//! neither class's expected sums.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use attrib_proto::units::{f32_le_bytes, Accumulator};
use attrib_proto::v1;
use prost::bytes::Bytes;

/// Distinct synthetic vectors per result size.
pub const POOL: u32 = 16;

/// A cheap, good-enough 64-bit mix (splitmix64).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn value(seed: u64, i: u64) -> f32 {
    let h = mix(seed.wrapping_mul(0x1_0000_0001) ^ i);
    match h % 4096 {
        0..=63 => 0.0,
        64 => f32::from_bits((h >> 40) as u32 & 0x007f_ffff), // subnormal
        _ => {
            let m = ((h >> 11) & 0xff_ffff) as f32 / (1u32 << 24) as f32 - 0.5;
            m * 2f32.powi(((h >> 5) % 41) as i32 - 30)
        }
    }
}

/// The synthetic results, built once per size and shared by every simulated worker.
#[derive(Clone, Default)]
pub struct Synthetic {
    pools: Arc<Mutex<HashMap<usize, Arc<Vec<Bytes>>>>>,
    /// Shifts every seed: 0 (the default) for the values all other tests use.
    salt: u64,
}

impl Synthetic {
    /// The values a simulated device of class `class` computes: another class's differ.
    pub fn for_class(class: &str) -> Self {
        Synthetic {
            salt: class.bytes().fold(0x5eed, |h, b| mix(h ^ b as u64)),
            ..Synthetic::default()
        }
    }

    /// Unit `unit`'s `n_values` values (edge sums), as little-endian f32 bytes.
    pub fn values(&self, n_values: usize, unit: u32) -> Bytes {
        let pool = {
            let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
            pools
                .entry(n_values)
                .or_insert_with(|| {
                    Arc::new(
                        (0..POOL as u64)
                            .map(|k| {
                                let seed = k.wrapping_add(self.salt);
                                let v: Vec<f32> =
                                    (0..n_values as u64).map(|i| value(seed, i)).collect();
                                Bytes::from(f32_le_bytes(&v))
                            })
                            .collect(),
                    )
                })
                .clone()
        };
        pool[(unit % POOL) as usize].clone()
    }

    /// Unit `unit`'s result of `n_values` values (an attribution unit's: one per edge) for
    /// `n_prompts` prompts.
    pub fn result(
        &self,
        job: &str,
        unit: u32,
        n_values: usize,
        n_prompts: usize,
    ) -> v1::UnitResult {
        v1::UnitResult {
            job_id: job.to_string(),
            unit,
            values: self.values(n_values, unit),
            clean_logit_diffs: (0..n_prompts as u64)
                .map(|p| value((1000 + unit as u64).wrapping_add(self.salt), p))
                .collect(),
            seconds: 0.0,
            device_class: String::new(),
        }
    }

    /// What the coordinator must end with: every unit (index, prompts) folded in one process.
    pub fn expected(&self, n_edges: usize, units: &[(u32, usize)]) -> Accumulator {
        let mut acc = Accumulator::attribution(n_edges);
        for &(u, n) in units {
            acc.fold_attribution(&self.result("", u, n_edges, n))
                .expect("synthetic values are finite");
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_deterministic_finite_and_varied() {
        let s = Synthetic::default();
        let a = s.result("j", 3, 1000, 16);
        assert_eq!(a, Synthetic::default().result("j", 3, 1000, 16));
        assert_eq!(a.values, s.values(1000, 3 + POOL));
        assert_ne!(a.values, s.values(1000, 4));
        let v: Vec<f32> = a
            .values
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert!(v.iter().all(|x| x.is_finite()));
        assert!(v.iter().any(|x| x.abs() > 1.0) && v.iter().any(|x| x.abs() < 1e-6));
        let b = Synthetic::for_class("b").result("j", 3, 1000, 16);
        assert_eq!(b, Synthetic::for_class("b").result("j", 3, 1000, 16));
        assert_ne!(b.values, a.values, "another class, other values");
        assert_ne!(b.clean_logit_diffs, a.clean_logit_diffs);
    }
}
