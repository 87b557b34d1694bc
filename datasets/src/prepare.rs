//! From a prompt file to padded token batches, as `load_datasets_from_json` does (spec 2.3):
//! shuffle, select train+test, prepend BOS, tokenize each side as one padded list (left
//! padding with the BOS id), single-token answers, split, batches with `drop_last`.

use std::collections::BTreeMap;

use crate::prompt_file::PromptFile;
use crate::python_random::PythonRandom;
use crate::tokenize::{PromptTokenizer, BOS_TEXT};
use crate::{Error, Result, Side};

/// What to load. Defaults are AutoCircuit's README quickstart.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetOptions {
    pub batch_size: usize,
    pub train_size: usize,
    pub test_size: usize,
    pub prepend_bos: bool,
    pub shuffle: bool,
    pub seed: u64,
    /// The model's context length; longer prompts are refused.
    pub n_ctx: usize,
    /// Token-specific graph: prompts must need no padding (AutoCircuit's `return_seq_length`).
    pub token_positions: bool,
}

impl Default for DatasetOptions {
    fn default() -> Self {
        DatasetOptions {
            batch_size: 16,
            train_size: 128,
            test_size: 128,
            prepend_bos: true,
            shuffle: true,
            seed: 42,
            n_ctx: 1024,
            token_positions: false,
        }
    }
}

impl DatasetOptions {
    /// The options of a job's data (as the wire and `attrib_proto::JobSpec` give them) for a
    /// model of context `n_ctx`, token-specific or not. The coordinator and a worker in one
    /// process both choose prompts through this.
    pub fn for_job(
        data: &attrib_proto::v1::DataOptions,
        n_ctx: usize,
        token_positions: bool,
    ) -> Self {
        DatasetOptions {
            batch_size: data.batch_size as usize,
            train_size: data.train_size as usize,
            test_size: data.test_size as usize,
            prepend_bos: data.prepend_bos,
            shuffle: true,
            seed: data.seed,
            n_ctx,
            token_positions,
        }
    }
}

/// Prompts of one split, tokenized and padded to the dataset's common width.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Split {
    /// Index of each prompt in the (merged) prompt file.
    pub prompt_indices: Vec<usize>,
    /// `[n][width]` clean token ids, left padded.
    pub clean: Vec<Vec<i64>>,
    pub corrupt: Vec<Vec<i64>>,
    /// Single-token answers of each prompt (one or more per prompt).
    pub answers: Vec<Vec<i64>>,
    pub wrong_answers: Vec<Vec<i64>>,
}

/// One batch, flat row-major token ids `[batch_size * width]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Position of this batch in its split (stable id; AutoCircuit's key is a Python hash).
    pub index: usize,
    pub batch_size: usize,
    pub width: usize,
    pub clean: Vec<i64>,
    pub corrupt: Vec<i64>,
    pub answers: Vec<Vec<i64>>,
    pub wrong_answers: Vec<Vec<i64>>,
}

impl Split {
    pub fn len(&self) -> usize {
        self.clean.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clean.is_empty()
    }

    /// Consecutive batches, the last partial one dropped (`drop_last=True`).
    pub fn batches(&self, batch_size: usize) -> Vec<Batch> {
        let width = self.clean.first().map_or(0, Vec::len);
        (0..self.len() / batch_size.max(1))
            .map(|i| {
                let r = i * batch_size..(i + 1) * batch_size;
                Batch {
                    index: i,
                    batch_size,
                    width,
                    clean: self.clean[r.clone()].concat(),
                    corrupt: self.corrupt[r.clone()].concat(),
                    answers: self.answers[r.clone()].to_vec(),
                    wrong_answers: self.wrong_answers[r].to_vec(),
                }
            })
            .collect()
    }
}

/// A loaded dataset: both splits plus the file's labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub train: Split,
    pub test: Split,
    /// Width of every token row (max prompt length over the selected prompts).
    pub width: usize,
    /// `Some(width)` when no prompt needed padding and token positions were asked for.
    pub seq_len: Option<usize>,
    /// Per-position labels, with `<|BOS|>` in front when BOS is prepended.
    pub seq_labels: Option<Vec<String>>,
    /// Named token indices, shifted by one when BOS is prepended.
    pub word_idxs: BTreeMap<String, i64>,
    /// The whole shuffled order of the file's prompts.
    pub shuffled_order: Vec<usize>,
}

impl Dataset {
    pub fn train_batches(&self, batch_size: usize) -> Vec<Batch> {
        self.train.batches(batch_size)
    }

    pub fn test_batches(&self, batch_size: usize) -> Vec<Batch> {
        self.test.batches(batch_size)
    }
}

/// Loads `file` with `tok` following `opts`.
pub fn prepare(file: &PromptFile, tok: &PromptTokenizer, opts: &DatasetOptions) -> Result<Dataset> {
    if opts.batch_size == 0 {
        return Err(Error::ZeroBatchSize);
    }
    let wanted = opts.train_size.checked_add(opts.test_size);
    if wanted.is_none_or(|w| w > file.prompts.len()) {
        return Err(Error::NotEnoughPrompts {
            requested: opts.train_size.saturating_add(opts.test_size),
            train: opts.train_size,
            test: opts.test_size,
            available: file.prompts.len(),
        });
    }
    if opts.train_size < opts.batch_size {
        return Err(Error::NoFullBatch {
            train_size: opts.train_size,
            batch_size: opts.batch_size,
        });
    }
    let mut order: Vec<usize> = (0..file.prompts.len()).collect();
    if opts.shuffle {
        PythonRandom::new(opts.seed).shuffle(&mut order);
    }
    let selected = &order[..opts.train_size + opts.test_size]; // checked above

    let [clean, corrupt] =
        [Side::Clean, Side::Corrupt].map(|side| tokenize_side(file, selected, side, tok, opts));
    let (clean, corrupt) = (clean?, corrupt?);
    let width = |rows: &[Vec<i64>]| rows.iter().map(Vec::len).max().unwrap_or(0);
    let (clean_w, corrupt_w) = (width(&clean), width(&corrupt));
    if clean_w != corrupt_w {
        return Err(Error::WidthMismatch {
            clean: clean_w,
            corrupt: corrupt_w,
        });
    }
    let padded = clean.iter().chain(&corrupt).any(|r| r.len() != clean_w);
    if opts.token_positions && padded {
        let (i, side) = first_padded(selected, &clean, &corrupt, clean_w);
        return Err(Error::PaddingWithTokenPositions {
            prompt: i,
            side,
            width: clean_w,
        });
    }
    let pad = |rows: Vec<Vec<i64>>| -> Vec<Vec<i64>> {
        rows.into_iter()
            .map(|r| {
                let mut out = vec![tok.bos_id(); clean_w - r.len()];
                out.extend(r);
                out
            })
            .collect()
    };
    let (clean, corrupt) = (pad(clean), pad(corrupt));

    let all = with_answers(file, selected, clean, corrupt, tok)?;
    let (train, test) = split_at(all, opts.train_size);

    let (seq_labels, word_idxs) = labels(file, opts.prepend_bos)?;
    Ok(Dataset {
        train,
        test,
        width: clean_w,
        seq_len: opts.token_positions.then_some(clean_w),
        seq_labels,
        word_idxs,
        shuffled_order: order,
    })
}

/// One side's token ids for the `selected` prompts, BOS prepended when asked; refuses empty
/// prompts and prompts longer than the model's context.
fn tokenize_side(
    file: &PromptFile,
    selected: &[usize],
    side: Side,
    tok: &PromptTokenizer,
    opts: &DatasetOptions,
) -> Result<Vec<Vec<i64>>> {
    let bos = if opts.prepend_bos { BOS_TEXT } else { "" };
    selected
        .iter()
        .map(|&i| {
            let p = &file.prompts[i];
            let text = match side {
                Side::Clean => &p.clean,
                Side::Corrupt => &p.corrupt,
            };
            let ids = tok.encode(&format!("{bos}{text}"))?;
            if ids.is_empty() {
                return Err(Error::EmptyPrompt { prompt: i, side });
            }
            if ids.len() > opts.n_ctx {
                return Err(Error::PromptTooLong {
                    prompt: i,
                    side,
                    n_tokens: ids.len(),
                    n_ctx: opts.n_ctx,
                });
            }
            Ok(ids)
        })
        .collect()
}

/// The `selected` prompts' padded rows joined to their single-token answers, in order.
fn with_answers(
    file: &PromptFile,
    selected: &[usize],
    clean: Vec<Vec<i64>>,
    corrupt: Vec<Vec<i64>>,
    tok: &PromptTokenizer,
) -> Result<Split> {
    let answers_of = |i: usize, which: &[String]| -> Result<Vec<i64>> {
        which
            .iter()
            .map(|a| {
                let ids = tok.encode(a)?;
                match ids.as_slice() {
                    [one] => Ok(*one),
                    _ => Err(Error::MultiTokenAnswer {
                        prompt: i,
                        answer: a.clone(),
                        n_tokens: ids.len(),
                    }),
                }
            })
            .collect()
    };
    let mut all = Split::default();
    for (row, &i) in selected.iter().enumerate() {
        let p = &file.prompts[i];
        all.prompt_indices.push(i);
        all.clean.push(clean[row].clone());
        all.corrupt.push(corrupt[row].clone());
        all.answers.push(answers_of(i, &p.answers)?);
        all.wrong_answers.push(answers_of(i, &p.wrong_answers)?);
    }
    Ok(all)
}

/// Position labels and word indices, shifted by one when BOS is prepended.
#[allow(clippy::type_complexity)]
fn labels(
    file: &PromptFile,
    prepend_bos: bool,
) -> Result<(Option<Vec<String>>, BTreeMap<String, i64>)> {
    let shift = i64::from(prepend_bos);
    let seq_labels = file.seq_labels.as_ref().map(|labels| {
        let mut out = Vec::new();
        if prepend_bos {
            out.push("<|BOS|>".to_string());
        }
        out.extend(labels.iter().cloned());
        out
    });
    let word_idxs = file
        .word_idxs
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| match v.checked_add(shift) {
            Some(i) => Ok((k, i)),
            None => Err(Error::WordIndex { word: k, index: v }),
        })
        .collect::<Result<_>>()?;
    Ok((seq_labels, word_idxs))
}

fn first_padded(
    selected: &[usize],
    clean: &[Vec<i64>],
    corrupt: &[Vec<i64>],
    w: usize,
) -> (usize, Side) {
    for (row, &i) in selected.iter().enumerate() {
        if clean[row].len() != w {
            return (i, Side::Clean);
        }
        if corrupt[row].len() != w {
            return (i, Side::Corrupt);
        }
    }
    (0, Side::Clean)
}

fn split_at(all: Split, n: usize) -> (Split, Split) {
    let cut = |v: &Vec<Vec<i64>>| (v[..n].to_vec(), v[n..].to_vec());
    let (c0, c1) = cut(&all.clean);
    let (k0, k1) = cut(&all.corrupt);
    let (a0, a1) = cut(&all.answers);
    let (w0, w1) = cut(&all.wrong_answers);
    let (i0, i1) = (
        all.prompt_indices[..n].to_vec(),
        all.prompt_indices[n..].to_vec(),
    );
    (
        Split {
            prompt_indices: i0,
            clean: c0,
            corrupt: k0,
            answers: a0,
            wrong_answers: w0,
        },
        Split {
            prompt_indices: i1,
            clean: c1,
            corrupt: k1,
            answers: a1,
            wrong_answers: w1,
        },
    )
}
