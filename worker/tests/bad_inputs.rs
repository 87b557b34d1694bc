//! Bad inputs get errors that say what is wrong, never a panic: broken model folders and
//! broken datasets, through the same calls `attrib-worker attribute` makes.

mod common;

use std::path::Path;

use attrib_proto::AttributionSettings;
use attrib_worker::job::{run_attribute, AttributeJob};
use attrib_worker::model::Gpt2;
use common::*;
use tch::Tensor;

/// A copy of the tiny model folder whose weights went through `edit`.
fn edited_model(dir: &Path, edit: impl FnOnce(&mut Vec<(String, Tensor)>)) {
    std::fs::create_dir_all(dir).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(tiny_dir().join(f), dir.join(f)).unwrap();
    }
    let mut tensors = Tensor::read_safetensors(tiny_dir().join("model.safetensors")).unwrap();
    edit(&mut tensors);
    Tensor::write_safetensors(&tensors, dir.join("model.safetensors")).unwrap();
}

fn load_err(dir: &Path) -> String {
    match Gpt2::load(dir, test_device()) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn missing_tensor_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    edited_model(tmp.path(), |t| {
        t.retain(|(n, _)| n != "transformer.h.1.mlp.c_fc.weight")
    });
    let e = load_err(tmp.path());
    assert!(
        e.contains("tensor h.1.mlp.c_fc.weight is missing (expected shape [32, 128])"),
        "{e}"
    );
}

#[test]
fn misshaped_tensor_is_named_with_both_shapes() {
    let tmp = tempfile::tempdir().unwrap();
    edited_model(tmp.path(), |t| {
        for (n, x) in t.iter_mut() {
            if n == "transformer.h.0.attn.c_attn.weight" {
                *x = x.narrow(1, 0, 95).contiguous();
            }
        }
    });
    let e = load_err(tmp.path());
    assert!(
        e.contains("h.0.attn.c_attn.weight") && e.contains("[32, 95]") && e.contains("[32, 96]"),
        "{e}"
    );
}

#[test]
fn missing_files_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(load_err(tmp.path()).contains("has no config.json"));
    std::fs::copy(
        tiny_dir().join("config.json"),
        tmp.path().join("config.json"),
    )
    .unwrap();
    assert!(load_err(tmp.path()).contains("has no model.safetensors"));
    std::fs::write(tmp.path().join("config.json"), "{\"n_layer\": 2}").unwrap();
    let e = load_err(tmp.path());
    assert!(
        e.contains("bad model config") && e.contains("n_head"),
        "{e}"
    );
}

fn job_with_prompts(dir: &Path, prompts_json: &str) -> AttributeJob {
    let file = dir.join("prompts.json");
    std::fs::write(&file, prompts_json).unwrap();
    let mut job = quickstart_job(AttributionSettings::default());
    job.datasets = vec![file];
    job.data.train_size = 2;
    job.data.test_size = 0;
    job.data.batch_size = 1;
    job
}

fn attribute_err(job: &AttributeJob) -> String {
    let model = tiny_model();
    run_attribute(job, &model, &mut |_, _| {})
        .map(|_| ())
        .unwrap_err()
        .to_string()
}

fn prompt(clean: &str, answer: &str) -> String {
    format!(
        r#"{{"clean": "{clean}", "corrupt": "{clean}", "answers": ["{answer}"], "wrong_answers": [" Mary"]}}"#
    )
}

#[test]
fn multi_token_answer_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let json = format!(
        r#"{{"prompts": [{}, {}]}}"#,
        prompt("When Mary and John", " John"),
        prompt("When Mary and John", " Johnathan Smith")
    );
    let e = attribute_err(&job_with_prompts(tmp.path(), &json));
    assert!(
        e.contains("prompt 1")
            && e.contains("\" Johnathan Smith\"")
            && e.contains("exactly one token"),
        "{e}"
    );
}

#[test]
fn prompt_longer_than_the_context_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let long = "the ".repeat(70); // the tiny model's context is 64 tokens
    let json = format!(
        r#"{{"prompts": [{}, {}]}}"#,
        prompt("When Mary and John", " John"),
        prompt(long.trim(), " John")
    );
    let e = attribute_err(&job_with_prompts(tmp.path(), &json));
    assert!(
        e.contains("prompt 1 (clean) is 71 tokens, longer than the model's context of 64"),
        "{e}"
    );
}

#[test]
fn malformed_and_incomplete_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let e = attribute_err(&job_with_prompts(
        tmp.path(),
        r#"{"prompts": [{"clean": "a",}]}"#,
    ));
    assert!(
        e.contains("malformed prompt file") && e.contains("prompts.json"),
        "{e}"
    );
    let e = attribute_err(&job_with_prompts(
        tmp.path(),
        r#"{"prompts": [{"clean": "a", "answers": [" b"], "wrong_answers": [" c"]}]}"#,
    ));
    assert!(e.contains("missing field `corrupt`"), "{e}");
}

#[test]
fn asking_for_more_prompts_than_the_file_has_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let json = format!(
        r#"{{"prompts": [{}]}}"#,
        prompt("When Mary and John", " John")
    );
    let e = attribute_err(&job_with_prompts(tmp.path(), &json));
    assert!(
        e.contains("asked for 2 prompts (train 2 + test 0) but the dataset has only 1"),
        "{e}"
    );
}

#[test]
fn token_positions_need_equal_lengths() {
    let tmp = tempfile::tempdir().unwrap();
    let json = format!(
        r#"{{"prompts": [{}, {}]}}"#,
        prompt("When Mary and John", " John"),
        prompt("When Mary and John went", " John")
    );
    let mut job = job_with_prompts(tmp.path(), &json);
    job.settings.token_positions = true;
    let e = attribute_err(&job);
    assert!(
        e.contains("token positions need prompts of equal length"),
        "{e}"
    );
    // without token positions the shorter prompt is left padded and the job runs
    job.settings.token_positions = false;
    let model = tiny_model();
    let scores = run_attribute(&job, &model, &mut |_, _| {}).unwrap();
    assert!(scores.edges.iter().all(|e| e.score.is_finite()));
}
