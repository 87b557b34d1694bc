//! The exact, order-free sum every attrib path reduces with: f32 values in, one correctly
//! rounded f64 per slot out. Addition of integers is associative, so the result is the same
//! bits whatever the order, grouping, retries or restarts of the additions.
//!
//! Each slot holds an `i128` fixed-point number with 64 fraction bits (`main`, kept as two
//! 64-bit planes). Every f32 whose lowest set bit is at least 2^-64 and whose magnitude is
//! below 2^62 lands there exactly with one shift and one add (`lanes`, the hot loop). Anything
//! else (tinier bits, larger values, or a slot whose `main` would overflow) goes exactly into
//! a 384-bit integer with 160 fraction bits (`Wide`), kept per slot only where needed. Every
//! finite f32 fits `Wide`, which has room for 2^95 additions of the largest f32, so no finite
//! input is ever rounded or lost; NaN and ±∞ are refused.

use std::collections::BTreeMap;

mod lanes;
mod limbs;
mod wide;

pub use lanes::{kernel, Kernel};
pub use limbs::{BadLimbs, MAIN_LIMBS, WIDE_LIMBS};

use wide::Wide;

/// Fraction bits of `main`: one unit is 2^-64.
const MAIN_FRAC: i32 = 64;

/// A value that no accumulator can hold.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("value {value} at slot {slot} is not finite; the exact sum holds finite values only")]
pub struct NotFinite {
    pub slot: usize,
    pub value: f32,
}

/// Stored bytes that are not an accumulator.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("not an exact-sum encoding: {0}")]
pub struct BadEncoding(pub String);

/// 2^k for k in f64's normal range.
pub(crate) fn pow2(k: i32) -> f64 {
    f64::from_bits(((1023 + k) as u64) << 52)
}

/// `x = ±m · 2^e` with `m < 2^24` an integer: for finite non-zero x.
pub(crate) fn mantissa_exponent(x: f32) -> (u32, i32) {
    let bits = x.to_bits();
    let exp = ((bits >> 23) & 0xff) as i32;
    let frac = bits & 0x7f_ffff;
    if exp == 0 {
        (frac, -149) // subnormal
    } else {
        (frac | 0x80_0000, exp - 150)
    }
}

/// `check_finite` over little-endian bytes, branch-free until a non-finite value is found.
pub fn check_finite_le(offset: usize, bytes: &[u8]) -> Result<(), NotFinite> {
    let any = bytes.chunks_exact(4).fold(false, |any, c| {
        any | (u32::from_le_bytes(c.try_into().expect("4 bytes")) & 0x7f80_0000 == 0x7f80_0000)
    });
    if any {
        check_finite(offset, le_f32s(bytes))
    } else {
        Ok(())
    }
}

/// The f32 values of little-endian bytes.
pub fn le_f32s(bytes: &[u8]) -> impl Iterator<Item = f32> + '_ {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
}

/// The first non-finite value, as the error that slot `offset + i` would give.
pub fn check_finite(offset: usize, values: impl IntoIterator<Item = f32>) -> Result<(), NotFinite> {
    match values.into_iter().enumerate().find(|(_, x)| !x.is_finite()) {
        Some((i, value)) => Err(NotFinite {
            slot: offset + i,
            value,
        }),
        None => Ok(()),
    }
}

/// Exact running sums of f32 values, one per slot.
#[derive(Debug, Clone, PartialEq)]
pub struct ExactSum {
    /// Each slot's `main`, an i128 of 2^-64 units: its low and high 64 bits, in two planes
    /// so that the hot loop works on plain 64-bit lanes.
    lo: Vec<u64>,
    hi: Vec<i64>,
    /// Slots holding values `main` cannot: their sum is `main + wide`.
    wide: BTreeMap<u32, Wide>,
}

impl ExactSum {
    pub fn new(slots: usize) -> Self {
        ExactSum {
            lo: vec![0; slots],
            hi: vec![0; slots],
            wide: BTreeMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.lo.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lo.is_empty()
    }

    fn main(&self, slot: usize) -> i128 {
        ((self.hi[slot] as i128) << 64) | self.lo[slot] as i128
    }

    fn set_main(&mut self, slot: usize, v: i128) {
        self.lo[slot] = v as u64;
        self.hi[slot] = (v >> 64) as i64;
    }

    /// Adds `x` to slot `slot`.
    #[inline]
    pub fn add(&mut self, slot: usize, x: f32) -> Result<(), NotFinite> {
        if lanes::add_lane(&mut self.lo[slot], &mut self.hi[slot], x.to_bits()) {
            return Ok(());
        }
        self.add_slow(slot, x)
    }

    #[cold]
    fn add_slow(&mut self, slot: usize, x: f32) -> Result<(), NotFinite> {
        if !x.is_finite() {
            return Err(NotFinite { slot, value: x });
        }
        if x == 0.0 {
            return Ok(());
        }
        let (m, e) = mantissa_exponent(x);
        let tz = m.trailing_zeros() as i32;
        let (m, e) = (m >> tz, e + tz);
        if (-MAIN_FRAC..=38).contains(&e) {
            let q = (m as i128) << (e + MAIN_FRAC);
            let q = if x < 0.0 { -q } else { q };
            if let Some(v) = self.main(slot).checked_add(q) {
                self.set_main(slot, v);
                return Ok(());
            }
        }
        self.wide.entry(slot as u32).or_default().add_f32(x);
        Ok(())
    }

    /// Adds the little-endian f32 `bytes` (value i to slot `offset + i`), as they travel on
    /// the wire. All or nothing: a
    /// non-finite value is found before any slot changes. This is the coordinator's hot loop:
    /// the common values take the lanes in one pass, the rest `add_slow` after it.
    pub fn add_all_le(&mut self, offset: usize, bytes: &[u8]) -> Result<(), NotFinite> {
        check_finite_le(offset, bytes)?;
        let range = offset..offset + bytes.len() / 4;
        let mut slow = Vec::new();
        lanes::add_le(
            &mut self.lo[range.clone()],
            &mut self.hi[range],
            bytes,
            &mut slow,
        );
        for i in slow {
            let c = &bytes[4 * i..4 * i + 4];
            let x = f32::from_le_bytes(c.try_into().expect("4 bytes"));
            self.add_slow(offset + i, x)?;
        }
        Ok(())
    }

    /// Adds another accumulator of the same length, slot by slot.
    pub fn absorb(&mut self, other: &ExactSum) {
        assert_eq!(self.len(), other.len(), "accumulators of one length");
        for slot in 0..self.len() {
            let b = other.main(slot);
            match self.main(slot).checked_add(b) {
                Some(v) => self.set_main(slot, v),
                None => self.wide.entry(slot as u32).or_default().add_main(b),
            }
        }
        for (slot, w) in &other.wide {
            self.wide.entry(*slot).or_default().add(w);
        }
    }

    /// Slot `slot`'s exact sum, rounded once to the nearest f64.
    pub fn value(&self, slot: usize) -> f64 {
        match self.wide.get(&(slot as u32)) {
            None => self.main(slot) as f64 * pow2(-MAIN_FRAC),
            Some(w) => {
                let mut w = *w;
                w.add_main(self.main(slot));
                w.to_f64()
            }
        }
    }

    /// Every slot's value.
    pub fn values(&self) -> Vec<f64> {
        (0..self.len()).map(|i| self.value(i)).collect()
    }

    /// Bytes that `decode` turns back into this accumulator: the slot count, every slot's
    /// `main` (16 bytes, little-endian), then the wide slots (index and six limbs).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + 16 * self.len() + 52 * self.wide.len());
        out.extend_from_slice(&(self.len() as u64).to_le_bytes());
        for slot in 0..self.len() {
            out.extend_from_slice(&self.main(slot).to_le_bytes());
        }
        out.extend_from_slice(&(self.wide.len() as u64).to_le_bytes());
        for (slot, w) in &self.wide {
            out.extend_from_slice(&slot.to_le_bytes());
            for l in w.0 {
                out.extend_from_slice(&l.to_le_bytes());
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, BadEncoding> {
        let mut r = Reader(bytes);
        let n = r.u64()? as usize;
        if n > bytes.len() / 16 {
            return Err(BadEncoding(format!("{n} slots in {} bytes", bytes.len())));
        }
        let mut sums = ExactSum::new(n);
        for slot in 0..n {
            sums.set_main(slot, i128::from_le_bytes(r.take::<16>()?));
        }
        let n_wide = r.u64()? as usize;
        for _ in 0..n_wide {
            let slot = u32::from_le_bytes(r.take::<4>()?);
            if slot as usize >= n {
                return Err(BadEncoding(format!("wide slot {slot} of {n}")));
            }
            let mut w = Wide::default();
            for l in &mut w.0 {
                *l = r.u64()?;
            }
            sums.wide.insert(slot, w);
        }
        if !r.0.is_empty() {
            return Err(BadEncoding(format!("{} bytes left over", r.0.len())));
        }
        Ok(sums)
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], BadEncoding> {
        if self.0.len() < N {
            return Err(BadEncoding("truncated".into()));
        }
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        Ok(head.try_into().expect("N bytes"))
    }

    fn u64(&mut self) -> Result<u64, BadEncoding> {
        self.take::<8>().map(u64::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shewchuk's exact summation with CPython's correctly rounded finish (`math.fsum`): an
    /// independent oracle for the exact sum of f32 values, rounded once.
    fn fsum(values: &[f32]) -> f64 {
        let mut partials: Vec<f64> = Vec::new();
        for &v in values {
            let mut x = v as f64;
            let mut i = 0;
            for j in 0..partials.len() {
                let mut y = partials[j];
                if x.abs() < y.abs() {
                    std::mem::swap(&mut x, &mut y);
                }
                let hi = x + y;
                let lo = y - (hi - x);
                if lo != 0.0 {
                    partials[i] = lo;
                    i += 1;
                }
                x = hi;
            }
            partials.truncate(i);
            partials.push(x);
        }
        let mut n = partials.len();
        if n == 0 {
            return 0.0;
        }
        n -= 1;
        let mut hi = partials[n];
        let mut lo = 0.0;
        while n > 0 {
            let x = hi;
            n -= 1;
            let y = partials[n];
            hi = x + y;
            let yr = hi - x;
            lo = y - yr;
            if lo != 0.0 {
                break;
            }
        }
        if n > 0 && ((lo < 0.0 && partials[n - 1] < 0.0) || (lo > 0.0 && partials[n - 1] > 0.0)) {
            let y = lo * 2.0;
            let x = hi + y;
            if y == x - hi {
                hi = x;
            }
        }
        hi
    }

    /// Deterministic f32s over every range the accumulator treats differently.
    fn awkward(seed: u64, n: usize) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        (0..n)
            .map(|_| {
                let r = next();
                match r % 7 {
                    // Any finite f32 bit pattern, subnormals and huge values included.
                    0 => {
                        let x = f32::from_bits((r >> 32) as u32);
                        if x.is_finite() {
                            x
                        } else {
                            1.5
                        }
                    }
                    1 => f32::from_bits((r >> 40) as u32 & 0x807f_ffff), // subnormal
                    2 => f32::MAX * if r & 8 == 0 { 1.0 } else { -1.0 },
                    3 => 1e-30,
                    _ => ((r >> 11) as f64 / (1u64 << 53) as f64 - 0.5) as f32 * 100.0,
                }
            })
            .collect()
    }

    fn sum_of(values: &[f32]) -> f64 {
        let mut a = ExactSum::new(1);
        for &x in values {
            a.add(0, x).unwrap();
        }
        a.value(0)
    }

    #[test]
    fn equals_the_correctly_rounded_exact_sum() {
        for seed in 0..200 {
            let v = awkward(seed, 1 + seed as usize % 60);
            assert_eq!(
                sum_of(&v).to_bits(),
                fsum(&v).to_bits(),
                "seed {seed}: {v:?}"
            );
        }
        // Cancellation down to the smallest subnormal, and a tie that rounds to even.
        let tiny = f32::from_bits(1);
        assert_eq!(sum_of(&[1e30, tiny, -1e30]), tiny as f64);
        let v = [
            1.0,
            f32::from_bits(0x3380_0000),
            f32::from_bits(0x3380_0000),
        ]; // 1 + 2^-24 + 2^-24
        assert_eq!(sum_of(&v), 1.0 + 2f64.powi(-23));
        let half_ulp = [(1u64 << 53) as f32, 1.0, f32::from_bits(1)];
        assert_eq!(sum_of(&half_ulp), fsum(&half_ulp)); // 2^53 + 1 + tiny rounds up
        assert_eq!(sum_of(&[]), 0.0);
    }

    #[test]
    fn any_order_and_any_grouping_give_the_same_bits() {
        let v = awkward(7, 3000);
        let mut forward = ExactSum::new(3);
        for (i, &x) in v.iter().enumerate() {
            forward.add(i % 3, x).unwrap();
        }
        let mut backward = ExactSum::new(3);
        for (i, &x) in v.iter().enumerate().rev() {
            backward.add(i % 3, x).unwrap();
        }
        // Pre-summed in groups of 250, then absorbed in reverse.
        let mut grouped = ExactSum::new(3);
        let chunks: Vec<ExactSum> = v
            .chunks(250)
            .enumerate()
            .map(|(c, chunk)| {
                let mut part = ExactSum::new(3);
                for (j, &x) in chunk.iter().enumerate() {
                    part.add((c * 250 + j) % 3, x).unwrap();
                }
                part
            })
            .collect();
        for part in chunks.iter().rev() {
            grouped.absorb(part);
        }
        let bits = |a: &ExactSum| a.values().iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&forward), bits(&backward));
        assert_eq!(bits(&forward), bits(&grouped));
        for slot in 0..3 {
            let mine: Vec<f32> = v.iter().skip(slot).step_by(3).copied().collect();
            assert_eq!(forward.value(slot), fsum(&mine));
        }
    }

    #[test]
    fn main_overflow_moves_to_wide_without_loss() {
        let mut a = ExactSum::new(1);
        let big = 2f32.powi(61);
        for _ in 0..10 {
            a.add(0, big).unwrap(); // 10 · 2^61 exceeds i128 at 2^-64 units
        }
        a.add(0, -big).unwrap();
        assert_eq!(a.value(0), 9.0 * 2f64.powi(61));
        let mut b = ExactSum::new(1);
        b.absorb(&a);
        b.absorb(&a);
        assert_eq!(b.value(0), 18.0 * 2f64.powi(61));
    }

    #[test]
    fn non_finite_values_are_refused_with_their_slot() {
        let mut a = ExactSum::new(4);
        a.add(1, 2.0).unwrap();
        let e = a.add(3, f32::INFINITY).unwrap_err();
        assert_eq!(e.slot, 3);
        assert!(e.to_string().contains("not finite"), "{e}");
        assert!(a.add(0, f32::NAN).is_err());
        assert_eq!(a.values(), vec![0.0, 2.0, 0.0, 0.0]);
    }

    #[test]
    fn encoding_round_trips_and_rejects_garbage() {
        let mut a = ExactSum::new(5);
        for (i, x) in awkward(3, 5).into_iter().chain(awkward(4, 5)).enumerate() {
            a.add(i % 5, x).unwrap();
        }
        let back = ExactSum::decode(&a.encode()).unwrap();
        assert_eq!(back, a);
        assert!(ExactSum::decode(&a.encode()[..20]).is_err());
        assert!(ExactSum::decode(&[0xff; 8]).is_err());
        let mut le = Vec::new();
        for x in [1.5f32, -2.25] {
            le.extend_from_slice(&x.to_le_bytes());
        }
        let mut b = ExactSum::new(3);
        b.add_all_le(1, &le).unwrap();
        assert_eq!(b.values(), vec![0.0, 1.5, -2.25]);
    }
}
