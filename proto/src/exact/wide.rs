//! `Wide`: a two's-complement 384-bit integer of 2^-160 units, where a slot's sum goes when its
//! `main` cannot hold a value exactly. Every finite f32 fits, with room for 2^95 additions.

use super::{mantissa_exponent, pow2, MAIN_FRAC};

/// Fraction bits of `Wide`: one unit is 2^-160, below the smallest f32 (2^-149).
pub(super) const WIDE_FRAC: i32 = 160;
pub(super) const LIMBS: usize = 6;

/// A two's-complement 384-bit integer counting units of 2^-160.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Wide(pub(super) [u64; LIMBS]);

impl Wide {
    /// Adds (or subtracts) `mag · 2^bit`; `mag · 2^(bit mod 64)` spans at most three limbs.
    pub(super) fn add_mag(&mut self, mag: u128, bit: u32, negative: bool) {
        let (first, shift) = ((bit / 64) as usize, bit % 64);
        let lo = mag << shift;
        let hi = if shift == 0 { 0 } else { mag >> (128 - shift) };
        let parts = [lo as u64, (lo >> 64) as u64, hi as u64];
        let mut carry = false;
        for i in first..LIMBS {
            let part = parts.get(i - first).copied().unwrap_or(0);
            if i - first >= parts.len() && !carry {
                break;
            }
            let limb = &mut self.0[i];
            let (v, c1, c2);
            if negative {
                (v, c1) = limb.overflowing_sub(part);
                let (w, b) = v.overflowing_sub(carry as u64);
                *limb = w;
                c2 = b;
            } else {
                (v, c1) = limb.overflowing_add(part);
                let (w, b) = v.overflowing_add(carry as u64);
                *limb = w;
                c2 = b;
            }
            carry = c1 || c2;
        }
    }

    pub(super) fn add_f32(&mut self, x: f32) {
        let (m, e) = mantissa_exponent(x);
        self.add_mag(m as u128, (e + WIDE_FRAC) as u32, x < 0.0);
    }

    pub(super) fn add_main(&mut self, v: i128) {
        self.add_mag(v.unsigned_abs(), (WIDE_FRAC - MAIN_FRAC) as u32, v < 0);
    }

    pub(super) fn add(&mut self, o: &Wide) {
        let mut carry = false;
        for (a, b) in self.0.iter_mut().zip(o.0) {
            let (v, c1) = a.overflowing_add(b);
            let (v, c2) = v.overflowing_add(carry as u64);
            *a = v;
            carry = c1 || c2;
        }
    }

    fn is_negative(&self) -> bool {
        self.0[LIMBS - 1] >> 63 == 1
    }

    fn negated(&self) -> Wide {
        let mut out = Wide(self.0.map(|l| !l));
        out.add_mag(1, 0, false);
        out
    }

    /// The nearest f64 (ties to even).
    pub(super) fn to_f64(self) -> f64 {
        let negative = self.is_negative();
        let mag = if negative { self.negated() } else { self };
        let Some(top) = (0..LIMBS).rev().find(|&i| mag.0[i] != 0) else {
            return 0.0;
        };
        let h = top as i32 * 64 + 63 - mag.0[top].leading_zeros() as i32; // highest set bit
                                                                          // The 64 bits below and at `h`, with every lower bit folded into the last one (sticky),
                                                                          // so that the u64 -> f64 conversion rounds exactly as the full number would.
        let low = (h - 63).max(0);
        let mut window = 0u64;
        let mut sticky = false;
        for b in 0..LIMBS as i32 * 64 {
            let set = mag.0[(b / 64) as usize] >> (b % 64) & 1 == 1;
            if !set {
                continue;
            }
            if b < low {
                sticky = true;
            } else {
                window |= 1 << (b - low);
            }
        }
        let rounded = (window | sticky as u64) as f64 * pow2(low - WIDE_FRAC);
        if negative {
            -rounded
        } else {
            rounded
        }
    }
}
