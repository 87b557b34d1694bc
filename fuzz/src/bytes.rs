//! Encoded messages, damaged.

use proptest::collection::vec;
use proptest::prelude::*;

/// Non-empty `encoded` bytes damaged: flipped bits (half the time in the low seven bits only,
/// which keeps text valid UTF-8 so that more of it decodes), cut short, or with bytes
/// inserted (3 : 2 : 2).
pub fn damaged(encoded: impl Strategy<Value = Vec<u8>> + Clone) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => (encoded.clone(), vec((any::<usize>(), any::<u8>()), 1..8), any::<bool>())
            .prop_map(|(mut b, flips, ascii)| {
                for (i, x) in flips {
                    let n = b.len();
                    b[i % n] ^= if ascii { (x & 0x7f).max(1) } else { x.max(1) };
                }
                b
            }),
        2 => (encoded.clone(), any::<usize>()).prop_map(|(mut b, cut)| {
            let n = b.len();
            b.truncate(cut % n);
            b
        }),
        2 => (encoded, any::<usize>(), vec(any::<u8>(), 1..16)).prop_map(|(mut b, at, ins)| {
            let i = at % (b.len() + 1);
            b.splice(i..i, ins);
            b
        }),
    ]
}
