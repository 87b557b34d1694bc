//! The exact sum's fast path: an f32 added to a slot's `main` (an i128 of 2^-64 units kept as
//! a low and a high 64-bit plane). It is branch-free so that a loop over slots vectorises; the
//! loop is compiled for AVX-512 and AVX2 as well and the best one the CPU has is picked at
//! run time. The arithmetic is integer, so every variant gives the same bits.

/// Slots per block of the loop: the vector width at which the flags of values left for the
/// slow path are gathered.
const BLOCK: usize = 16;

/// Adds the f32 with bits `bits` to the i128 `hi:lo` if it fits exactly: a normal value in
/// [2^-41, 2^62) (its lowest mantissa bit at 2^-64 or above, shifted below 2^126) whose sum
/// does not overflow. Returns whether the value is accounted for (zeros are); otherwise
/// nothing changed and the value is the slow path's.
#[inline(always)]
pub(super) fn add_lane(lo: &mut u64, hi: &mut i64, bits: u32) -> bool {
    let shift = (((bits >> 23) & 0xff).wrapping_sub(86)) as u64;
    let fits = shift <= 102;
    let m = ((bits & 0x7f_ffff) | 0x80_0000) as u64;
    let s = shift & 127;
    // m · 2^s as two 64-bit halves (m < 2^24, s ≤ 102).
    let q_lo = if s < 64 { m << (s & 63) } else { 0 };
    let q_hi = if s == 0 {
        0
    } else if s < 64 {
        m >> ((64 - s) & 63)
    } else {
        m << ((s - 64) & 63)
    };
    let keep = if fits { u64::MAX } else { 0 };
    let (q_lo, q_hi) = (q_lo & keep, q_hi & keep);
    // Negated when the sign bit is set: two's complement over both halves.
    let sign = ((bits as i32) >> 31) as i64 as u64;
    let n_lo = (q_lo ^ sign).wrapping_sub(sign);
    let n_hi = (q_hi ^ sign).wrapping_add(sign & u64::from(q_lo == 0));
    let (a_lo, a_hi) = (*lo, *hi as u64);
    let s_lo = a_lo.wrapping_add(n_lo);
    let s_hi = a_hi.wrapping_add(n_hi).wrapping_add(u64::from(s_lo < a_lo));
    // Signed overflow: both addends of one sign and a sum of the other.
    let overflow = ((a_hi ^ s_hi) & (n_hi ^ s_hi)) >> 63 == 1;
    let write = fits && !overflow;
    *lo = if write { s_lo } else { a_lo };
    *hi = (if write { s_hi } else { a_hi }) as i64;
    write || bits << 1 == 0
}

/// Adds the little-endian f32 `bytes` to the slots `lo`/`hi` (one value each, same length);
/// pushes the index of every value `add_lane` left to `slow`.
#[inline(always)]
fn add_le_portable(lo: &mut [u64], hi: &mut [i64], bytes: &[u8], slow: &mut Vec<usize>) {
    let n = lo.len();
    assert!(hi.len() == n && bytes.len() == 4 * n, "one value per slot");
    let blocks = n / BLOCK;
    for b in 0..blocks {
        let at = b * BLOCK;
        let lo: &mut [u64; BLOCK] = (&mut lo[at..at + BLOCK]).try_into().expect("a block");
        let hi: &mut [i64; BLOCK] = (&mut hi[at..at + BLOCK]).try_into().expect("a block");
        let mut bits = [0u32; BLOCK];
        for (b, c) in bits
            .iter_mut()
            .zip(bytes[4 * at..4 * (at + BLOCK)].chunks_exact(4))
        {
            *b = u32::from_le_bytes(c.try_into().expect("4 bytes"));
        }
        let mut left = [0u8; BLOCK];
        for i in 0..BLOCK {
            left[i] = u8::from(!add_lane(&mut lo[i], &mut hi[i], bits[i]));
        }
        if left.iter().any(|&l| l != 0) {
            slow.extend((0..BLOCK).filter(|&i| left[i] != 0).map(|i| at + i));
        }
    }
    for i in blocks * BLOCK..n {
        let bits = u32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().expect("4 bytes"));
        if !add_lane(&mut lo[i], &mut hi[i], bits) {
            slow.push(i);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq")]
unsafe fn add_le_avx512(lo: &mut [u64], hi: &mut [i64], bytes: &[u8], slow: &mut Vec<usize>) {
    add_le_portable(lo, hi, bytes, slow)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn add_le_avx2(lo: &mut [u64], hi: &mut [i64], bytes: &[u8], slow: &mut Vec<usize>) {
    add_le_portable(lo, hi, bytes, slow)
}

/// The compilation of the loop this CPU runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    Avx512,
    Avx2,
    Portable,
}

/// The widest kernel this CPU has.
pub fn kernel() -> Kernel {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512dq")
        {
            return Kernel::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return Kernel::Avx2;
        }
    }
    Kernel::Portable
}

/// `add_le_portable` in the widest vectors this CPU has.
pub(super) fn add_le(lo: &mut [u64], hi: &mut [i64], bytes: &[u8], slow: &mut Vec<usize>) {
    match kernel() {
        // SAFETY: `kernel` found the features these functions are compiled for.
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => unsafe { add_le_avx512(lo, hi, bytes, slow) },
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => unsafe { add_le_avx2(lo, hi, bytes, slow) },
        _ => add_le_portable(lo, hi, bytes, slow),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant this CPU runs agrees with the plain i128 arithmetic, lane by lane, on
    /// values across the fast path's edges (ranges, signs, zeros, overflow).
    #[test]
    fn every_variant_is_the_i128_sum() {
        let edges = [
            0.0f32,
            -0.0,
            1.0,
            -1.0,
            2f32.powi(-41),
            2f32.powi(-42),
            -2f32.powi(61) * 1.999,
            2f32.powi(62),
            f32::from_bits(1),
            3.0e-13,
            0.1,
            -123.456,
        ];
        let n = 3 * BLOCK + 5;
        let values: Vec<f32> = (0..n).map(|i| edges[i % edges.len()]).collect();
        let bytes: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
        // Start near overflow in some slots.
        let start = |i: usize| -> i128 {
            match i % 5 {
                0 => i128::MAX - (1i128 << 100),
                1 => i128::MIN + 7,
                _ => (i as i128) << 70,
            }
        };
        let expect = |i: usize| -> (i128, bool) {
            let x = values[i];
            let bits = x.to_bits();
            let e = ((bits >> 23) & 0xff) as i32;
            if x == 0.0 {
                return (start(i), true);
            }
            if !(86..=188).contains(&e) {
                return (start(i), false);
            }
            let m = ((bits & 0x7f_ffff) | 0x80_0000) as i128;
            let q = if x < 0.0 {
                -(m << (e - 86))
            } else {
                m << (e - 86)
            };
            match start(i).checked_add(q) {
                Some(v) => (v, true),
                None => (start(i), false),
            }
        };
        type Variant<'a> = &'a dyn Fn(&mut [u64], &mut [i64], &mut Vec<usize>);
        let run = |f: Variant| {
            let mut lo: Vec<u64> = (0..n).map(|i| start(i) as u64).collect();
            let mut hi: Vec<i64> = (0..n).map(|i| (start(i) >> 64) as i64).collect();
            let mut slow = Vec::new();
            f(&mut lo, &mut hi, &mut slow);
            for i in 0..n {
                let got = ((hi[i] as i128) << 64) | lo[i] as i128;
                let (want, fast) = expect(i);
                assert_eq!(got, want, "slot {i}: {}", values[i]);
                assert_eq!(slow.contains(&i), !fast, "slot {i}: {}", values[i]);
            }
        };
        run(&|lo, hi, slow| add_le_portable(lo, hi, &bytes, slow));
        run(&|lo, hi, slow| add_le(lo, hi, &bytes, slow));
    }
}
