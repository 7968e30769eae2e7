#!/usr/bin/env python3
"""remask.torch.flex_attention against torch.nn.functional.scaled_dot_product_attention with the
dense boolean mask, forward + backward, side by side (alternating calls), on CPU float32.

Shapes as `remask bench attention`: B=4, H=4, D=64; `document`: 4 documents per 512-token row;
`sliding`: window 128 (centred) over T=2048. Prints one JSON line per mask with the fastest
fwd+bwd time of each over --iters rounds and their ratio. Needs torch and the remask wheel.

    python3 scripts/bench_python_attention.py --threads 2 [--iters 5]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

from remask import BlockMask
from remask.torch import flex_attention


def case(name, b, seq, docs, window):
    if name == "document":
        ids = np.repeat(np.arange(docs), seq // docs)[None, :].repeat(b, 0)
        return BlockMask.document(ids), seq
    return BlockMask.sliding(seq, window), seq


def fwd_bwd(fn, q, k, v, g):
    for x in (q, k, v):
        x.grad = None
    t0 = time.perf_counter()
    out = fn(q, k, v)
    (out * g).sum().backward()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--masks", default="document,sliding")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    for name in a.masks.split(","):
        seq = 512 if name == "document" else 2048
        mask, t = case(name, a.batch, seq, 4, 128)
        dense = torch.from_numpy(mask.to_dense(batch=a.batch)).unsqueeze(1)
        q, k, v = (torch.randn(a.batch, a.heads, t, a.head_dim, requires_grad=True) for _ in range(3))
        g = torch.randn(a.batch, a.heads, t, a.head_dim)
        ours = lambda q, k, v: flex_attention(q, k, v, mask)
        theirs = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=dense)
        fwd_bwd(ours, q, k, v, g), fwd_bwd(theirs, q, k, v, g)  # warm-up
        t_ours, t_theirs = [], []
        for i in range(a.iters):
            pair = ((ours, t_ours), (theirs, t_theirs)) if i % 2 == 0 else ((theirs, t_theirs), (ours, t_ours))
            for fn, ts in pair:
                ts.append(fwd_bwd(fn, q, k, v, g))
        print(json.dumps({
            "bench": "python_flex_attention_vs_sdpa", "mask": name, "batch": a.batch, "heads": a.heads, "seq": t,
            "head_dim": a.head_dim, "threads": a.threads, "sparsity": round(mask.sparsity(batch=a.batch), 4),
            "remask_ms": round(min(t_ours) * 1e3, 2), "sdpa_ms": round(min(t_theirs) * 1e3, 2),
            "sdpa_over_remask": round(min(t_theirs) / min(t_ours), 2), "statistic": "min, alternating",
            "torch": torch.__version__.split("+")[0],
        }))


if __name__ == "__main__":
    main()
