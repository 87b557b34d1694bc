//! The real IOI prompt files of the repository, as sources of valid prompt-file text.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::LazyLock;

use proptest::prelude::*;
use serde_json::Value;

use crate::text::char_index;

/// The workspace root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// IOI vanilla (15 tokens wide with BOS) and an ABBA template (wider), in `datasets/ioi`.
pub const IOI_FILES: [&str; 2] = [
    "ioi_vanilla_template_prompts.json",
    "ioi_ABBA_template_0_prompts.json",
];

/// The path of `IOI_FILES[which]`.
pub fn ioi_path(which: usize) -> PathBuf {
    repo().join("datasets/ioi").join(IOI_FILES[which])
}

/// Each of `IOI_FILES` as its top-level keys without `prompts`, and its prompts.
static SOURCES: LazyLock<Vec<(Value, Vec<Value>)>> = LazyLock::new(|| {
    (0..IOI_FILES.len())
        .map(|which| {
            let p = ioi_path(which);
            let text = std::fs::read_to_string(&p).expect("IOI file");
            let mut v: Value = serde_json::from_str(&text).expect("JSON");
            match v["prompts"].take() {
                Value::Array(prompts) => (v, prompts),
                _ => panic!("no prompts in {}", p.display()),
            }
        })
        .collect()
});

/// The first `n` prompts of `IOI_FILES[which]`, with its labels, as prompt-file text.
pub fn small_file(which: usize, n: usize) -> String {
    let (top, prompts) = &SOURCES[which];
    let mut v = top.clone();
    v["prompts"] = Value::Array(prompts[..n.min(prompts.len())].to_vec());
    v.to_string()
}

/// `small_file` of either IOI file, with a number of prompts in `n`.
pub fn real_file(n: Range<usize>) -> impl Strategy<Value = String> + Clone {
    (0..IOI_FILES.len(), n).prop_map(|(which, n)| small_file(which, n))
}

/// `real_file`, cut anywhere (an unclosed JSON object).
pub fn cut_file(n: Range<usize>) -> impl Strategy<Value = String> {
    (real_file(n), 0usize..1000).prop_map(|(mut s, at)| {
        s.truncate(char_index(&s, at));
        s
    })
}
