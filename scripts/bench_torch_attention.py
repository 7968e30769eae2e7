"""Times PyTorch's scaled_dot_product_attention forward + backward on the shapes of
`remask bench attention`, so the fused kernel can be compared with it side by side, as a ratio, in
the same session (the machine is shared: absolute times mean little).

    python3 scripts/bench_torch_attention.py --mask causal --seq 1024 --threads 2
    remask bench attention --mask causal --seq 1024 --threads 2

Masks: causal uses is_causal=True (PyTorch's fused CPU flash kernel); padding, document, sliding and
prefix pass a dense boolean attn_mask built like remask's bench (the path a user of a custom mask
gets). Prints JSON with the fastest fwd, bwd and fwd+bwd times over --iters rounds after a warm-up.
For benchmarks only: torch is never a dependency of remask's build, tests or CI.
"""
import argparse, json, time

import torch
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--mask", default="causal", choices=["padding", "causal", "document", "sliding", "prefix"])
p.add_argument("--seq", type=int, default=1024)
p.add_argument("--batch", type=int, default=4)
p.add_argument("--heads", type=int, default=4)
p.add_argument("--head-dim", type=int, default=64)
p.add_argument("--window", type=int, default=128)
p.add_argument("--docs", type=int, default=4)
p.add_argument("--threads", type=int, default=0)
p.add_argument("--iters", type=int, default=5)
a = p.parse_args()
if a.threads:
    torch.set_num_threads(a.threads)
B, H, T, D = a.batch, a.heads, a.seq, a.head_dim
g = torch.Generator().manual_seed(0)
q, k, v, dout = (torch.randn(B, H, T, D, generator=g) for _ in range(4))
i = torch.arange(T)[:, None]
j = torch.arange(T)[None, :]
mask, is_causal = None, False
if a.mask == "causal":
    is_causal = True
elif a.mask == "document":
    # Equal-length documents, bidirectional inside each (remask bench's default).
    doc = torch.arange(T) * a.docs // T
    mask = (doc[:, None] == doc[None, :]).expand(B, 1, T, T)
elif a.mask == "sliding":
    mask = ((i - j).abs() < a.window).expand(B, 1, T, T)
elif a.mask == "prefix":
    mask = ((j <= i) | (j < T // 2)).expand(B, 1, T, T)
else:  # padding: row b keeps T - b·T/(2B) keys
    lens = torch.tensor([T - b * T // (2 * B) for b in range(B)])
    mask = (torch.arange(T)[None, :] < lens[:, None])[:, None, None, :].expand(B, 1, T, T)


def step():
    qq, kk, vv = (x.detach().requires_grad_() for x in (q, k, v))
    t0 = time.perf_counter()
    y = F.scaled_dot_product_attention(qq, kk, vv, attn_mask=mask, is_causal=is_causal)
    t1 = time.perf_counter()
    y.backward(dout)
    t2 = time.perf_counter()
    return (t1 - t0) * 1e3, (t2 - t1) * 1e3


step()
fwd, bwd = float("inf"), float("inf")
for _ in range(a.iters):
    f, b = step()
    fwd, bwd = min(fwd, f), min(bwd, b)
print(json.dumps({"mask": a.mask, "seq": T, "batch": B, "heads": H, "head_dim": D, "threads": torch.get_num_threads(),
                  "torch": torch.__version__, "fwd_ms": fwd, "bwd_ms": bwd, "fwd_bwd_ms": fwd + bwd}))
