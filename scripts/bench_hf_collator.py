#!/usr/bin/env python3
"""Time Hugging Face transformers' DataCollatorForLanguageModeling (the baseline for `remask bench masking`).

Usage (from the repository root; needs torch + transformers; offline, nothing is downloaded):

    python3 scripts/bench_hf_collator.py                       # 16 x 128, 100 timed batches, 1 thread
    python3 scripts/bench_hf_collator.py --batches 200 --threads 2 --batch-size 16 --seq-len 128

Prints ONE JSON line, e.g.
    {"bench": "hf_data_collator_mlm", "mode": "lists", "tokens_per_s": ..., "ms_per_batch": ..., "modes": {...}}

Setup: a BERT-style WordPiece tokenizer (`BertTokenizerFast` over a generated vocab file of 8192
entries: [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4, then words) built in a temporary directory;
`DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=0.15)` with the default
80% [MASK] / 10% random / 10% kept rule. Each batch is 16 rows of 128 ids: [CLS], 126 random word
ids, [SEP] (no padding). Batches are generated before timing; the median over the timed batches
(after warm-up) is reported. Three ways of calling the collator are timed:

- `lists`  (headline): examples are plain Python lists of ids, as from a `datasets` map without
  `return_special_tokens_mask`. The collator stacks them and calls
  `tokenizer.get_special_tokens_mask` per row, then masks. This is the usual Trainer path.
- `dicts`: examples are dicts with `input_ids` and a precomputed `special_tokens_mask`
  (tokenizer output with `return_special_tokens_mask=True`); the collator pads via `tokenizer.pad`.
- `tensor`: `collator.torch_mask_tokens(ids[B,T], special_tokens_mask[B,T])` on ready tensors:
  the masking decision itself, without any collation.

tokens_per_s = B*T / median seconds per batch (all tokens of the batch, masked or not).
Note that HF draws random replacements from the whole vocabulary (special tokens included),
unlike remask, and uses torch's global (or a per-collator) RNG, not a keyed one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import transformers
from transformers import BertTokenizerFast, DataCollatorForLanguageModeling

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_tokenizer(vocab_size: int, tmp: Path) -> BertTokenizerFast:
    words = [f"w{i}" for i in range(vocab_size - len(SPECIALS))]
    vocab_file = tmp / "vocab.txt"
    vocab_file.write_text("\n".join(SPECIALS + words) + "\n")
    try:
        # transformers 5.x: BertTokenizerFast is BertTokenizer (tokenizers backend) and takes `vocab`.
        tok = BertTokenizerFast(vocab=str(vocab_file), do_lower_case=True)
    except TypeError:
        tok = BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True)  # transformers 4.x
    if len(tok) != vocab_size:
        tok = BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True)
    assert len(tok) == vocab_size, (len(tok), vocab_size)
    assert [tok.pad_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id] == [0, 2, 3, 4]
    return tok


def make_rows(g: torch.Generator, b: int, t: int, vocab: int, cls: int, sep: int) -> torch.Tensor:
    ids = torch.randint(len(SPECIALS), vocab, (b, t), generator=g)
    ids[:, 0] = cls
    ids[:, -1] = sep
    return ids


def time_mode(fn, inputs: list, warmup: int) -> list[float]:
    times = []
    for i, x in enumerate(inputs):
        t0 = time.perf_counter()
        out = fn(x)
        dt = time.perf_counter() - t0
        assert out["labels"].shape == out["input_ids"].shape
        if i >= warmup:
            times.append(dt)
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--batches", type=int, default=100, help="timed batches per mode (>= 50 recommended)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.batches < 1 or args.batch_size < 1 or args.seq_len < 3:
        print("error: --batches, --batch-size must be >= 1 and --seq-len >= 3", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    with tempfile.TemporaryDirectory() as d:
        tok = build_tokenizer(args.vocab, Path(d))
    collator = DataCollatorForLanguageModeling(tok, mlm=True, mlm_probability=0.15)

    g = torch.Generator().manual_seed(args.seed)
    n = args.batches + args.warmup
    batches = [make_rows(g, args.batch_size, args.seq_len, args.vocab, tok.cls_token_id, tok.sep_token_id)
               for _ in range(n)]
    special = torch.zeros(args.batch_size, args.seq_len, dtype=torch.long)
    special[:, 0] = 1
    special[:, -1] = 1

    lists_in = [[row.tolist() for row in b] for b in batches]
    dicts_in = [[{"input_ids": row.tolist(), "special_tokens_mask": special[0].tolist()} for row in b]
                for b in batches]
    tensor_in = [b.clone() for b in batches]

    def tensor_fn(x):
        ids, labels = collator.torch_mask_tokens(x, special_tokens_mask=special)
        return {"input_ids": ids, "labels": labels}

    tokens = args.batch_size * args.seq_len
    modes = {}
    masked_fraction = None
    for name, fn, inputs in [("lists", collator, lists_in), ("dicts", collator, dicts_in),
                             ("tensor", tensor_fn, tensor_in)]:
        times = time_mode(fn, inputs, args.warmup)
        med = statistics.median(times)
        modes[name] = {
            "ms_per_batch": round(med * 1e3, 4),
            "tokens_per_s": round(tokens / med, 1),
            "ms_p10": round(sorted(times)[len(times) // 10] * 1e3, 4),
            "ms_p90": round(sorted(times)[(len(times) * 9) // 10] * 1e3, 4),
        }
        if name == "lists":
            out = collator(lists_in[0])
            masked_fraction = float((out["labels"] != -100).float().mean())

    print(json.dumps({
        "bench": "hf_data_collator_mlm",
        "mode": "lists",
        "tokens_per_s": modes["lists"]["tokens_per_s"],
        "ms_per_batch": modes["lists"]["ms_per_batch"],
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "vocab": args.vocab,
        "mlm_probability": 0.15,
        "timed_batches": args.batches,
        "warmup_batches": args.warmup,
        "threads": args.threads,
        "statistic": "median",
        "masked_fraction_first_batch": round(masked_fraction, 4),
        "modes": modes,
        "torch": torch.__version__.split("+")[0],
        "transformers": transformers.__version__,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
