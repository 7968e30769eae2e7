#!/usr/bin/env python3
"""Writes fixtures/bert-pll/: a tiny random-weight BertForMaskedLM with a WordPiece tokenizer.json,
and expected.json with transformers' pseudo-log-likelihood (PLL) of every sentence of
fixtures/minimal-pairs/*.jsonl and the resulting accuracy. remask's test
(`crates/remask-cli/tests/minimal_pairs_cli.rs`) runs `remask eval --minimal-pairs` on that directory
and must match every score within 1e-3 and the accuracy exactly.

    python3 scripts/gen_minimal_pairs_fixture.py          # rewrite the fixture, then check it
    python3 scripts/gen_minimal_pairs_fixture.py --check  # only recompute and compare

PLL (Salazar et al., 2020): for each token that is not special, mask it alone and add
log softmax(logits)[true token] at that position. Needs torch, transformers and tokenizers (CPU,
float32, eager attention, one thread); CI never runs this.
"""

import argparse
import json
import math
import os
import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

ROOT = Path(__file__).resolve().parent.parent
PAIRS = ROOT / "fixtures" / "minimal-pairs"
OUT = ROOT / "fixtures" / "bert-pll"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def read_pairs():
    """(file name, 1-based line, uid, good, bad) in remask's order: files by name, lines in order."""
    out = []
    for f in sorted(PAIRS.glob("*.jsonl")):
        for i, line in enumerate(f.read_text().splitlines()):
            if not line.strip():
                continue
            d = json.loads(line)
            out.append((f.name, i + 1, d.get("UID", f.stem), d["sentence_good"], d["sentence_bad"]))
    return out


def build_tokenizer(pairs) -> Tokenizer:
    """An uncased BERT-style WordPiece tokenizer, deliberately small (vocab 120), so words split."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=120, special_tokens=SPECIALS, min_frequency=1)
    texts = [s for p in pairs for s in (p[3], p[4])] * 3
    tok.train_from_iterator(texts, trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return tok


def pll(model, tok: Tokenizer, text: str) -> float:
    enc = tok.encode(text)
    ids = torch.tensor(enc.ids)
    positions = [i for i, s in enumerate(enc.special_tokens_mask) if s == 0]
    batch = ids.repeat(len(positions), 1)
    mask_id = tok.token_to_id("[MASK]")
    for row, p in enumerate(positions):
        batch[row, p] = mask_id
    with torch.no_grad():
        logits = model(input_ids=batch, attention_mask=torch.ones_like(batch)).logits.double()
    logp = torch.log_softmax(logits, dim=-1)
    return float(sum(logp[row, p, ids[p]] for row, p in enumerate(positions)))


def expected(model, tok, pairs):
    rows = []
    for f, line, uid, good, bad in pairs:
        g, b = pll(model, tok, good), pll(model, tok, bad)
        rows.append({"file": f, "line": line, "uid": uid, "score_good": g, "score_bad": b, "correct": g > b})
    by = {}
    for r in rows:
        c, n = by.get(r["uid"], (0, 0))
        by[r["uid"]] = (c + int(r["correct"]), n + 1)
    return {
        "accuracy": sum(r["correct"] for r in rows) / len(rows),
        "pairs": len(rows),
        "by_uid": {k: {"accuracy": c / n, "pairs": n} for k, (c, n) in sorted(by.items())},
        "scores": rows,
    }


def write():
    torch.manual_seed(0)
    pairs = read_pairs()
    tok = build_tokenizer(pairs)
    OUT.mkdir(parents=True, exist_ok=True)
    tok.save(str(OUT / "tokenizer.json"))
    cfg = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        # Larger than BERT's 0.02, so a random model's predictions are far from uniform and pairs
        # differ by more than float noise.
        initializer_range=0.3,
        pad_token_id=0,
        attn_implementation="eager",
    )
    model = BertForMaskedLM(cfg).eval()
    model.save_pretrained(OUT, safe_serialization=True)
    for extra in ["generation_config.json"]:
        if (OUT / extra).exists():
            os.remove(OUT / extra)
    exp = expected(model, tok, pairs)
    (OUT / "expected.json").write_text(json.dumps(exp, indent=1) + "\n")
    print(f"wrote {OUT}: {exp['pairs']} pairs, accuracy {exp['accuracy']:.4f}")


def check() -> int:
    pairs = read_pairs()
    tok = Tokenizer.from_file(str(OUT / "tokenizer.json"))
    hf_tok = PreTrainedTokenizerFast(tokenizer_file=str(OUT / "tokenizer.json"))
    model = BertForMaskedLM.from_pretrained(OUT, attn_implementation="eager").eval()
    exp = json.loads((OUT / "expected.json").read_text())
    got = expected(model, tok, pairs)
    worst = max(abs(a[k] - b[k]) for a, b in zip(got["scores"], exp["scores"]) for k in ("score_good", "score_bad"))
    margin = min(abs(r["score_good"] - r["score_bad"]) for r in exp["scores"])
    same_ids = all(hf_tok(s)["input_ids"] == tok.encode(s).ids for p in pairs for s in (p[3], p[4]))
    print(f"max |PLL - expected| = {worst:.2e}; smallest |good - bad| = {margin:.3f}; "
          f"accuracy {got['accuracy']:.4f} (expected {exp['accuracy']:.4f}); transformers' tokenizer gives the same ids: {same_ids}")
    ok = worst < 1e-5 and got["accuracy"] == exp["accuracy"] and same_ids and margin > 1e-2
    return 0 if ok else 1


if __name__ == "__main__":
    torch.set_num_threads(1)
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    if not a.check:
        write()
    sys.exit(check())
