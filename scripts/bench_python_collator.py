#!/usr/bin/env python3
"""remask.MaskingCollator against transformers' DataCollatorForLanguageModeling, side by side.

Per 16 x 128 batch, including conversion to torch tensors (`return_tensors="pt"` for both): the
same tokenizer (BERT-style WordPiece, 8192 entries, built as in scripts/bench_hf_collator.py), the
same features (plain Python lists of ids: [CLS], 126 random word ids, [SEP]; remask is also timed
on the same rows as int64 NumPy arrays), the same rate (0.15, 80/10/10). Rounds alternate HF and remask batch by batch, so load on the shared machine falls on
both; the figure is the ratio of medians, per round set. Needs torch + transformers and the remask
wheel (`pip install ./python`). Prints one JSON line.

    python3 scripts/bench_python_collator.py [--batches 300] [--threads 1]
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
    # Features as a Trainer gets them from `datasets`: plain lists (`lists`), or int64 NumPy rows
    # (`numpy`: a dataset with .with_format("numpy")); HF's collator gets the lists in both modes.
    batches = [[row.tolist() for row in b] for b in raw]
    np_batches = [[row.numpy() for row in b] for b in raw]
    t_hf, t_rm, t_np = [], [], []
    for i, (b, bn) in enumerate(zip(batches, np_batches)):
        calls = [(hf, b, t_hf), (rm, b, t_rm), (rm, bn, t_np)]
        for fn, x, times in calls if i % 2 == 0 else calls[::-1]:
            t0 = time.perf_counter()
            out = fn(x)
            dt = time.perf_counter() - t0
            assert isinstance(out["labels"], torch.Tensor) and out["labels"].shape == (args.batch_size, args.seq_len)
            if i >= args.warmup:
                times.append(dt)
    hf_ms, rm_ms, np_ms = (statistics.median(t) * 1e3 for t in (t_hf, t_rm, t_np))
    out_rm = rm(batches[0])
    print(json.dumps({
        "bench": "python_collator_vs_hf",
        "batch_size": args.batch_size, "seq_len": args.seq_len, "vocab": args.vocab, "strategy": args.strategy,
        "hf_ms_per_batch": round(hf_ms, 4), "remask_ms_per_batch": round(rm_ms, 4),
        "speedup": round(hf_ms / rm_ms, 2),
        "remask_numpy_rows_ms_per_batch": round(np_ms, 4), "speedup_numpy_rows": round(hf_ms / np_ms, 2),
        "remask_masked_fraction": round(float((out_rm["labels"] != -100).float().mean()), 4),
        "timed_batches": args.batches, "statistic": "median, alternating", "threads": args.threads,
        "torch": torch.__version__.split("+")[0], "transformers": transformers.__version__,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
