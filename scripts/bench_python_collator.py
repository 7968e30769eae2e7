#!/usr/bin/env python3
"""remask.MaskingCollator against transformers' DataCollatorForLanguageModeling, side by side.

Per B x T batch (default 16 x 128, the issue's), including conversion to torch tensors
(`return_tensors="pt"` for both): the same tokenizer (BERT-style WordPiece, 8192 entries, built as
in scripts/bench_hf_collator.py), the same rows ([CLS], T-2 random word ids, [SEP]), the same rate
(0.15, 80/10/10). The rows are given to both collators in three forms, each a mode:

- `lists`: plain Python lists of ids (a `datasets` map without a format);
- `numpy`: int64 NumPy rows (`.with_format("numpy")`); HF is timed on these rows too, and on the
  lists (`hf_lists_ms`, the ratio the README quoted before);
- `dicts`: tokenizer-style dicts of lists (`input_ids`, `token_type_ids`, `attention_mask`), as a
  Trainer passes them; HF pads them with `tokenizer.pad`.

Calls alternate batch by batch (forward, then reversed order), so load on the shared machine falls
on both; each figure is a median, each ratio HF / remask of medians. Needs torch + transformers and
the remask wheel (`pip install ./python`). Prints one JSON line.

    python3 scripts/bench_python_collator.py [--batches 300] [--threads 1] [--batch-size 16] [--strategy token]
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
from transformers import DataCollatorForLanguageModeling

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_hf_collator import build_tokenizer, make_rows  # noqa: E402

import remask  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--batches", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (remask: RAYON_NUM_THREADS)")
    ap.add_argument("--strategy", default="token")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as d:
        tok = build_tokenizer(args.vocab, Path(d))
    hf = DataCollatorForLanguageModeling(tok, mlm=True, mlm_probability=0.15)
    rm = remask.MaskingCollator(tok, strategy=args.strategy, mlm_probability=0.15, seed=0, return_tensors="pt")
    g = torch.Generator().manual_seed(0)
    n = args.batches + args.warmup
    raw = [make_rows(g, args.batch_size, args.seq_len, args.vocab, 2, 3) for _ in range(n)]
    zeros, ones = [0] * args.seq_len, [1] * args.seq_len
    inputs = {
        "lists": [[row.tolist() for row in b] for b in raw],
        "numpy": [[row.numpy() for row in b] for b in raw],
        "dicts": [[{"input_ids": row.tolist(), "token_type_ids": list(zeros), "attention_mask": list(ones)} for row in b] for b in raw],
    }
    # (name, collator, input mode): every call of one batch index, alternating in order.
    calls = [(f"{who}_{mode}", fn, mode) for mode in inputs for who, fn in (("hf", hf), ("remask", rm))]
    times = {name: [] for name, _, _ in calls}
    for i in range(n):
        for name, fn, mode in calls if i % 2 == 0 else calls[::-1]:
            x = inputs[mode][i]
            t0 = time.perf_counter()
            out = fn(x)
            dt = time.perf_counter() - t0
            assert isinstance(out["labels"], torch.Tensor) and out["labels"].shape == (args.batch_size, args.seq_len)
            if i >= args.warmup:
                times[name].append(dt)
    ms = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    modes = {
        mode: {"hf_ms": round(ms[f"hf_{mode}"], 4), "remask_ms": round(ms[f"remask_{mode}"], 4), "ratio": round(ms[f"hf_{mode}"] / ms[f"remask_{mode}"], 2)}
        for mode in inputs
    }
    modes["numpy"]["hf_lists_ms"] = round(ms["hf_lists"], 4)
    modes["numpy"]["ratio_vs_hf_lists"] = round(ms["hf_lists"] / ms["remask_numpy"], 2)
    out_rm = rm(inputs["lists"][0])
    print(json.dumps({
        "bench": "python_collator_vs_hf",
        "batch_size": args.batch_size, "seq_len": args.seq_len, "vocab": args.vocab, "strategy": args.strategy,
        "modes": modes,
        "hf_ms_per_batch": modes["lists"]["hf_ms"], "remask_ms_per_batch": modes["lists"]["remask_ms"],
        "speedup": modes["lists"]["ratio"],
        "remask_numpy_rows_ms_per_batch": modes["numpy"]["remask_ms"], "speedup_numpy_rows": modes["numpy"]["ratio_vs_hf_lists"],
        "remask_masked_fraction": round(float((out_rm["labels"] != -100).float().mean()), 4),
        "timed_batches": args.batches, "statistic": "median, alternating", "threads": args.threads,
        "torch": torch.__version__.split("+")[0], "transformers": transformers.__version__,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
