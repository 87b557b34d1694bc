//! Text for names, labels, prompts and messages, and where to cut it.

use proptest::prelude::*;

/// One of `samples`, any string, or `long` repeated up to `max_repeats` times (3 : 2 : 1).
pub fn text(
    samples: &'static [&'static str],
    long: &'static str,
    max_repeats: usize,
) -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        3 => prop::sample::select(samples).prop_map(str::to_string),
        2 => any::<String>(),
        1 => (1..max_repeats).prop_map(move |n| long.repeat(n)),
    ]
}

/// The byte index `per_mille` thousandths into `s`, moved back to a char boundary.
pub fn char_index(s: &str, per_mille: usize) -> usize {
    let mut i = s.len() * per_mille.min(1000) / 1000;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}
