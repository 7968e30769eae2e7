//! Fuzz targets (stable Rust): every reader of user input, run on a committed seed corpus
//! (`fuzz/corpus/<target>/`) and on seeded mutations of it (`remask::fuzz`). The outcome must be 0
//! panics, 0 hangs and an error message for every rejected input.
//!
//! Bounded for CI by default (a few seconds per target); longer runs:
//! `REMASK_FUZZ_SECS=300 REMASK_FUZZ_ITERS=1000000 cargo test --release -p remask --test fuzz`.
//! A failure names the input file and `REMASK_FUZZ_ONLY=target:iteration` to replay it.
//! `cargo test -p remask --test fuzz -- --ignored write_binary_seeds` rewrites the binary seeds.

use std::path::{Path, PathBuf};

use remask::data::config::{DocumentSplit, InputFormat};
use remask::fuzz::{run, seeds, Budget, FuzzReport, Outcome};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn budget() -> Budget {
    Budget::from_env(400, 4)
}

fn msg(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Writes `bytes` to a fresh file named `name` in a per-thread scratch directory.
fn scratch(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "remask-fuzz-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write scratch");
    p
}

fn report(name: &str, r: &FuzzReport) {
    eprintln!(
        "fuzz {name}: {} inputs, {} accepted, {} rejected with a message, slowest {:?}",
        r.inputs, r.accepted, r.rejected, r.slowest
    );
    assert!(
        r.inputs > 0 || std::env::var_os("REMASK_FUZZ_ONLY").is_some(),
        "fuzz {name} ran no input"
    );
}

/// A model config that passed validation must also be buildable (or refused with a message), not
/// abort on an allocation or overflow: build it when it is small enough to be a real test input.
fn build_model(cfg: &remask::model::ModelConfig) -> Outcome {
    let tensors = remask::model::layout_of(cfg).map_err(msg)?;
    let params: usize = tensors.iter().map(|t| t.numel()).sum();
    if params < 2_000_000 {
        remask::model::new_model(cfg.clone(), 0).map_err(msg)?;
    }
    Ok(())
}

#[test]
fn fuzz_run_config() {
    let r = run(
        "run_config",
        &seeds(&repo_root(), "run_config"),
        budget(),
        |b| {
            let text = String::from_utf8_lossy(b);
            let cfg = remask::train::RunConfig::from_toml_str(&text, &[]).map_err(msg)?;
            cfg.validate().map_err(msg)?;
            build_model(&cfg.model)
        },
    );
    report("run_config", &r);
}

#[test]
fn fuzz_compare_config() {
    let r = run(
        "compare_config",
        &seeds(&repo_root(), "compare_config"),
        budget(),
        |b| {
            let cfg = remask::experiment::CompareConfig::from_toml_str(&String::from_utf8_lossy(b))
                .map_err(msg)?;
            cfg.validate().map_err(msg)?;
            for name in &cfg.compare.strategies {
                cfg.masking_for(name).map_err(msg)?;
            }
            Ok(())
        },
    );
    report("compare_config", &r);
}

fn fuzz_reader(target: &str, file: &str, format: InputFormat, split: DocumentSplit) {
    let r = run(target, &seeds(&repo_root(), target), budget(), |b| {
        let path = scratch(file, b);
        let docs = remask::data::reader::read_file(&path, format, split, "text").map_err(msg)?;
        if docs.is_empty() {
            return Err("a reader returned no documents without an error".into());
        }
        Ok(())
    });
    report(target, &r);
}

#[test]
fn fuzz_text_reader() {
    fuzz_reader(
        "text",
        "corpus.txt",
        InputFormat::Text,
        DocumentSplit::BlankLine,
    );
}

#[test]
fn fuzz_jsonl_reader() {
    fuzz_reader(
        "jsonl",
        "corpus.jsonl",
        InputFormat::Jsonl,
        DocumentSplit::Line,
    );
}

#[test]
fn fuzz_tsv_reader() {
    fuzz_reader("tsv", "pairs.tsv", InputFormat::Tsv, DocumentSplit::Line);
}

#[test]
fn fuzz_parquet_reader() {
    fuzz_reader(
        "parquet",
        "corpus.parquet",
        InputFormat::Parquet,
        DocumentSplit::Line,
    );
}

#[test]
fn fuzz_safetensors() {
    let r = run(
        "safetensors",
        &seeds(&repo_root(), "safetensors"),
        budget(),
        |b| {
            remask::tensor_file::parse(Path::new("fuzz.safetensors"), b).map_err(msg)?;
            Ok(())
        },
    );
    report("safetensors", &r);
}

/// Hugging Face loading: a mutated `config.json` with the BERT fixture's weights, and the fixture's
/// `config.json` with mutated weights.
#[test]
fn fuzz_hf_loading() {
    let fixture = repo_root().join("fixtures/bert");
    let weights = std::fs::read(fixture.join("model.safetensors")).expect("committed fixture");
    let config = std::fs::read(fixture.join("config.json")).expect("committed fixture");
    let r = run(
        "hf_config",
        &seeds(&repo_root(), "hf_config"),
        budget(),
        |b| {
            let dir = scratch("config.json", b)
                .parent()
                .expect("dir")
                .to_path_buf();
            std::fs::write(dir.join("model.safetensors"), &weights).expect("write");
            let w = remask::model::hf::read_hf(&dir, 0).map_err(msg)?;
            remask::model::model_from_params(w.config, w.params).map_err(msg)?;
            Ok(())
        },
    );
    report("hf_config", &r);
    let weight_seeds = vec![weights.clone()];
    let small = Budget {
        iterations: budget().iterations / 4,
        ..budget()
    };
    let r = run("hf_weights", &weight_seeds, small, |b| {
        let dir = scratch("model.safetensors", b)
            .parent()
            .expect("dir")
            .to_path_buf();
        std::fs::write(dir.join("config.json"), &config).expect("write");
        remask::infer::load(&dir, None).map_err(msg)?;
        Ok(())
    });
    report("hf_weights", &r);
}

/// Checkpoint loading. Each seed file replaces one file of a real checkpoint (named by the seed's
/// prefix, e.g. `config.json.seed`); the target loads it twice: as is (the CRC check must refuse a
/// change) and with the `DONE` marker re-sealed to the mutated file, so the parsers behind the CRC
/// check see the mutation too. A checkpoint that loads must also build its model and take its weights.
#[test]
fn fuzz_checkpoint_loading() {
    let root = repo_root();
    let base = root.join("fuzz/checkpoint");
    let names = [
        "DONE",
        "config.json",
        "run_config.json",
        "trainer_state.json",
        "model.safetensors",
        "optimizer.safetensors",
    ];
    for file in names {
        assert!(
            base.join(file).is_file(),
            "{} is missing (committed; see write_binary_seeds)",
            base.join(file).display()
        );
    }
    let corpus: Vec<Vec<u8>> = seeds(&root, "checkpoint");
    let r = run("checkpoint", &corpus, budget(), |b| {
        // The first line of a seed names the file it replaces; the rest is the content.
        let split = b.iter().position(|&c| c == b'\n').unwrap_or(b.len());
        let name = String::from_utf8_lossy(&b[..split]).trim().to_string();
        let content = b.get(split + 1..).unwrap_or_default();
        let dir = scratch("unused", b"").parent().expect("dir").join("ck");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        for f in names {
            std::fs::copy(base.join(f), dir.join(f)).expect("copy");
        }
        if names.contains(&name.as_str()) {
            std::fs::write(dir.join(&name), content).expect("write");
        }
        let first = remask::train::checkpoint::load(&dir);
        if name != "DONE"
            && names.contains(&name.as_str())
            && content != std::fs::read(base.join(&name)).expect("read").as_slice()
        {
            assert!(first.is_err(), "a changed {name} passed the CRC check");
            reseal(&dir, &names[1..]);
        }
        let ck = remask::train::checkpoint::load(&dir).map_err(msg)?;
        let mut model = remask::model::new_model(ck.model_config.clone(), 0).map_err(msg)?;
        ck.restore_params(model.as_mut()).map_err(msg)?;
        Ok(())
    });
    report("checkpoint", &r);
}

/// Rewrites `DONE` with the sizes and CRC-32C of the files as they are now.
fn reseal(dir: &Path, files: &[&str]) {
    let mut m = serde_json::Map::new();
    for f in files {
        let bytes = std::fs::read(dir.join(f)).expect("read");
        m.insert(
            f.to_string(),
            serde_json::json!({ "bytes": bytes.len(), "crc32c": crc32c::crc32c(&bytes) }),
        );
    }
    let done = serde_json::json!({ "step": 1, "files": m });
    std::fs::write(dir.join("DONE"), done.to_string()).expect("write DONE");
}

#[test]
fn fuzz_tokenizer_json() {
    let r = run(
        "tokenizer",
        &seeds(&repo_root(), "tokenizer"),
        budget(),
        |b| {
            let path = scratch("tokenizer.json", b);
            let text = String::from_utf8_lossy(b);
            // The data pipeline's loader (prepare --tokenizer) and the inference loader.
            let data = remask::data::tokenizer::TextTokenizer::from_json(&text, &path);
            let infer = remask::infer::InferTokenizer::load(&path);
            match (data, infer) {
                (Ok(t), Ok(i)) => {
                    t.encode(
                        "In the beginning 我们 [MASK] ünïcödé",
                        remask::masking::Language::Auto,
                    )
                    .map_err(msg)?;
                    i.encode("In the beginning 我们").map_err(msg)?;
                    Ok(())
                }
                (Err(e), _) | (_, Err(e)) => Err(msg(e)),
            }
        },
    );
    report("tokenizer", &r);
}

/// Writes the binary seeds (Parquet, safetensors, the checkpoint) from code, so they can be
/// regenerated; the text seeds are written by hand.
#[test]
#[ignore = "rewrites the committed binary seeds under fuzz/; run only to regenerate them"]
fn write_binary_seeds() {
    use std::sync::Arc;

    use parquet::data_type::{ByteArray, ByteArrayType};
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;

    let root = repo_root().join("fuzz");
    // Parquet: one string column `text`, three rows.
    let schema =
        Arc::new(parse_message_type("message m { required binary text (UTF8); }").unwrap());
    let path = root.join("corpus/parquet/three-rows.parquet");
    let file = std::fs::File::create(&path).unwrap();
    let mut w = SerializedFileWriter::new(file, schema, Default::default()).unwrap();
    let mut rg = w.next_row_group().unwrap();
    let mut col = rg.next_column().unwrap().unwrap();
    let rows: Vec<ByteArray> = ["In the beginning.", "我们 明天 去 学校。", "The river ran."]
        .iter()
        .map(|s| ByteArray::from(*s))
        .collect();
    col.typed::<ByteArrayType>()
        .write_batch(&rows, None, None)
        .unwrap();
    col.close().unwrap();
    rg.close().unwrap();
    w.close().unwrap();

    // safetensors: F32 and I64 tensors.
    use remask::tensor_file::Elements;
    let w = [0.5f32, -1.0, 2.0, 0.0, 1e-3, 7.0];
    remask::tensor_file::write(
        &root.join("corpus/safetensors/two-tensors.safetensors"),
        &[
            ("w", &[2, 3], Elements::F32(&w)),
            ("ids", &[2], Elements::I64(&[3, 4])),
        ],
    )
    .unwrap();

    // A real checkpoint of a tiny encoder.
    let text = "[model]\narch = \"encoder\"\nvocab_size = 12\nd_model = 8\nn_heads = 2\nn_layers = 1\nd_ff = 8\nmax_positions = 16\n\
                [budget]\nsteps = 1\n[run]\nseed = 1\noutput_dir = \"run\"\n";
    let cfg = remask::train::RunConfig::from_toml_str(text, &[]).unwrap();
    let model = remask::model::new_model(cfg.model.clone(), 1).unwrap();
    let n = model.params().len();
    let (m, v) = (vec![0.01f32; n], vec![0.001f32; n]);
    let state = remask::train::TrainerState {
        format_version: 1,
        step: 1,
        total_steps: 1,
        seed: 1,
        ..Default::default()
    };
    let data = remask::train::checkpoint::CheckpointData {
        model_config: model.config(),
        run_config: &cfg,
        tensors: model.tensors(),
        params: model.params(),
        m: &m,
        v: &v,
        state: &state,
    };
    let tmp = tempfile::tempdir().unwrap();
    let ck = remask::train::checkpoint::save(tmp.path(), &data, 1, &Default::default()).unwrap();
    let dest = root.join("checkpoint");
    std::fs::create_dir_all(&dest).unwrap();
    for f in [
        "DONE",
        "config.json",
        "run_config.json",
        "trainer_state.json",
        "model.safetensors",
        "optimizer.safetensors",
    ] {
        std::fs::copy(ck.join(f), dest.join(f)).unwrap();
        let mut seed = format!("{f}\n").into_bytes();
        seed.extend(std::fs::read(ck.join(f)).unwrap());
        std::fs::write(
            root.join("corpus/checkpoint").join(format!("{f}.seed")),
            seed,
        )
        .unwrap();
    }

    // tokenizer.json: a trained WordPiece and a trained BPE vocabulary.
    let texts = [
        "In the beginning was the Word.",
        "我们 明天 去 学校。",
        "The river ran over the land.",
    ];
    for (kind, name) in [
        (remask::data::config::TokenizerKind::Wordpiece, "wordpiece"),
        (remask::data::config::TokenizerKind::Bpe, "bpe"),
    ] {
        let cfg = remask::data::config::TokenizerConfig {
            kind,
            vocab_size: 120,
            ..Default::default()
        };
        let t = remask::data::tokenizer::TextTokenizer::train(&cfg, &texts).unwrap();
        std::fs::write(
            root.join("corpus/tokenizer").join(format!("{name}.json")),
            t.to_json().unwrap(),
        )
        .unwrap();
    }
}
