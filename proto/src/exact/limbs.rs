//! `ExactSum` as int64 limbs, for an integer all-reduce (NCCL's `ncclInt64` sum, or the host
//! backend's): every member writes its sums as limbs, the collective adds them limb by limb,
//! and `from_limbs` carries the totals back into one accumulator. Integer addition is exact
//! and order-free, so the group's sum is the same bits as folding every unit in one place.
//!
//! Each limb holds 32 bits of a two's-complement number: the lower limbs are in [0, 2^32),
//! the top one is signed in [-2^31, 2^31). A sum over G members then stays below
//! G · 2^32 in magnitude, which an i64 holds for any G up to 2^31: room for every carry.
//!
//! Two vectors, so that the common case stays small:
//! - `main`: per slot the four limbs of its i128 `main`, then the count of slots that hold
//!   a `Wide` part (summed, it tells every member whether a second collective is needed);
//! - `wide`: only when some member has one, per slot the twelve limbs of its 384-bit `Wide`.

use super::wide::{Wide, LIMBS as WIDE_LIMBS_64, WIDE_FRAC};
use super::{ExactSum, MAIN_FRAC};

/// 32-bit limbs per slot of `main` (i128) and of `Wide` (384 bits).
pub const MAIN_LIMBS: usize = 4;
pub const WIDE_LIMBS: usize = 2 * WIDE_LIMBS_64;

/// Limbs that do not come from summing `to_limbs` of accumulators of one length.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("not the limbs of {slots} slots: {reason}")]
pub struct BadLimbs {
    pub slots: usize,
    pub reason: String,
}

impl ExactSum {
    /// Each slot's `main` as four limbs, then how many slots have a `Wide` part.
    pub fn main_limbs(&self) -> Vec<i64> {
        let mut out = Vec::with_capacity(MAIN_LIMBS * self.len() + 1);
        for slot in 0..self.len() {
            out.extend(split_i128(self.main(slot)));
        }
        out.push(self.wide.len() as i64);
        out
    }

    /// Every slot's `Wide` part (zero where it has none) as twelve limbs.
    pub fn wide_limbs(&self) -> Vec<i64> {
        let mut out = vec![0i64; WIDE_LIMBS * self.len()];
        for (&slot, w) in &self.wide {
            let limbs = &mut out[WIDE_LIMBS * slot as usize..][..WIDE_LIMBS];
            for (i, l) in limbs.iter_mut().enumerate() {
                let word = w.0[i / 2] >> (32 * (i % 2));
                *l = if i == WIDE_LIMBS - 1 {
                    (word as u32) as i32 as i64 // the sign
                } else {
                    (word as u32) as i64
                };
            }
        }
        out
    }

    /// Whether summed `main_limbs` say that some member had a `Wide` part (then every member
    /// joins a second collective over `wide_limbs`).
    pub fn limbs_need_wide(main: &[i64]) -> bool {
        main.last().is_some_and(|&n| n != 0)
    }

    /// The accumulator of `slots` slots whose summed limbs are `main` and, when
    /// `limbs_need_wide(main)`, `wide`.
    pub fn from_limbs(slots: usize, main: &[i64], wide: Option<&[i64]>) -> Result<Self, BadLimbs> {
        let bad = |reason: String| BadLimbs { slots, reason };
        if main.len() != MAIN_LIMBS * slots + 1 {
            return Err(bad(format!("{} main limbs", main.len())));
        }
        let mut out = ExactSum::new(slots);
        for (slot, limbs) in main.chunks_exact(MAIN_LIMBS).enumerate() {
            match join_i128(limbs) {
                Some(v) => out.set_main(slot, v),
                None => {
                    // Members' mains together overflow an i128: the whole slot goes wide.
                    let w = out.wide.entry(slot as u32).or_default();
                    for (i, &l) in limbs.iter().enumerate() {
                        w.add_limb(l, 32 * i as u32 + (WIDE_FRAC - MAIN_FRAC) as u32);
                    }
                }
            }
        }
        if !Self::limbs_need_wide(main) {
            return Ok(out);
        }
        let wide = wide.ok_or_else(|| bad("wide parts announced but not given".into()))?;
        if wide.len() != WIDE_LIMBS * slots {
            return Err(bad(format!("{} wide limbs", wide.len())));
        }
        for (slot, limbs) in wide.chunks_exact(WIDE_LIMBS).enumerate() {
            if limbs.iter().all(|&l| l == 0) {
                continue;
            }
            let w = out.wide.entry(slot as u32).or_default();
            for (i, &l) in limbs.iter().enumerate() {
                w.add_limb(l, 32 * i as u32);
            }
        }
        Ok(out)
    }
}

/// `v` as limbs: three unsigned 32-bit ones and a signed top one.
fn split_i128(v: i128) -> [i64; MAIN_LIMBS] {
    [
        (v as u32) as i64,
        ((v >> 32) as u32) as i64,
        ((v >> 64) as u32) as i64,
        (v >> 96) as i64, // in [-2^31, 2^31)
    ]
}

/// Σ limb_i · 2^(32 i), or `None` when it does not fit an i128.
fn join_i128(limbs: &[i64]) -> Option<i128> {
    limbs.iter().enumerate().try_fold(0i128, |acc, (i, &l)| {
        (l as i128)
            .checked_mul(1i128 << (32 * i))
            .and_then(|x| acc.checked_add(x))
    })
}

impl Wide {
    /// Adds `l · 2^bit` (in 2^-160 units), `l` of either sign.
    fn add_limb(&mut self, l: i64, bit: u32) {
        if l != 0 {
            self.add_mag(l.unsigned_abs() as u128, bit, l < 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Members' accumulators over every range the sum treats differently.
    fn members(seed: u64, n_members: usize, slots: usize) -> Vec<ExactSum> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        (0..n_members)
            .map(|_| {
                let mut a = ExactSum::new(slots);
                for _ in 0..40 {
                    let r = next();
                    let x = match r % 6 {
                        0 => f32::from_bits((r >> 32) as u32),
                        1 => f32::from_bits((r >> 40) as u32 & 0x807f_ffff), // subnormal
                        2 => f32::MAX * if r & 8 == 0 { 1.0 } else { -1.0 },
                        3 => 2f32.powi(61),
                        _ => ((r >> 11) as f64 / (1u64 << 53) as f64 - 0.5) as f32,
                    };
                    if x.is_finite() {
                        a.add((r >> 20) as usize % slots, x).unwrap();
                    }
                }
                a
            })
            .collect()
    }

    fn sum_limbs(vs: impl Iterator<Item = Vec<i64>>) -> Vec<i64> {
        vs.reduce(|a, b| a.iter().zip(&b).map(|(x, y)| x + y).collect())
            .unwrap()
    }

    fn bits(a: &ExactSum) -> Vec<u64> {
        a.values().iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn summed_limbs_give_the_bits_of_absorbing_every_member() {
        for seed in 0..60 {
            let ms = members(seed, 1 + seed as usize % 5, 7);
            let mut folded = ExactSum::new(7);
            for m in &ms {
                folded.absorb(m);
            }
            let main = sum_limbs(ms.iter().map(ExactSum::main_limbs));
            let wide = ExactSum::limbs_need_wide(&main)
                .then(|| sum_limbs(ms.iter().map(ExactSum::wide_limbs)));
            let back = ExactSum::from_limbs(7, &main, wide.as_deref()).unwrap();
            assert_eq!(bits(&back), bits(&folded), "seed {seed}");
        }
    }

    #[test]
    fn mains_that_overflow_together_go_wide_and_plain_sums_need_no_second_collective() {
        // Each member's main holds 3 · 2^61 (3 · 2^125 units of 2^-64): four overflow an i128.
        let mut big = ExactSum::new(1);
        for _ in 0..3 {
            big.add(0, 2f32.powi(61)).unwrap();
        }
        let mut folded = ExactSum::new(1);
        let main = sum_limbs((0..4).map(|_| big.main_limbs()));
        assert!(!ExactSum::limbs_need_wide(&main));
        for _ in 0..4 {
            folded.absorb(&big);
        }
        let back = ExactSum::from_limbs(1, &main, None).unwrap();
        assert_eq!(back.value(0), 12.0 * 2f64.powi(61));
        assert_eq!(bits(&back), bits(&folded));
        // Ordinary values: the limb vector is 4 per slot plus the wide count, nothing else.
        let mut plain = ExactSum::new(3);
        plain.add(1, -1.25).unwrap();
        let m = plain.main_limbs();
        assert_eq!(m.len(), 13);
        assert!(!ExactSum::limbs_need_wide(&m));
        assert_eq!(ExactSum::from_limbs(3, &m, None).unwrap(), plain);
    }

    #[test]
    fn limbs_of_the_wrong_length_are_refused() {
        let a = members(1, 1, 3).remove(0);
        assert!(ExactSum::from_limbs(4, &a.main_limbs(), None).is_err());
        let mut w = ExactSum::new(2);
        w.add(0, f32::MAX).unwrap();
        let main = w.main_limbs();
        assert!(ExactSum::limbs_need_wide(&main));
        let e = ExactSum::from_limbs(2, &main, None).unwrap_err();
        assert!(e.to_string().contains("not given"), "{e}");
        assert!(ExactSum::from_limbs(2, &main, Some(&[0; 5])).is_err());
    }
}
