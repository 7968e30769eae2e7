//! `remask forward` / `export` / `generate` with the real binary on the committed Hugging Face
//! fixtures: I32 ids in, `transformers`' outputs out (within 1e-4), export then re-import gives the
//! same outputs, and bad input is one `error:` line naming the file or tensor.

use std::path::{Path, PathBuf};
use std::process::Command;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

const BIN: &str = env!("CARGO_BIN_EXE_remask");

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn f32s(st: &SafeTensors, name: &str) -> (Vec<usize>, Vec<f32>) {
    let v = st.tensor(name).unwrap();
    assert_eq!(v.dtype(), Dtype::F32, "{name}");
    (
        v.shape().to_vec(),
        v.data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

fn i64s(st: &SafeTensors, name: &str) -> (Vec<usize>, Vec<i64>) {
    let v = st.tensor(name).unwrap();
    (
        v.shape().to_vec(),
        v.data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect(),
    )
}

fn remask(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().unwrap()
}

/// Writes the GPT-2 fixture's ids and mask as I32 (the CLI must accept both I64 and I32).
fn write_i32_inputs(path: &Path, io: &SafeTensors) {
    let mut bufs = Vec::new();
    for name in ["input_ids", "attention_mask"] {
        let (shape, v) = i64s(io, name);
        bufs.push((
            name.to_string(),
            shape,
            v.iter()
                .flat_map(|&x| (x as i32).to_le_bytes())
                .collect::<Vec<u8>>(),
        ));
    }
    let views: Vec<(String, TensorView)> = bufs
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                TensorView::new(Dtype::I32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

#[test]
fn forward_and_export_match_transformers_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let io_bytes = std::fs::read(fixtures().join("gpt2/io.safetensors")).unwrap();
    let io = SafeTensors::deserialize(&io_bytes).unwrap();
    let inp = tmp.path().join("in.safetensors");
    write_i32_inputs(&inp, &io);
    let (_, mask) = i64s(&io, "attention_mask");
    let compare = |model: &Path| {
        let out = tmp.path().join("out.safetensors");
        let o = remask(&[
            "forward",
            "--model",
            model.to_str().unwrap(),
            "--inputs",
            inp.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let bytes = std::fs::read(&out).unwrap();
        let got = SafeTensors::deserialize(&bytes).unwrap();
        for name in ["logits", "last_hidden_state"] {
            let (gs, g) = f32s(&got, name);
            let (ws, w) = f32s(&io, name);
            assert_eq!(gs, ws, "{name}");
            let width = gs[2];
            let worst = mask
                .iter()
                .enumerate()
                .filter(|(_, &m)| m != 0)
                .flat_map(|(r, _)| (0..width).map(move |j| (r, j)))
                .map(|(r, j)| (g[r * width + j] - w[r * width + j]).abs())
                .fold(0.0f32, f32::max);
            assert!(
                worst < 1e-4,
                "{}: {name} differs from transformers by {worst}",
                model.display()
            );
        }
    };
    compare(&fixtures().join("gpt2"));
    // Export the imported model and run the export: same outputs.
    let exported = tmp.path().join("export");
    let o = remask(&[
        "export",
        "--checkpoint",
        fixtures().join("gpt2").to_str().unwrap(),
        "--out",
        exported.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(exported.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["model_type"], "gpt2");
    assert_eq!(cfg["eos_token_id"], 95);
    compare(&exported);
}

#[test]
fn bad_inputs_are_one_error_line_naming_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.safetensors");
    let model = fixtures().join("bert");
    // An inputs file without input_ids.
    let inp = tmp.path().join("in.safetensors");
    let b = vec![0u8; 8];
    let views = vec![(
        "attention_mask".to_string(),
        TensorView::new(Dtype::I64, vec![1, 1], &b).unwrap(),
    )];
    safetensors::serialize_to_file(views, None, &inp).unwrap();
    let o = remask(&[
        "forward",
        "--model",
        model.to_str().unwrap(),
        "--inputs",
        inp.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.starts_with("error:") && err.contains("input_ids"),
        "{err}"
    );
    // A model directory without weights.
    let d = tmp.path().join("m");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(model.join("config.json"), d.join("config.json")).unwrap();
    let o = remask(&[
        "forward",
        "--model",
        d.to_str().unwrap(),
        "--inputs",
        inp.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("missing model.safetensors"),
        "{err}"
    );
    // Text without a tokenizer says where it looked.
    let o = remask(&[
        "generate",
        "--checkpoint",
        fixtures().join("gpt2").to_str().unwrap(),
        "--prompt",
        "hi",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("no tokenizer.json"),
        "{err}"
    );
}
