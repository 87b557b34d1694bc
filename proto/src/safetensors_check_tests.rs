//! Unit tests of the header check on small files written here.

use super::*;

fn tiny() -> ModelConfig {
    ModelConfig {
        n_layers: 2,
        n_heads: 2,
        d_model: 4,
        d_head: 2,
        d_mlp: 16,
        n_ctx: 8,
        d_vocab: 10,
        eps: 1e-5,
    }
}

/// A safetensors file of zeros holding `tensors` (name, dtype, shape), `cut` bytes short.
fn write(dir: &Path, tensors: &[(String, &str, Vec<usize>)], cut: u64) -> PathBuf {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
    let mut offset = 0u64;
    for (name, dtype, shape) in tensors {
        let bytes = shape.iter().product::<usize>() as u64 * dtype_bytes(dtype).unwrap();
        let entry = serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + bytes]});
        header.insert(name.clone(), entry);
        offset += bytes;
    }
    let header = serde_json::to_vec(&header).unwrap();
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend(header);
    file.resize(file.len() + offset as usize - cut as usize, 0);
    let path = dir.join("model.safetensors");
    std::fs::write(&path, file).unwrap();
    path
}

fn full(cfg: &ModelConfig, prefix: &str) -> Vec<(String, &'static str, Vec<usize>)> {
    expected_tensors(cfg)
        .into_iter()
        .map(|(n, s)| (format!("{prefix}{n}"), "F32", s))
        .collect()
}

fn problems_of(tensors: &[(String, &str, Vec<usize>)], cut: u64) -> Vec<Problem> {
    let dir = tempfile::tempdir().unwrap();
    match check_weights_file(&write(dir.path(), tensors, cut), &tiny()) {
        Ok(()) => vec![],
        Err(WeightsError::Mismatch { problems, .. }) => problems,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn a_complete_file_passes_with_or_without_the_transformer_prefix_and_hf_buffers() {
    assert_eq!(problems_of(&full(&tiny(), ""), 0), vec![]);
    let mut hf = full(&tiny(), "transformer.");
    hf.push(("transformer.h.1.attn.bias".into(), "BOOL", vec![1, 1, 8, 8]));
    hf.push(("lm_head.weight".into(), "F16", vec![10, 4]));
    assert_eq!(problems_of(&hf, 0), vec![]);
}

#[test]
fn a_config_with_more_layers_than_the_file_names_the_missing_tensors() {
    let three = ModelConfig {
        n_layers: 3,
        ..tiny()
    };
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), &full(&tiny(), "transformer."), 0);
    let e = check_weights_file(&path, &three).unwrap_err().to_string();
    assert!(
        e.contains("tensor h.2.attn.c_attn.bias is missing (expected shape [12])"),
        "{e}"
    );
    assert!(e.contains("and 6 more"), "{e}");
}

#[test]
fn extra_layers_wrong_shapes_and_integer_weights_are_named() {
    let mut t = full(&tiny(), "");
    t.retain(|(n, _, _)| n != "wpe.weight" && n != "ln_f.bias");
    t.push(("wpe.weight".into(), "F32", vec![9, 4]));
    t.push(("ln_f.bias".into(), "I64", vec![4]));
    t.push(("h.2.ln_1.weight".into(), "F32", vec![4]));
    let p = problems_of(&t, 0);
    assert_eq!(
        p,
        vec![
            Problem::Dtype {
                name: "ln_f.bias".into(),
                dtype: "I64".into()
            },
            Problem::Shape {
                name: "wpe.weight".into(),
                expected: vec![8, 4],
                found: vec![9, 4]
            },
            Problem::Extra {
                name: "h.2.ln_1.weight".into()
            },
        ]
    );
}

#[test]
fn a_truncated_file_says_how_long_it_is_and_must_be() {
    let p = problems_of(&full(&tiny(), ""), 100);
    let [Problem::Truncated { len, needs }] = p.as_slice() else {
        panic!("{p:?}");
    };
    assert_eq!(needs - len, 100);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    std::fs::write(&path, [1, 0]).unwrap();
    let e = check_weights_file(&path, &tiny()).unwrap_err().to_string();
    assert!(e.contains("shorter than the 8-byte header length"), "{e}");
}
