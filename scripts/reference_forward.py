#!/usr/bin/env python3
"""From-scratch forward passes of the three fixture models, as a readable spec for the Rust side.

Usage (from the repository root; needs torch + safetensors, not transformers):

    python3 scripts/reference_forward.py          # check bert, gpt2 and bart against fixtures/

Reads only `fixtures/<model>/{config.json, model.safetensors, io.safetensors}` and recomputes the
logits, the loss, (through autograd on these plain tensor ops) every gradient and the 10 AdamW
steps with a hand-written AdamW, following exactly
what fixtures/README.md describes: weight layouts (GPT-2's Conv1D [in,out]), tied weights, BART's
position offset of 2, post-/pre-LN placement, GELU forms, masking, loss normalisation. If this
script agrees with the fixtures, the README is a sufficient spec to implement the models from.
Nothing here uses transformers modules.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "fixtures"
NEG = torch.finfo(torch.float32).min


def layer_norm(x, w, b, eps):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)  # biased variance
    return (x - mean) / torch.sqrt(var + eps) * w + b


def gelu_erf(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def linear(x, w, b):
    """nn.Linear layout: w [out, in]."""
    return x @ w.T + b


def attention(q, k, v, allow, heads):
    """q [B,Tq,C], k/v [B,Tk,C], allow [B,Tq,Tk] bool (True = may attend). Returns [B,Tq,C]."""
    bsz, tq, c = q.shape
    tk = k.shape[1]
    d = c // heads
    q = q.view(bsz, tq, heads, d).transpose(1, 2)
    k = k.view(bsz, tk, heads, d).transpose(1, 2)
    v = v.view(bsz, tk, heads, d).transpose(1, 2)
    s = q @ k.transpose(-1, -2) / math.sqrt(d)
    s = s + torch.where(allow[:, None], 0.0, NEG)
    p = torch.softmax(s, dim=-1)
    return (p @ v).transpose(1, 2).reshape(bsz, tq, c)


def mean_ce(logits, labels):
    per = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                          ignore_index=-100, reduction="sum")
    return per / (labels != -100).sum()


def bert(P, cfg, io):
    ids, tt, am = io["input_ids"], io["token_type_ids"], io["attention_mask"]
    bsz, t = ids.shape
    eps = cfg["layer_norm_eps"]
    e = "bert.embeddings."
    h = P[e + "word_embeddings.weight"][ids] + P[e + "position_embeddings.weight"][torch.arange(t)] \
        + P[e + "token_type_embeddings.weight"][tt]
    h = layer_norm(h, P[e + "LayerNorm.weight"], P[e + "LayerNorm.bias"], eps)
    allow = (am[:, None, :] == 1).expand(bsz, t, t)  # padding of keys only
    for i in range(cfg["num_hidden_layers"]):
        L = lambda n: P[f"bert.encoder.layer.{i}.{n}"]
        q = linear(h, L("attention.self.query.weight"), L("attention.self.query.bias"))
        k = linear(h, L("attention.self.key.weight"), L("attention.self.key.bias"))
        v = linear(h, L("attention.self.value.weight"), L("attention.self.value.bias"))
        a = attention(q, k, v, allow, cfg["num_attention_heads"])
        a = linear(a, L("attention.output.dense.weight"), L("attention.output.dense.bias"))
        h = layer_norm(h + a, L("attention.output.LayerNorm.weight"), L("attention.output.LayerNorm.bias"), eps)
        f = gelu_erf(linear(h, L("intermediate.dense.weight"), L("intermediate.dense.bias")))
        f = linear(f, L("output.dense.weight"), L("output.dense.bias"))
        h = layer_norm(h + f, L("output.LayerNorm.weight"), L("output.LayerNorm.bias"), eps)
    last = h
    x = gelu_erf(linear(h, P["cls.predictions.transform.dense.weight"], P["cls.predictions.transform.dense.bias"]))
    x = layer_norm(x, P["cls.predictions.transform.LayerNorm.weight"], P["cls.predictions.transform.LayerNorm.bias"], eps)
    logits = x @ P[e + "word_embeddings.weight"].T + P["cls.predictions.bias"]  # tied decoder
    return logits, mean_ce(logits, io["labels"]), {"last_hidden_state": last}


def gpt2(P, cfg, io):
    ids, am = io["input_ids"], io["attention_mask"]
    bsz, t = ids.shape
    eps = cfg["layer_norm_epsilon"]
    c = cfg["n_embd"]
    h = P["transformer.wte.weight"][ids] + P["transformer.wpe.weight"][torch.arange(t)]
    causal = torch.tril(torch.ones(t, t, dtype=torch.bool))
    allow = causal[None] & (am[:, None, :] == 1)
    for i in range(cfg["n_layer"]):
        L = lambda n: P[f"transformer.h.{i}.{n}"]
        x = layer_norm(h, L("ln_1.weight"), L("ln_1.bias"), eps)
        qkv = x @ L("attn.c_attn.weight") + L("attn.c_attn.bias")  # Conv1D: weight [in, out]
        q, k, v = qkv.split(c, dim=-1)
        a = attention(q, k, v, allow, cfg["n_head"])
        h = h + a @ L("attn.c_proj.weight") + L("attn.c_proj.bias")
        x = layer_norm(h, L("ln_2.weight"), L("ln_2.bias"), eps)
        f = gelu_tanh(x @ L("mlp.c_fc.weight") + L("mlp.c_fc.bias"))
        h = h + f @ L("mlp.c_proj.weight") + L("mlp.c_proj.bias")
    h = layer_norm(h, P["transformer.ln_f.weight"], P["transformer.ln_f.bias"], eps)
    logits = h @ P["transformer.wte.weight"].T  # tied lm_head, no bias
    return logits, mean_ce(logits, io["shifted_labels"]), {"last_hidden_state": h}


def bart(P, cfg, io):
    eps = 1e-5  # nn.LayerNorm default; BART's config has no eps field
    heads = cfg["encoder_attention_heads"]
    scale = math.sqrt(cfg["d_model"]) if cfg["scale_embedding"] else 1.0
    E = P["model.shared.weight"]

    def attn_block(prefix, x, kv, allow):
        L = lambda n: P[f"{prefix}.{n}"]
        q = linear(x, L("q_proj.weight"), L("q_proj.bias"))
        k = linear(kv, L("k_proj.weight"), L("k_proj.bias"))
        v = linear(kv, L("v_proj.weight"), L("v_proj.bias"))
        return linear(attention(q, k, v, allow, heads), L("out_proj.weight"), L("out_proj.bias"))

    def ffn(prefix, x):
        L = lambda n: P[f"{prefix}.{n}"]
        return linear(gelu_erf(linear(x, L("fc1.weight"), L("fc1.bias"))), L("fc2.weight"), L("fc2.bias"))

    def embed(stack, ids):
        t = ids.shape[1]
        h = E[ids] * scale + P[f"model.{stack}.embed_positions.weight"][torch.arange(t) + 2]  # offset 2
        return layer_norm(h, P[f"model.{stack}.layernorm_embedding.weight"],
                          P[f"model.{stack}.layernorm_embedding.bias"], eps)

    ids, am = io["input_ids"], io["attention_mask"]
    dids, dam = io["decoder_input_ids"], io["decoder_attention_mask"]
    bsz, t = ids.shape
    td = dids.shape[1]
    enc_allow = (am[:, None, :] == 1).expand(bsz, t, t)
    h = embed("encoder", ids)
    for i in range(cfg["encoder_layers"]):
        p = f"model.encoder.layers.{i}"
        h = layer_norm(h + attn_block(p + ".self_attn", h, h, enc_allow),
                       P[p + ".self_attn_layer_norm.weight"], P[p + ".self_attn_layer_norm.bias"], eps)
        h = layer_norm(h + ffn(p, h), P[p + ".final_layer_norm.weight"], P[p + ".final_layer_norm.bias"], eps)
    enc = h
    causal = torch.tril(torch.ones(td, td, dtype=torch.bool))
    self_allow = causal[None] & (dam[:, None, :] == 1)
    cross_allow = (am[:, None, :] == 1).expand(bsz, td, t)
    h = embed("decoder", dids)
    for i in range(cfg["decoder_layers"]):
        p = f"model.decoder.layers.{i}"
        h = layer_norm(h + attn_block(p + ".self_attn", h, h, self_allow),
                       P[p + ".self_attn_layer_norm.weight"], P[p + ".self_attn_layer_norm.bias"], eps)
        h = layer_norm(h + attn_block(p + ".encoder_attn", h, enc, cross_allow),
                       P[p + ".encoder_attn_layer_norm.weight"], P[p + ".encoder_attn_layer_norm.bias"], eps)
        h = layer_norm(h + ffn(p, h), P[p + ".final_layer_norm.weight"], P[p + ".final_layer_norm.bias"], eps)
    logits = h @ E.T + P["final_logits_bias"]  # tied lm_head + bias buffer
    return logits, mean_ce(logits, io["labels"]), {"last_hidden_state": h, "encoder_last_hidden_state": enc}


def check(name, fn) -> bool:
    d = FIX / name
    cfg = json.loads((d / "config.json").read_text())
    P = load_file(str(d / "model.safetensors"))
    io = load_file(str(d / "io.safetensors"))
    for k, v in P.items():
        if k != "final_logits_bias":
            v.requires_grad_(True)
    logits, loss, hidden = fn(P, cfg, io)
    loss.backward()
    valid = io["decoder_attention_mask" if name == "bart" else "attention_mask"].bool()
    errs = {"logits": (logits - io["logits"]).abs()[valid].max().item(),
            "loss": abs(loss.item() - io["loss"].item())}
    for k, v in hidden.items():
        m = io["attention_mask"].bool() if k == "encoder_last_hidden_state" else valid
        errs[k] = (v - io[k]).abs()[m].max().item()
    gerr = 0.0
    for k in io:
        if k.startswith("grad."):
            g = P[k[5:]].grad
            gerr = max(gerr, (g - io[k]).abs().max().item())
    errs["grads"] = gerr
    errs["trajectory_losses"], param_err = adamw_trajectory(name, fn, cfg, io)
    ok = all(e < 1e-5 for e in errs.values())
    # Parameters move by up to lr = 1e-3 per step, and an element whose gradient is about eps makes
    # Adam's step sensitive to float noise: compare parameters at lr / 100.
    errs["trajectory_params"] = param_err
    ok = ok and param_err < 1e-5
    print(f"{name}: {'OK' if ok else 'MISMATCH'} max abs errors " + ", ".join(f"{k} {v:.2e}" for k, v in errs.items()))
    return ok


def adamw_trajectory(name, fn, cfg, io) -> tuple[float, float]:
    """Ten hand-written AdamW steps (README formula).

    Returns the max abs error of the losses (trajectory.json) and of the parameters after steps 1
    and 10 (trajectory.safetensors), the latter without the key-projection biases (see is_key_bias).
    """
    d = FIX / name
    info = json.loads((d / "trajectory.json").read_text())
    snaps = load_file(str(d / "trajectory.safetensors"))
    P = load_file(str(d / "model.safetensors"))
    trainable = [k for k in P if k != "final_logits_bias"]
    lr, (b1, b2), eps, wd = info["lr"], info["betas"], info["eps"], info["weight_decay"]
    m = {k: torch.zeros_like(P[k]) for k in trainable}
    v = {k: torch.zeros_like(P[k]) for k in trainable}
    err = perr = 0.0
    for t in range(1, info["steps"] + 1):
        for k in trainable:
            P[k] = P[k].detach().requires_grad_(True)
        _, loss, _ = fn(P, cfg, io)
        loss.backward()
        err = max(err, abs(loss.item() - info["loss_before_step"][t - 1]))
        with torch.no_grad():
            for k in trainable:
                g, p = P[k].grad, P[k].detach().clone()
                p *= 1 - lr * (wd if p.dim() >= 2 else 0.0)
                m[k] = b1 * m[k] + (1 - b1) * g
                v[k] = b2 * v[k] + (1 - b2) * g * g
                denom = v[k].sqrt() / math.sqrt(1 - b2 ** t) + eps
                P[k] = p - (lr / (1 - b1 ** t)) * m[k] / denom
                if f"step{t}.{k}" in snaps:
                    diff = (P[k] - snaps[f"step{t}.{k}"]).abs()
                    if k.endswith("c_attn.bias"):
                        diff = torch.cat([diff[: cfg["n_embd"]], diff[2 * cfg["n_embd"]:]])
                    if is_key_bias(k):
                        continue
                    perr = max(perr, diff.max().item())
    return err, perr


def is_key_bias(name: str) -> bool:
    """Key-projection biases: their true gradient is exactly 0 (softmax is shift-invariant)."""
    return name.endswith(("attention.self.key.bias", "k_proj.bias"))


def main() -> int:
    torch.set_num_threads(1)
    ok = all([check("bert", bert), check("gpt2", gpt2), check("bart", bart)])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
