//! What a job computes, as command-line flags: one clap struct shared by `attrib submit` and
//! `attrib-worker attribute`, and its one conversion into the wire's data options and the
//! attribution settings. A new setting is added here and nowhere else, so a job means the
//! same thing on a cluster and in one process. Defaults are AutoCircuit's quickstart.

use crate::label::check_label;
use crate::settings::{
    check_mask_val, AnswerFunction, AttributionSettings, GradFunction, MaskPoints, Method,
};
use crate::{v1, SettingsError};

/// The quickstart's prompts per batch, train and test prompts per dataset, and shuffle seed.
pub const DEFAULT_BATCH_SIZE: u32 = 16;
pub const DEFAULT_TRAIN_SIZE: u32 = 128;
pub const DEFAULT_TEST_SIZE: u32 = 128;
pub const DEFAULT_SEED: u64 = 42;

/// What to compute; defaults are AutoCircuit's quickstart.
#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct JobSpec {
    /// Prompts per batch (AutoCircuit sums gradients over batches, so this changes scores).
    #[arg(
        long,
        default_value_t = DEFAULT_BATCH_SIZE,
        env = "ATTRIB_BATCH_SIZE",
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub batch_size: u32,
    /// K: consecutive batches per work unit, run together in one fused forward/backward pass
    /// (one result on the wire). Scores are the same bits for a given K on any cluster and in
    /// one process; other K agree to f32 rounding (within 1e-6 of the largest |score|). More
    /// memory; suits GPUs, not faster on CPU (docs/cluster.md).
    #[arg(
        long,
        default_value_t = 1,
        alias = "batches-per-pass",
        env = "ATTRIB_BATCHES_PER_UNIT",
        allow_negative_numbers = true
    )]
    pub batches_per_unit: u32,
    /// Train prompts per dataset, the first of the shuffled file (scores use these).
    #[arg(long, default_value_t = DEFAULT_TRAIN_SIZE, env = "ATTRIB_TRAIN_SIZE", allow_negative_numbers = true)]
    pub train_size: u32,
    /// Test prompts per dataset, after the train prompts (kept out of the scores).
    #[arg(long, default_value_t = DEFAULT_TEST_SIZE, env = "ATTRIB_TEST_SIZE", allow_negative_numbers = true)]
    pub test_size: u32,
    /// Seed of Python's `random.shuffle` over the prompts: an integer from 0 to 2^64 − 1.
    #[arg(
        long,
        default_value_t = DEFAULT_SEED,
        env = "ATTRIB_SEED",
        allow_negative_numbers = true,
        value_parser = parse_seed
    )]
    pub seed: u64,
    /// Do not prepend `<|endoftext|>` to prompts.
    #[arg(long, env = "ATTRIB_NO_PREPEND_BOS")]
    pub no_prepend_bos: bool,
    /// mask-gradient (AutoCircuit's, the default) | eap | eap-ig-inputs | clean-corrupted |
    /// eap-ig-activations (EAP-IG's, with its normalisation) | exact | acdc (docs/methods.md).
    #[arg(
        long,
        default_value = "mask-gradient",
        env = "ATTRIB_METHOD",
        value_parser = clap::builder::PossibleValuesParser::new(Method::NAMES.split(' '))
    )]
    pub method: String,
    /// Integrated-gradient steps of eap-ig-inputs and eap-ig-activations (EAP-IG uses 5).
    #[arg(long, env = "ATTRIB_STEPS", allow_negative_numbers = true)]
    pub steps: Option<usize>,
    /// ACDC's τ values, comma-separated (default: AutoCircuit's a·10^b, a in 1,3,5,7,9, b in
    /// -5..-2); each is a work unit.
    #[arg(
        long,
        value_delimiter = ',',
        env = "ATTRIB_TAUS",
        // "-1e-3" is not a number to clap's flag detection; it must reach the τ check.
        allow_hyphen_values = true
    )]
    pub taus: Option<Vec<f64>>,
    /// logit | prob | logprob | logit_exp
    #[arg(long, default_value = "logit", env = "ATTRIB_GRAD_FUNCTION")]
    pub grad_function: GradFunction,
    /// avg_diff | avg_val
    #[arg(long, default_value = "avg_diff", env = "ATTRIB_ANSWER_FUNCTION")]
    pub answer_function: AnswerFunction,
    /// Value of every mask where the gradient is taken, from 0 (clean, the default: edge
    /// attribution patching) to 1 (corrupt).
    #[arg(
        long,
        env = "ATTRIB_MASK_VAL",
        conflicts_with = "integrated_grad_samples",
        // Not only numbers: "-inf" must reach the parser to be refused with the range.
        allow_hyphen_values = true,
        value_parser = parse_mask_val
    )]
    pub mask_val: Option<f64>,
    /// Integrated gradients over masks 0, 1/N, ..., 1 instead of one mask value.
    #[arg(
        long,
        env = "ATTRIB_INTEGRATED_GRAD_SAMPLES",
        allow_negative_numbers = true
    )]
    pub integrated_grad_samples: Option<usize>,
    /// One edge per token position (prompts must all have the same length).
    #[arg(long, env = "ATTRIB_TOKEN_POSITIONS")]
    pub token_positions: bool,
    /// One input per head shared by Q, K and V instead of three.
    #[arg(long, env = "ATTRIB_NO_SEPARATE_QKV")]
    pub no_separate_qkv: bool,
}

impl JobSpec {
    /// The attribution settings, checked (method, steps, τs and mask points agree).
    pub fn settings(&self) -> Result<AttributionSettings, SettingsError> {
        let s = AttributionSettings {
            method: Method::from_name(&self.method, self.steps, self.taus.clone())?,
            grad_function: self.grad_function,
            answer_function: self.answer_function,
            points: MaskPoints::from_options(self.mask_val, self.integrated_grad_samples)?,
            separate_qkv: !self.no_separate_qkv,
            token_positions: self.token_positions,
        };
        s.check()?;
        Ok(s)
    }

    /// Prompt selection and batching as the wire carries them (no exact-patching edge groups:
    /// those say how a cluster cuts a job, not what it computes).
    pub fn data_options(&self) -> v1::DataOptions {
        v1::DataOptions {
            batch_size: self.batch_size,
            train_size: self.train_size,
            test_size: self.test_size,
            prepend_bos: !self.no_prepend_bos,
            seed: self.seed,
            batches_per_unit: self.batches_per_unit.max(1),
            edges_per_unit: 0,
        }
    }
}

/// `--mask-val`: checked here so that clap names the flag and exits as for any usage error.
fn parse_mask_val(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| "expected a number from 0 (clean) to 1 (corrupt)".to_string())?;
    check_mask_val(v).map_err(|e| e.to_string())
}

/// `--seed`: u64's own parse error ("invalid digit") does not say what a seed may be.
fn parse_seed(s: &str) -> Result<u64, String> {
    s.trim()
        .parse()
        .map_err(|_| "the seed is a non-negative integer, from 0 to 2^64 - 1".to_string())
}

/// `--label` of `attrib submit` and `attrib faithfulness`: refused before anything is sent
/// (the coordinator checks again, as the authority).
pub fn parse_label(s: &str) -> Result<String, String> {
    check_label(s)
        .map(|()| s.to_string())
        .map_err(|e| e.to_string())
}

/// The quickstart's data options (what `JobSpec`'s defaults give).
pub fn quickstart_data_options() -> v1::DataOptions {
    v1::DataOptions {
        batch_size: DEFAULT_BATCH_SIZE,
        train_size: DEFAULT_TRAIN_SIZE,
        test_size: DEFAULT_TEST_SIZE,
        prepend_bos: true,
        seed: DEFAULT_SEED,
        batches_per_unit: 1,
        edges_per_unit: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        job: JobSpec,
    }

    fn parse(args: &[&str]) -> JobSpec {
        Cli::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
            .unwrap()
            .job
    }

    #[test]
    fn defaults_are_the_quickstart() {
        let j = parse(&[]);
        assert_eq!(j.data_options(), quickstart_data_options());
        assert_eq!(j.settings().unwrap(), AttributionSettings::default());
    }

    #[test]
    fn flags_reach_settings_and_data() {
        let j = parse(&[
            "--method",
            "eap-ig-inputs",
            "--steps",
            "5",
            "--batch-size",
            "4",
            "--batches-per-unit",
            "3",
            "--no-prepend-bos",
            "--token-positions",
        ]);
        let s = j.settings().unwrap();
        assert_eq!(s.method, Method::EapIgInputs { steps: 5 });
        assert!(s.token_positions);
        let d = j.data_options();
        assert_eq!(
            (d.batch_size, d.batches_per_unit, d.prepend_bos),
            (4, 3, false)
        );
    }

    fn refusal(args: &[&str]) -> String {
        match Cli::try_parse_from(std::iter::once("t").chain(args.iter().copied())) {
            Ok(_) => panic!("{args:?} parsed"),
            Err(e) => {
                assert_eq!(e.exit_code(), 2, "{args:?}");
                e.to_string()
            }
        }
    }

    #[test]
    fn numbers_with_a_minus_are_values_and_bad_values_name_their_flag() {
        assert_eq!(parse(&["--mask-val", "-0"]).mask_val, Some(0.0));
        assert_eq!(parse(&["--mask-val", "0.5"]).mask_val, Some(0.5));
        assert_eq!(parse(&["--mask-val", "1"]).mask_val, Some(1.0));
        for v in ["2", "-0.5", "nan", "inf", "-inf", "x"] {
            let e = refusal(&["--mask-val", v]);
            assert!(
                e.contains("--mask-val") && e.contains("0 (clean) to 1"),
                "{v}: {e}"
            );
        }
        let e = refusal(&["--seed", "-5"]);
        assert!(
            e.contains("--seed") && e.contains("non-negative integer"),
            "{e}"
        );
        let e = refusal(&["--batch-size", "-1"]);
        assert!(e.contains("--batch-size"), "{e}");
        let e = refusal(&["--batch-size", "0"]);
        assert!(e.contains("--batch-size"), "{e}");
        let e = parse(&["--method", "acdc", "--taus", "-1e-3"])
            .settings()
            .unwrap_err();
        assert!(e.to_string().contains("above 0"), "{e}");
    }

    #[test]
    fn bad_combinations_are_refused_by_name() {
        let err = parse(&["--method", "exact", "--steps", "3"])
            .settings()
            .unwrap_err();
        assert!(err.to_string().contains("exact"), "{err}");
        let e = refusal(&["--method", "nope"]);
        assert!(e.contains("--method") && e.contains("eap-ig-inputs"), "{e}");
    }
}
