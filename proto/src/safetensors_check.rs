//! Checks a GPT-2 `model.safetensors` against its `config.json` from the file's header alone
//! (8-byte little-endian length, then JSON `{name: {dtype, shape, data_offsets}}`), so the
//! coordinator, which never loads weights, refuses at start the folder a worker could not
//! run, and the worker refuses it with the same words before it loads anything. This check
//! is the definition of what the worker's loader accepts: every tensor it reads, with the
//! shape it expects, in a floating-point dtype, and nothing it would silently ignore.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::model_config::ModelConfig;

/// Larger headers are not GPT-2 checkpoints (safetensors itself refuses over 100 MB).
const MAX_HEADER_BYTES: u64 = 100 << 20;

/// How many problems a refusal lists before it says how many more there are.
const SHOWN_PROBLEMS: usize = 6;

/// Why a weights file cannot run the model its config describes.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a safetensors file: {reason}")]
    NotSafetensors { path: PathBuf, reason: String },
    #[error("{path} does not match config.json: {}", list(.problems))]
    Mismatch {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

/// One thing wrong with a weights file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Problem {
    #[error("tensor {name} is missing (expected shape {expected:?})")]
    Missing { name: String, expected: Vec<usize> },
    #[error("tensor {name} has shape {found:?}, expected {expected:?}")]
    Shape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("tensor {name} is {dtype}, not a floating-point dtype (F32, F16, BF16, F64)")]
    Dtype { name: String, dtype: String },
    #[error("tensor {name} is not part of a GPT-2 with this config (a model with more layers, or another architecture?)")]
    Extra { name: String },
    #[error("tensor {name} appears twice (with and without the \"transformer.\" prefix)")]
    Duplicate { name: String },
    #[error("tensor {name}'s data_offsets {start}..{end} do not hold {dtype} {shape:?}")]
    Offsets {
        name: String,
        dtype: String,
        shape: Vec<usize>,
        start: u64,
        end: u64,
    },
    #[error("the file is truncated at {len} bytes; its header needs {needs}")]
    Truncated { len: u64, needs: u64 },
}

fn list(problems: &[Problem]) -> String {
    let mut out: Vec<String> = problems
        .iter()
        .take(SHOWN_PROBLEMS)
        .map(Problem::to_string)
        .collect();
    if problems.len() > SHOWN_PROBLEMS {
        out.push(format!("and {} more", problems.len() - SHOWN_PROBLEMS));
    }
    out.join("; ")
}

/// One header entry (`__metadata__` is the only other kind, and is skipped).
#[derive(Debug, Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: (u64, u64),
}

/// Reads only the header of `path` and checks it against `cfg`.
pub fn check_weights_file(path: &Path, cfg: &ModelConfig) -> Result<(), WeightsError> {
    let io = |source| WeightsError::Io {
        path: path.into(),
        source,
    };
    let not_st = |reason: String| WeightsError::NotSafetensors {
        path: path.into(),
        reason,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let mut prefix = [0u8; 8];
    file.read_exact(&mut prefix).map_err(|_| {
        not_st(format!(
            "{len} bytes, shorter than the 8-byte header length"
        ))
    })?;
    let header_len = u64::from_le_bytes(prefix);
    if header_len > MAX_HEADER_BYTES {
        return Err(not_st(format!("a header of {header_len} bytes")));
    }
    if 8 + header_len > len {
        let problems = vec![Problem::Truncated {
            len,
            needs: 8 + header_len,
        }];
        return Err(WeightsError::Mismatch {
            path: path.into(),
            problems,
        });
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(io)?;
    let mut raw: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| not_st(format!("its header: {e}")))?;
    raw.remove("__metadata__");
    let mut entries = BTreeMap::new();
    for (name, v) in raw {
        let e: Entry = serde_json::from_value(v).map_err(|e| not_st(format!("{name}: {e}")))?;
        entries.insert(name, e);
    }
    let problems = problems(&entries, cfg, 8 + header_len, len);
    if problems.is_empty() {
        return Ok(());
    }
    Err(WeightsError::Mismatch {
        path: path.into(),
        problems,
    })
}

/// Every tensor the loader reads for `cfg`, by name without the `transformer.` prefix.
pub fn expected_tensors(cfg: &ModelConfig) -> BTreeMap<String, Vec<usize>> {
    let (d, dm, v) = (cfg.d_model, cfg.d_mlp, cfg.d_vocab);
    let mut out = BTreeMap::new();
    out.insert("wte.weight".to_string(), vec![v, d]);
    out.insert("wpe.weight".to_string(), vec![cfg.n_ctx, d]);
    out.insert("ln_f.weight".to_string(), vec![d]);
    out.insert("ln_f.bias".to_string(), vec![d]);
    for b in 0..cfg.n_layers {
        let block: [(&str, Vec<usize>); 12] = [
            ("ln_1.weight", vec![d]),
            ("ln_1.bias", vec![d]),
            ("attn.c_attn.weight", vec![d, 3 * d]),
            ("attn.c_attn.bias", vec![3 * d]),
            ("attn.c_proj.weight", vec![d, d]),
            ("attn.c_proj.bias", vec![d]),
            ("ln_2.weight", vec![d]),
            ("ln_2.bias", vec![d]),
            ("mlp.c_fc.weight", vec![d, dm]),
            ("mlp.c_fc.bias", vec![dm]),
            ("mlp.c_proj.weight", vec![dm, d]),
            ("mlp.c_proj.bias", vec![d]),
        ];
        for (n, shape) in block {
            out.insert(format!("h.{b}.{n}"), shape);
        }
    }
    out
}

/// Tensors HF checkpoints carry that are not weights the loader reads: attention-mask
/// buffers of the config's layers, and the tied unembedding (the loader uses `wte`).
fn tolerated(name: &str, cfg: &ModelConfig) -> bool {
    if name == "lm_head.weight" {
        return true;
    }
    let Some(rest) = name.strip_prefix("h.") else {
        return false;
    };
    let Some((layer, buffer)) = rest.split_once('.') else {
        return false;
    };
    let in_model = layer.parse::<usize>().is_ok_and(|b| b < cfg.n_layers);
    in_model && (buffer == "attn.bias" || buffer == "attn.masked_bias")
}

fn dtype_bytes(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "F64" | "I64" | "U64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2" => 1,
        _ => return None,
    })
}

/// What is wrong with `entries`, a header whose data starts at byte `data_start` of a file
/// `file_len` bytes long.
fn problems(
    entries: &BTreeMap<String, Entry>,
    cfg: &ModelConfig,
    data_start: u64,
    file_len: u64,
) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut needs = 0u64;
    let mut seen = BTreeMap::new();
    for (full, e) in entries {
        let name = full
            .strip_prefix("transformer.")
            .unwrap_or(full)
            .to_string();
        needs = needs.max(e.data_offsets.1);
        let (start, end) = e.data_offsets;
        let numel: u64 = e.shape.iter().map(|&s| s as u64).product();
        let fits = dtype_bytes(&e.dtype).is_none_or(|b| start <= end && end - start == numel * b);
        if !fits {
            out.push(Problem::Offsets {
                name: full.clone(),
                dtype: e.dtype.clone(),
                shape: e.shape.clone(),
                start,
                end,
            });
        }
        if seen.insert(name.clone(), e).is_some() {
            out.push(Problem::Duplicate { name });
        }
    }
    let expected = expected_tensors(cfg);
    for (name, shape) in &expected {
        match seen.get(name) {
            None => out.push(Problem::Missing {
                name: name.clone(),
                expected: shape.clone(),
            }),
            Some(e) if e.shape != *shape => out.push(Problem::Shape {
                name: name.clone(),
                expected: shape.clone(),
                found: e.shape.clone(),
            }),
            Some(e) if !["F32", "F16", "BF16", "F64"].contains(&e.dtype.as_str()) => {
                out.push(Problem::Dtype {
                    name: name.clone(),
                    dtype: e.dtype.clone(),
                })
            }
            Some(_) => {}
        }
    }
    for name in seen.keys() {
        if !expected.contains_key(name) && !tolerated(name, cfg) {
            out.push(Problem::Extra { name: name.clone() });
        }
    }
    if data_start + needs > file_len {
        // Offsets count from the end of the header.
        // First: a cut-off download explains every other problem.
        let truncated = Problem::Truncated {
            len: file_len,
            needs: data_start + needs,
        };
        out.insert(0, truncated);
    }
    out
}

#[cfg(test)]
#[path = "safetensors_check_tests.rs"]
mod tests;
