"""Drop-in use with transformers (marker `torch`: needs torch and transformers): the same
arguments and output as DataCollatorForLanguageModeling, and a Trainer run with MaskingCallback."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.torch


def bert_tokenizer(tmp_path):
    from transformers import BertTokenizerFast

    words = [f"w{i}" for i in range(200)]
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words) + "\n")
    try:
        return BertTokenizerFast(vocab=str(vocab))
    except TypeError:
        return BertTokenizerFast(vocab_file=str(vocab))


def test_same_arguments_and_outputs_as_hf_collator(tmp_path):
    import torch
    from transformers import DataCollatorForLanguageModeling

    import remask

    tok = bert_tokenizer(tmp_path)
    kw = dict(mlm=True, mlm_probability=0.3, mask_replace_prob=0.8, random_replace_prob=0.1, pad_to_multiple_of=8, return_tensors="pt")
    hf = DataCollatorForLanguageModeling(tok, **kw)
    rm = remask.MaskingCollator(tok, seed=0, **kw)
    feats = [tok(" ".join(f"w{(i * 7 + j) % 200}" for j in range(5 + 3 * i))) for i in range(6)]
    a, b = hf([dict(f) for f in feats]), rm([dict(f) for f in feats])
    for k in ("input_ids", "labels", "attention_mask"):
        assert a[k].shape == b[k].shape and a[k].dtype == b[k].dtype, k
    assert torch.equal(a["attention_mask"], b["attention_mask"])
    unmasked = b["labels"] == -100
    # Where nothing is masked, both give the padded input.
    pad = tok.pad([dict(f) for f in feats], pad_to_multiple_of=8, return_tensors="pt")["input_ids"]
    assert torch.equal(b["input_ids"][unmasked], pad[unmasked])
    assert torch.equal(b["labels"][~unmasked], pad[~unmasked])
    assert 0.2 < float((~unmasked).sum()) / float(b["attention_mask"].sum() - 2 * len(feats)) < 0.4


def test_trainer_with_callback(tmp_path):
    pytest.importorskip("accelerate", reason="transformers' Trainer needs accelerate")  # reported as a skip, with the reason
    import torch
    from transformers import BertConfig, BertForMaskedLM, Trainer, TrainingArguments

    import remask
    from remask.hf import MaskingCallback

    tok = bert_tokenizer(tmp_path)
    ds = [dict(tok(" ".join(f"w{(i * 5 + j) % 200}" for j in range(12))), idx=i) for i in range(16)]
    collator = remask.MaskingCollator(tok, strategy="whole-word", seed=0, return_tensors="pt")
    seen = []
    inner = collator.__call__

    def spy(features, return_tensors=None):
        seen.append(collator.epoch)
        return inner(features, return_tensors)

    model = BertForMaskedLM(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64))
    args = TrainingArguments(str(tmp_path / "out"), num_train_epochs=2, per_device_train_batch_size=8, remove_unused_columns=False,
                             report_to=[], save_strategy="no", logging_strategy="no", use_cpu=True)
    trainer = Trainer(model=model, args=args, train_dataset=ds, data_collator=spy, callbacks=[MaskingCallback(collator)])
    out = trainer.train()
    assert torch.isfinite(torch.tensor(out.training_loss))
    assert seen == [0, 0, 1, 1]
