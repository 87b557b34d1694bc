//! The model and data path against the golden AutoCircuit run: the shuffle and train split,
//! every batch's token ids, TransformerLens's processed weights, and unpatched logits.

mod common;

use attrib_proto::AttributionSettings;
use attrib_worker::job::load_dataset;
use attrib_worker::model::TokenBatch;
use common::*;
use tch::{Kind, Tensor};

fn ints(v: &serde_json::Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

#[test]
fn shuffle_split_and_batches_match_autocircuit() {
    let c = golden("common.json");
    let d = &c["dataset"];
    let model = tiny_model();
    let (ds, _) = load_dataset(&quickstart_job(AttributionSettings::default()), &model).unwrap();
    let order: Vec<usize> = ints(&d["shuffled_order"])
        .into_iter()
        .map(|i| i as usize)
        .collect();
    assert_eq!(ds.shuffled_order, order);
    let idx = |k: &str| {
        ints(&d[k])
            .into_iter()
            .map(|i| i as usize)
            .collect::<Vec<_>>()
    };
    assert_eq!(ds.train.prompt_indices, idx("train_prompt_indices"));
    assert_eq!(ds.test.prompt_indices, idx("test_prompt_indices"));
    assert_eq!(ds.width, 15);
    let golden_batches = d["train_batches"].as_array().unwrap();
    let ours = ds.train_batches(16);
    for (o, g) in zip_eq(&ours, golden_batches, "our and AutoCircuit's train batches") {
        let rows = |k: &str| {
            g[k].as_array()
                .unwrap()
                .iter()
                .flat_map(ints)
                .collect::<Vec<_>>()
        };
        assert_eq!(o.clean, rows("clean"));
        assert_eq!(o.corrupt, rows("corrupt"));
        assert_eq!(o.answers.concat(), rows("answers"));
        assert_eq!(o.wrong_answers.concat(), rows("wrong_answers"));
    }
}

#[test]
fn processed_weights_match_transformer_lens() {
    let model = tiny_model();
    // safetensors are read onto the CPU: moved to the model's device, where the index and
    // the subtraction below must run (ATTRIB_TEST_DEVICE may be a GPU).
    let reference: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(tiny_dir().join("tl_processed.safetensors"))
            .unwrap()
            .into_iter()
            .map(|(name, t)| (name, t.to_device(model.device)))
            .collect();
    let ids = &reference["token_ids"];
    let w = &model.w;
    let mut mine: Vec<(String, Tensor)> = vec![
        ("embed.W_E[token_ids]".into(), w.w_e.index_select(0, ids)),
        (
            "unembed.W_U[:, token_ids]".into(),
            w.w_u.index_select(1, ids),
        ),
        ("unembed.b_U".into(), w.b_u.shallow_clone()),
        ("pos_embed.W_pos".into(), w.w_pos.shallow_clone()),
    ];
    for (b, bw) in w.blocks.iter().enumerate() {
        for (n, t) in [
            ("W_Q", &bw.w_q),
            ("W_K", &bw.w_k),
            ("W_V", &bw.w_v),
            ("W_O", &bw.w_o),
            ("b_Q", &bw.b_q),
            ("b_K", &bw.b_k),
            ("b_V", &bw.b_v),
            ("b_O", &bw.b_o),
        ] {
            mine.push((format!("blocks.{b}.attn.{n}"), t.shallow_clone()));
        }
        for (n, t) in [
            ("W_in", &bw.w_in),
            ("W_out", &bw.w_out),
            ("b_in", &bw.b_in),
            ("b_out", &bw.b_out),
        ] {
            mine.push((format!("blocks.{b}.mlp.{n}"), t.shallow_clone()));
        }
    }
    assert_eq!(
        mine.len() + 1,
        reference.len(),
        "every processed tensor is compared"
    );
    for (name, t) in &mine {
        let r = &reference[name];
        assert_eq!(t.size(), r.size(), "{name}");
        let diff = (t - r).abs().max().double_value(&[]);
        // float32 processing in another order: a few ulps of values of order 1.
        assert!(diff < 2e-6, "{name}: max|diff| {diff:.2e}");
    }
}

#[test]
fn unpatched_logit_diffs_match_per_prompt() {
    let g = golden("golden_quickstart.json");
    let per_prompt = &g["logit_stats"]["per_prompt"];
    let model = tiny_model();
    let (ds, tok) = load_dataset(&quickstart_job(AttributionSettings::default()), &model).unwrap();
    let mut k = 0;
    for b in ds.train_batches(16) {
        let tb = TokenBatch::new(
            &b.clean,
            16,
            b.width,
            tok.bos_id(),
            true,
            &model.cfg,
            model.device,
        )
        .unwrap();
        let z = model.logits(&tb);
        for (row, (a, w)) in b.answers.iter().zip(&b.wrong_answers).enumerate() {
            let za = z.double_value(&[row as i64, a[0]]);
            let zw = z.double_value(&[row as i64, w[0]]);
            let gold_ld = per_prompt["clean_logit_diff"][k].as_f64().unwrap();
            let gold_a = per_prompt["clean_answer_logit"][k].as_f64().unwrap();
            assert!(
                (za - zw - gold_ld).abs() < 2e-5,
                "prompt {k}: {} vs {gold_ld}",
                za - zw
            );
            // Raw (centred) logits depend on centre_unembed: checks weight processing end to end.
            assert!(
                (za - gold_a).abs() < 2e-5,
                "prompt {k}: answer logit {za} vs {gold_a}"
            );
            k += 1;
        }
        assert_eq!(z.kind(), Kind::Float);
    }
    assert_eq!(k, 128);
}
