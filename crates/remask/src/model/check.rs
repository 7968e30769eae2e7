//! Validation of a batch against a model's config, so that no kernel ever sees an out-of-range id.
//! Errors name the batch field and the bound it broke.

use super::config::{Arch, ModelConfig};
use crate::{Batch, Error, Result, IGNORE_INDEX};

fn check_ids(field: &str, ids: &[u32], bound: usize, what: &str) -> Result<()> {
    if let Some((i, &id)) = ids.iter().enumerate().find(|(_, &id)| id as usize >= bound) {
        return Err(Error::shape(
            format!("{field}[{i}]"),
            format!("< {what} ({bound})"),
            id,
        ));
    }
    Ok(())
}

fn check_labels(field: &str, labels: &[i32], vocab: usize) -> Result<()> {
    if let Some((i, &l)) = labels
        .iter()
        .enumerate()
        .find(|(_, &l)| l != IGNORE_INDEX && (l < 0 || l as usize >= vocab))
    {
        return Err(Error::shape(
            format!("{field}[{i}]"),
            format!("{IGNORE_INDEX} or in [0, vocab_size = {vocab})"),
            l,
        ));
    }
    Ok(())
}

/// Checks every array of `batch` for the model described by `cfg`.
pub fn check_batch(cfg: &ModelConfig, batch: &Batch) -> Result<()> {
    batch.validate()?;
    let v = cfg.vocab_size;
    check_ids("batch.input_ids", &batch.input_ids, v, "vocab_size")?;
    check_ids(
        "batch.positions",
        &batch.positions,
        cfg.max_positions,
        "model.max_positions",
    )?;
    if cfg.type_vocab_size > 0 {
        check_ids(
            "batch.token_type_ids",
            &batch.token_type_ids,
            cfg.type_vocab_size,
            "model.type_vocab_size",
        )?;
    }
    if cfg.arch == Arch::EncoderDecoder {
        let d = batch.decoder.as_ref().ok_or_else(|| {
            Error::config(
                "batch.decoder",
                "an encoder-decoder model needs the decoder side of the batch (targets)",
            )
        })?;
        if d.seq_len > cfg.max_positions {
            return Err(Error::shape(
                "batch.decoder.seq_len",
                format!("<= model.max_positions ({})", cfg.max_positions),
                d.seq_len,
            ));
        }
        if let Some(&l) = d.lengths.iter().find(|&&l| l as usize > d.seq_len) {
            return Err(Error::shape(
                "batch.decoder.lengths",
                format!("<= {}", d.seq_len),
                l,
            ));
        }
        check_ids("batch.decoder.input_ids", &d.input_ids, v, "vocab_size")?;
        check_labels("batch.decoder.labels", &d.labels, v)?;
    } else {
        check_labels("batch.labels", &batch.labels, v)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(b: usize, t: usize) -> Batch {
        Batch::new(b, t)
            .with_input_ids(vec![1; b * t])
            .with_single_documents(vec![t as u32; b])
    }

    #[test]
    fn errors_name_the_field_and_bound() {
        let cfg = ModelConfig {
            vocab_size: 10,
            max_positions: 4,
            ..ModelConfig::default()
        };
        assert!(check_batch(&cfg, &batch(2, 4)).is_ok());
        let mut b = batch(2, 4);
        b.input_ids[3] = 10;
        let e = check_batch(&cfg, &b).unwrap_err().to_string();
        assert!(
            e.contains("batch.input_ids[3]") && e.contains("vocab_size (10)"),
            "{e}"
        );
        let e = check_batch(&cfg, &batch(1, 5)).unwrap_err().to_string();
        assert!(
            e.contains("batch.positions") && e.contains("max_positions (4)"),
            "{e}"
        );
        let mut b = batch(1, 4);
        b.labels[1] = -3;
        assert!(check_batch(&cfg, &b)
            .unwrap_err()
            .to_string()
            .contains("batch.labels[1]"));
        let cfg = ModelConfig {
            arch: Arch::EncoderDecoder,
            n_decoder_layers: 1,
            ..cfg
        };
        assert!(check_batch(&cfg, &batch(1, 4))
            .unwrap_err()
            .to_string()
            .contains("batch.decoder"));
    }
}
