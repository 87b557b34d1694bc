//! AutoCircuit's prompt datasets for attrib: read the JSON format, shuffle exactly as Python's
//! `random` does, tokenize with the model's `tokenizer.json`, pad, split and batch.
//! No tensors here: batches are plain token ids so every role (and the thin client) can use them.

pub mod prepare;
pub mod prompt_file;
pub mod python_random;
pub mod tokenize;

use std::path::PathBuf;

pub use prepare::{prepare, Batch, Dataset, DatasetOptions, Split};
pub use prompt_file::{Prompt, PromptFile};
pub use python_random::PythonRandom;
pub use tokenize::PromptTokenizer;

/// Which prompt of a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Clean,
    Corrupt,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Clean => "clean",
            Side::Corrupt => "corrupt",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("malformed prompt file {path}: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("no dataset file given")]
    NoDatasetFiles,
    #[error("cannot load tokenizer {path}: {reason}")]
    Tokenizer { path: PathBuf, reason: String },
    #[error("cannot tokenize {text:?}: {reason}")]
    Encode { text: String, reason: String },
    #[error("prompt {prompt}: answer {answer:?} is {n_tokens} tokens; every answer must be exactly one token")]
    MultiTokenAnswer {
        prompt: usize,
        answer: String,
        n_tokens: usize,
    },
    #[error(
        "prompt {prompt} ({side}) is {n_tokens} tokens, longer than the model's context of {n_ctx}"
    )]
    PromptTooLong {
        prompt: usize,
        side: Side,
        n_tokens: usize,
        n_ctx: usize,
    },
    #[error("asked for {requested} prompts (train {train} + test {test}) but the dataset has only {available}")]
    NotEnoughPrompts {
        requested: usize,
        train: usize,
        test: usize,
        available: usize,
    },
    #[error("clean prompts are {clean} tokens wide but corrupt prompts {corrupt}; patching needs equal widths")]
    WidthMismatch { clean: usize, corrupt: usize },
    #[error("token positions need prompts of equal length, but prompt {prompt} ({side}) is shorter than {width} tokens")]
    PaddingWithTokenPositions {
        prompt: usize,
        side: Side,
        width: usize,
    },
    #[error("batch size must be at least 1")]
    ZeroBatchSize,
    #[error("prompt {prompt} ({side}) has no tokens; give it text, or prepend BOS")]
    EmptyPrompt { prompt: usize, side: Side },
    #[error("word index {index} of {word:?} is out of range")]
    WordIndex { word: String, index: i64 },
    #[error("train size {train_size} gives no full batch of {batch_size} (a partial last batch is dropped, as AutoCircuit does)")]
    NoFullBatch {
        train_size: usize,
        batch_size: usize,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
