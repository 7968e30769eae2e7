#!/usr/bin/env python3
"""The PyTorch side of `remask bench train`: one training step (zero grads, forward, backward, AdamW)
of the same Transformer on the same kind of synthetic batch, timed, printed as one JSON line with the
same fields (tokens/s, model GFLOP per step by the same formula, achieved GFLOP/s).

Run it beside remask in the same session, alternating the two, and compare ratios:

    remask bench train --precision bf16            # remask, mixed precision
    python3 scripts/torch_reference.py --head gathered --bf16

Needs only `pip install torch` (CPU wheels suffice). Options:

  --task mlm|clm      encoder with the loss on masked positions / decoder with next-token loss
  --head all|gathered vocabulary projection on every position (HF BertForMaskedLM) or only on the
                      positions that carry a label (the original BERT code; what remask does)
  --mask padding|causal|document
                      random row lengths in [T/2, T] with a key padding mask / causal (SDPA is_causal)
                      / four packed documents per row, attention inside each (a dense boolean mask)
  --bf16              torch.autocast(bfloat16) on the CPU: bf16 matmuls with f32 master weights,
                      what a PyTorch user on an AVX-512-BF16 or AMX machine turns on for speed
  --compile           torch.compile the step
  sizes: --vocab --d-model --heads --layers --ffn --seq --batch --mask-rate; --threads --steps --warmup
"""
import argparse
import json
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=["mlm", "clm"], default="mlm")
    p.add_argument("--head", choices=["all", "gathered"], default="all")
    p.add_argument("--mask", choices=["padding", "causal", "document"], default="padding")
    sizes = {"vocab": 8192, "d-model": 256, "heads": 4, "layers": 4, "ffn": 1024, "seq": 128, "batch": 16,
             "threads": 2, "steps": 20, "warmup": 5}
    for name, default in sizes.items():
        p.add_argument(f"--{name}", type=int, default=default)
    p.add_argument("--mask-rate", type=float, default=0.15)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--compile", action="store_true")
    return p.parse_args()


class Layer(nn.Module):
    """Pre-LN block: x + attn(LN(x)), then x + FFN(LN(x)); fused qkv projection, SDPA attention."""

    def __init__(self, c, heads, ffn):
        super().__init__()
        self.heads = heads
        self.norm_attn, self.norm_ffn = nn.LayerNorm(c), nn.LayerNorm(c)
        self.qkv, self.out = nn.Linear(c, 3 * c), nn.Linear(c, c)
        self.up, self.down = nn.Linear(c, ffn), nn.Linear(ffn, c)

    def forward(self, x, attn_mask, is_causal):
        b, t, c = x.shape
        qkv = self.qkv(self.norm_attn(x)).view(b, t, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal)
        x = x + self.out(a.transpose(1, 2).reshape(b, t, c))
        return x + self.down(F.gelu(self.up(self.norm_ffn(x))))


class Net(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.gathered = a.head == "gathered"
        self.tokens, self.positions = nn.Embedding(a.vocab, a.d_model), nn.Embedding(a.seq, a.d_model)
        self.layers = nn.ModuleList(Layer(a.d_model, a.heads, a.ffn) for _ in range(a.layers))
        self.norm, self.proj = nn.LayerNorm(a.d_model), nn.Linear(a.d_model, a.vocab)

    def forward(self, ids, labels, attn_mask, is_causal):
        x = self.tokens(ids) + self.positions(torch.arange(ids.shape[1]))
        for layer in self.layers:
            x = layer(x, attn_mask, is_causal)
        h = self.norm(x).flatten(0, 1)
        y = labels.flatten()
        if self.gathered:
            keep = y != -100
            return F.cross_entropy(self.proj(h[keep]), y[keep])
        return F.cross_entropy(self.proj(h), y, ignore_index=-100)


def synthetic_batch(a):
    """Token ids in [5, V) (0 = padding, 4 = [MASK]), labels -100 where no loss; an attention mask."""
    gen = torch.Generator().manual_seed(0)
    b, t = a.batch, a.seq
    tokens = torch.randint(5, a.vocab, (b, t), generator=gen)
    real = torch.ones(b, t, dtype=torch.bool)
    attn_mask, is_causal = None, False
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    if a.mask == "padding":
        lengths = torch.randint(t // 2, t + 1, (b,), generator=gen)
        real = torch.arange(t)[None, :] < lengths[:, None]
        attn_mask = real[:, None, None, :]
        if a.task == "clm":
            attn_mask = attn_mask & causal
    elif a.mask == "causal":
        is_causal = True
    else:
        doc = (torch.arange(t) * 4 // t).expand(b, t)
        attn_mask = (doc[:, :, None] == doc[:, None, :])[:, None]
        if a.task == "clm":
            attn_mask = attn_mask & causal
    if a.task == "mlm":
        chosen = (torch.rand(b, t, generator=gen) < a.mask_rate) & real
        labels = torch.where(chosen, tokens, -100)
        ids = torch.where(chosen, 4, tokens)
    else:
        ids = tokens
        labels = torch.cat([tokens[:, 1:], torch.full((b, 1), -100)], dim=1)
        labels[~real] = -100
    ids = torch.where(real, ids, 0)
    return ids, labels, attn_mask, is_causal


def model_gflop(a, labelled):
    """6 × matmul parameters × tokens for the blocks, the head on the rows it runs on, and attention
    (4·T²·C per sequence and layer forward, × 3 with the backward; masks not discounted)."""
    tokens = a.batch * a.seq
    blocks = 6 * a.layers * (4 * a.d_model ** 2 + 2 * a.d_model * a.ffn) * tokens
    head = 6 * a.d_model * a.vocab * (labelled if a.head == "gathered" else tokens)
    attention = 3 * 4 * a.batch * a.seq ** 2 * a.d_model * a.layers
    return (blocks + head + attention) / 1e9


def main():
    a = parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    ids, labels, attn_mask, is_causal = synthetic_batch(a)
    net = Net(a)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=0.01)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            loss = net(ids, labels, attn_mask, is_causal)
        loss.backward()
        opt.step()
        return loss

    if a.compile:
        step = torch.compile(step)
    times = []
    for i in range(a.warmup + a.steps):
        start = time.perf_counter()
        step().item()
        if i >= a.warmup:
            times.append(1e3 * (time.perf_counter() - start))
    times.sort()
    median = times[len(times) // 2]
    labelled = int((labels != -100).sum())
    gflop = model_gflop(a, labelled)
    tokens = a.batch * a.seq
    tags = ("+compile" if a.compile else "") + ("+bf16" if a.bf16 else "")
    print(json.dumps({
        "impl": f"torch-{torch.__version__}{tags}", "task": a.task, "head": a.head, "mask": a.mask,
        "threads": torch.get_num_threads(), "params": sum(p.numel() for p in net.parameters()),
        "tokens_per_step": tokens, "labeled_positions": labelled,
        "median_ms": round(median, 2), "min_ms": round(times[0], 2), "max_ms": round(times[-1], 2),
        "tokens_per_s": round(tokens / (median / 1e3)), "model_gflop_per_step": round(gflop, 2),
        "achieved_gflops": round(gflop / (median / 1e3), 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }))


if __name__ == "__main__":
    main()
