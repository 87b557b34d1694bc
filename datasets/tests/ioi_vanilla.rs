//! The IOI vanilla file through the real GPT-2 tokenizer: spec 2.5's reference values.

use std::path::PathBuf;

use attrib_datasets::{prepare, DatasetOptions, PromptFile, PromptTokenizer};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tokenizer() -> PromptTokenizer {
    PromptTokenizer::from_file(&repo().join("assets/gpt2/tokenizer.json")).unwrap()
}

#[test]
fn gpt2_tokenization_matches_python() {
    let tok = tokenizer();
    assert_eq!(
        tok.encode("When Mary and John went to the store, John gave a drink to")
            .unwrap(),
        vec![2215, 5335, 290, 1757, 1816, 284, 262, 3650, 11, 1757, 2921, 257, 4144, 284]
    );
    assert_eq!(tok.encode("<|endoftext|>When").unwrap(), vec![50256, 2215]);
    assert_eq!(tok.bos_id(), 50256);
}

#[test]
fn ioi_vanilla_quickstart_split() {
    let file =
        PromptFile::read(&repo().join("datasets/ioi/ioi_vanilla_template_prompts.json")).unwrap();
    let ds = prepare(&file, &tokenizer(), &DatasetOptions::default()).unwrap();
    assert_eq!(ds.width, 15);
    assert_eq!(&ds.train.prompt_indices[..5], &[776, 507, 895, 922, 33]);
    assert_eq!(&ds.test.prompt_indices[..5], &[949, 515, 864, 836, 877]);
    let b = &ds.train_batches(16)[0];
    assert_eq!(
        &b.clean[..15],
        &[50256, 2215, 17826, 290, 3977, 1816, 284, 262, 4429, 11, 3977, 2921, 257, 9669, 284]
    );
    assert_eq!(
        &b.corrupt[..15],
        &[50256, 2215, 10799, 290, 17608, 1816, 284, 262, 4429, 11, 11232, 2921, 257, 9669, 284]
    );
    assert_eq!(
        (b.answers[0].as_slice(), b.wrong_answers[0].as_slice()),
        (&[17826][..], &[3977][..])
    );
    assert_eq!(
        (ds.train_batches(16).len(), ds.test_batches(16).len()),
        (8, 8)
    );
    let labels = ds.seq_labels.as_ref().unwrap();
    assert_eq!((labels[0].as_str(), labels.len()), ("<|BOS|>", 15));
    assert_eq!(ds.word_idxs["end"], 14);
}

#[test]
fn left_padding_uses_the_bos_id() {
    let json = r#"{"prompts": [
        {"clean": "When Mary and John went", "corrupt": "When Anna and John went", "answers": [" John"], "wrong_answers": [" Mary"]},
        {"clean": "When Mary went", "corrupt": "When Anna went", "answers": [" John", " Mary"], "wrong_answers": [" Mary"]}]}"#;
    let file = PromptFile::parse(json, std::path::Path::new("t.json")).unwrap();
    let opts = DatasetOptions {
        train_size: 2,
        test_size: 0,
        batch_size: 2,
        shuffle: false,
        ..Default::default()
    };
    let ds = prepare(&file, &tokenizer(), &opts).unwrap();
    assert_eq!(ds.width, 6);
    assert_eq!(ds.train.clean[1][..3], [50256, 50256, 50256]);
    assert_eq!(ds.train.answers[1].len(), 2);
}
