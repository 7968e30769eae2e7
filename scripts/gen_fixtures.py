#!/usr/bin/env python3
"""Generate the golden model fixtures under `fixtures/` from PyTorch + Hugging Face transformers.

Usage (from the repository root, CPU only, takes ~10 s):

    python3 scripts/gen_fixtures.py            # (re)write fixtures/{bert,gpt2,bart}/ and check them
    python3 scripts/gen_fixtures.py --check    # only reload the committed fixtures and re-verify them

Needs `torch`, `transformers` and `safetensors` (pip). Nothing is downloaded: the models are built
from configs with random weights. The output is deterministic for a given torch / transformers
version (seeded with `torch.manual_seed`, float32, eager attention, single thread).

For each of `bert` (BertForMaskedLM), `gpt2` (GPT2LMHeadModel) and `bart`
(BartForConditionalGeneration) it writes:

    config.json, generation_config.json (if any), model.safetensors   <- model.save_pretrained(dir)
    io.safetensors      a fixed batch, the model outputs, the loss and every parameter gradient
    trajectory.json     10 AdamW steps on that batch: the loss before each step, hyperparameters
    trajectory.safetensors   the parameters after step 1 and after step 10

The exact format is documented in fixtures/README.md (keep the two in sync).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    BertConfig,
    BertForMaskedLM,
    GPT2Config,
    GPT2LMHeadModel,
)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures"

VOCAB = 96
HIDDEN = 32
HEADS = 4
LAYERS = 2
FFN = 64
MAX_POS = 32

# Weight initialisation: every parameter is redrawn (not HF's init) so that every tensor matters in
# the comparison: matrices / embeddings ~ N(0, 0.1^2), biases ~ N(0, 0.1^2), LayerNorm weights
# ~ 1 + N(0, 0.1^2). A wrong bias, a swapped LayerNorm weight/bias, or a missing final_logits_bias
# therefore changes the outputs.
INIT_STD = 0.1

ADAMW = {
    "lr": 1e-3,
    "betas": [0.9, 0.999],
    "eps": 1e-8,
    "weight_decay": 0.01,
    "steps": 10,
}


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


def bert_config() -> BertConfig:
    return BertConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=FFN,
        hidden_act="gelu",  # exact (erf) GELU
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        max_position_embeddings=MAX_POS,
        type_vocab_size=2,
        initializer_range=0.02,
        layer_norm_eps=1e-12,
        pad_token_id=0,
        tie_word_embeddings=True,
    )


def gpt2_config() -> GPT2Config:
    return GPT2Config(
        vocab_size=VOCAB,
        n_positions=MAX_POS,
        n_embd=HIDDEN,
        n_layer=LAYERS,
        n_head=HEADS,
        n_inner=FFN,
        activation_function="gelu_new",  # tanh approximation
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        layer_norm_epsilon=1e-5,
        bos_token_id=VOCAB - 1,
        eos_token_id=VOCAB - 1,
        pad_token_id=0,
        tie_word_embeddings=True,
    )


def bart_config() -> BartConfig:
    return BartConfig(
        vocab_size=VOCAB,
        d_model=HIDDEN,
        encoder_layers=LAYERS,
        decoder_layers=LAYERS,
        encoder_attention_heads=HEADS,
        decoder_attention_heads=HEADS,
        encoder_ffn_dim=FFN,
        decoder_ffn_dim=FFN,
        activation_function="gelu",  # exact (erf) GELU
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        classifier_dropout=0.0,
        encoder_layerdrop=0.0,
        decoder_layerdrop=0.0,
        max_position_embeddings=MAX_POS,
        scale_embedding=False,
        tie_word_embeddings=True,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
        forced_eos_token_id=2,
    )


MODELS = {
    "bert": (bert_config, BertForMaskedLM),
    "gpt2": (gpt2_config, GPT2LMHeadModel),
    "bart": (bart_config, BartForConditionalGeneration),
}


def build(name: str):
    make_config, cls = MODELS[name]
    config = make_config()
    config._attn_implementation = "eager"
    torch.manual_seed(1234)
    model = cls(config)
    model.config._attn_implementation = "eager"
    randomize(model)
    model.eval()  # dropout is 0 anyway; eval() just makes that explicit
    return model


@torch.no_grad()
def randomize(model) -> None:
    """Redraw every parameter (and BART's final_logits_bias buffer) from a seeded generator."""
    g = torch.Generator().manual_seed(4321)
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=g) * INIT_STD
        # In these three models every 1-dim tensor named `*.weight` is a LayerNorm gain.
        if p.dim() == 1 and name.endswith(".weight"):
            p.copy_(1.0 + noise)
        else:
            p.copy_(noise)
    for name, b in model.named_buffers():
        if name == "final_logits_bias":
            b.copy_(torch.randn(b.shape, generator=g) * INIT_STD)


# ---------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------

B = 2
T = 12          # encoder / decoder-only sequence length
T_DEC = 10      # BART decoder length (differs from T on purpose: catches Tq/Tk mix-ups)


def rand_tokens(g: torch.Generator, n: int, low: int, high: int) -> list[int]:
    return torch.randint(low, high, (n,), generator=g).tolist()


def bert_batch() -> dict[str, torch.Tensor]:
    # Special ids of the fixture vocabulary: 0 [PAD], 1 [UNK], 2 [CLS], 3 [SEP], 4 [MASK]; 5.. words.
    PAD, CLS, SEP, MASK = 0, 2, 3, 4
    g = torch.Generator().manual_seed(11)
    # Row 0: [CLS] a*5 [SEP] b*4 [SEP]  (12 tokens, no padding)
    # Row 1: [CLS] a*3 [SEP] b*3 [SEP] [PAD]*3  (9 real tokens)
    rows = []
    for la, lb in [(5, 4), (3, 3)]:
        a = rand_tokens(g, la, 5, VOCAB)
        b = rand_tokens(g, lb, 5, VOCAB)
        ids = [CLS] + a + [SEP] + b + [SEP]
        tt = [0] * (la + 2) + [1] * (lb + 1)
        rows.append((ids, tt))
    input_ids = torch.full((B, T), PAD, dtype=torch.long)
    token_type_ids = torch.zeros((B, T), dtype=torch.long)
    attention_mask = torch.zeros((B, T), dtype=torch.long)
    labels = torch.full((B, T), -100, dtype=torch.long)
    # Positions chosen for the MLM loss (~30% of the real tokens), with BERT's three replacement
    # kinds all present: [MASK], a random token, and the token kept unchanged.
    chosen = {0: [(1, "mask"), (3, "random"), (7, "mask"), (10, "keep")],
              1: [(2, "mask"), (5, "mask"), (6, "random")]}
    for r, (ids, tt) in enumerate(rows):
        n = len(ids)
        input_ids[r, :n] = torch.tensor(ids)
        token_type_ids[r, :n] = torch.tensor(tt)
        attention_mask[r, :n] = 1
        for pos, kind in chosen[r]:
            assert ids[pos] >= 5, "only word tokens are labelled"
            labels[r, pos] = ids[pos]
            if kind == "mask":
                input_ids[r, pos] = MASK
            elif kind == "random":
                input_ids[r, pos] = (ids[pos] - 5 + 17) % (VOCAB - 5) + 5
    return {
        "input_ids": input_ids,
        "token_type_ids": token_type_ids,
        "attention_mask": attention_mask,
        "labels": labels,
    }


def gpt2_batch() -> dict[str, torch.Tensor]:
    PAD = 0
    g = torch.Generator().manual_seed(22)
    input_ids = torch.full((B, T), PAD, dtype=torch.long)
    attention_mask = torch.zeros((B, T), dtype=torch.long)
    for r, n in enumerate([12, 9]):
        input_ids[r, :n] = torch.tensor(rand_tokens(g, n, 1, VOCAB))
        attention_mask[r, :n] = 1
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    # What remask's CLM batches carry: label at t = token t+1 (-100 at the last real token and pad).
    shifted = torch.full((B, T), -100, dtype=torch.long)
    shifted[:, :-1] = labels[:, 1:]
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels": labels,
        "shifted_labels": shifted,
    }


def bart_batch(config: BartConfig) -> dict[str, torch.Tensor]:
    from transformers.models.bart.modeling_bart import shift_tokens_right

    BOS, PAD, EOS = 0, 1, 2
    g = torch.Generator().manual_seed(33)
    input_ids = torch.full((B, T), PAD, dtype=torch.long)
    attention_mask = torch.zeros((B, T), dtype=torch.long)
    for r, n in enumerate([12, 9]):
        input_ids[r, :n] = torch.tensor([BOS] + rand_tokens(g, n - 2, 3, VOCAB) + [EOS])
        attention_mask[r, :n] = 1
    labels = torch.full((B, T_DEC), -100, dtype=torch.long)
    for r, n in enumerate([10, 7]):
        labels[r, :n] = torch.tensor([BOS] + rand_tokens(g, n - 2, 3, VOCAB) + [EOS])
    # Exactly what BartForConditionalGeneration derives when only `labels` is given.
    decoder_input_ids = shift_tokens_right(labels, config.pad_token_id, config.decoder_start_token_id)
    decoder_attention_mask = (labels != -100).long()
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels": labels,
        "decoder_input_ids": decoder_input_ids,
        "decoder_attention_mask": decoder_attention_mask,
    }


def make_batch(name: str, model) -> dict[str, torch.Tensor]:
    if name == "bert":
        return bert_batch()
    if name == "gpt2":
        return gpt2_batch()
    return bart_batch(model.config)


def model_inputs(name: str, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    keys = {
        "bert": ["input_ids", "token_type_ids", "attention_mask", "labels"],
        "gpt2": ["input_ids", "attention_mask", "labels"],
        "bart": ["input_ids", "attention_mask", "labels", "decoder_input_ids", "decoder_attention_mask"],
    }[name]
    return {k: batch[k] for k in keys}


# ---------------------------------------------------------------------------------------------
# Forward / backward
# ---------------------------------------------------------------------------------------------


def label_losses(name: str, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-position losses [B,T] aligned with remask's labels (0 where ignored)."""
    labels = batch["shifted_labels"] if name == "gpt2" else batch["labels"]
    v = logits.shape[-1]
    per = torch.nn.functional.cross_entropy(
        logits.reshape(-1, v).float(), labels.reshape(-1), ignore_index=-100, reduction="none"
    )
    return per.reshape(labels.shape)


def run(name: str, model, batch: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """One forward + backward. Returns (outputs, grads by canonical parameter name)."""
    model.zero_grad(set_to_none=True)
    out = model(**model_inputs(name, batch), output_hidden_states=True, return_dict=True)
    out.loss.backward()
    logits = out.logits.detach()
    outputs = {"logits": logits.contiguous(), "loss": out.loss.detach().reshape(())}
    if name == "bart":
        outputs["last_hidden_state"] = out.decoder_hidden_states[-1].detach().contiguous()
        outputs["encoder_last_hidden_state"] = out.encoder_last_hidden_state.detach().contiguous()
    else:
        outputs["last_hidden_state"] = out.hidden_states[-1].detach().contiguous()
    per = label_losses(name, logits, batch)
    outputs["label_losses"] = per.contiguous()
    labels = batch["shifted_labels"] if name == "gpt2" else batch["labels"]
    count = int((labels != -100).sum())
    outputs["num_labels"] = torch.tensor(count, dtype=torch.long)
    # Cross-check: HF's loss is the mean of the per-label losses over non-ignored labels.
    assert torch.allclose(per.sum() / count, out.loss.detach(), rtol=1e-6, atol=1e-6), name
    grads = {}
    for pname, p in model.named_parameters():  # deduplicated: tied tensors appear once
        grads["grad." + pname] = (p.grad if p.grad is not None else torch.zeros_like(p)).detach().clone().contiguous()
    return outputs, grads


def trajectory(name: str, model, batch: dict[str, torch.Tensor]):
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        (decay if p.dim() >= 2 else no_decay).append(p)
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": ADAMW["weight_decay"]},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=ADAMW["lr"],
        betas=tuple(ADAMW["betas"]),
        eps=ADAMW["eps"],
        foreach=False,
        fused=False,
    )
    losses, grad_norms, snapshots = [], [], {}
    for step in range(1, ADAMW["steps"] + 1):
        opt.zero_grad(set_to_none=True)
        out = model(**model_inputs(name, batch), return_dict=True)
        out.loss.backward()
        losses.append(float(out.loss.detach()))
        sq = sum(float(p.grad.double().pow(2).sum()) for p in model.parameters() if p.grad is not None)
        grad_norms.append(math.sqrt(sq))
        opt.step()
        if step in (1, ADAMW["steps"]):
            for pname, p in model.named_parameters():
                snapshots[f"step{step}.{pname}"] = p.detach().clone().contiguous()
    with torch.no_grad():
        final = float(model(**model_inputs(name, batch), return_dict=True).loss)
    n_decay = sum(p.numel() for p in decay)
    n_no_decay = sum(p.numel() for p in no_decay)
    info = {
        "model": name,
        "optimizer": "torch.optim.AdamW",
        "lr": ADAMW["lr"],
        "betas": ADAMW["betas"],
        "eps": ADAMW["eps"],
        "weight_decay": ADAMW["weight_decay"],
        "weight_decay_rule": "decay tensors with dim >= 2 (matrices, embeddings); 1-dim tensors (biases, LayerNorm) get 0",
        "decayed_tensors": [n for n, p in model.named_parameters() if p.dim() >= 2],
        "decayed_numel": n_decay,
        "not_decayed_numel": n_no_decay,
        "grad_clipping": None,
        "lr_schedule": "constant",
        "amsgrad": False,
        "steps": ADAMW["steps"],
        "torch": torch.__version__.split("+")[0],
        "transformers": transformers.__version__,
        "loss_before_step": losses,
        "grad_norm_before_step": grad_norms,
        "loss_after_last_step": final,
    }
    return info, snapshots


# ---------------------------------------------------------------------------------------------
# Writing and checking
# ---------------------------------------------------------------------------------------------


def generate(name: str) -> None:
    d = OUT / name
    d.mkdir(parents=True, exist_ok=True)
    model = build(name)
    model.save_pretrained(str(d))
    batch = make_batch(name, model)
    outputs, grads = run(name, model, batch)
    tensors = {**batch, **outputs, **grads}
    save_file(tensors, str(d / "io.safetensors"), metadata=metadata(name))
    info, snapshots = trajectory(name, model, batch)
    assert abs(info["loss_before_step"][0] - float(outputs["loss"])) < 1e-6
    (d / "trajectory.json").write_text(json.dumps(info, indent=2) + "\n")
    save_file(snapshots, str(d / "trajectory.safetensors"), metadata=metadata(name))
    print(f"{name}: loss {float(outputs['loss']):.6f}, {len(grads)} gradient tensors, "
          f"losses {['%.4f' % x for x in info['loss_before_step']]}")


def metadata(name: str) -> dict[str, str]:
    # One key only: safetensors stores the metadata in a hash map, so with several keys their order
    # in the header (and thus the file's bytes) changes from run to run.
    return {
        "generated_by": f"scripts/gen_fixtures.py model={name} torch={torch.__version__.split('+')[0]} "
                        f"transformers={transformers.__version__}",
    }


def check(name: str) -> None:
    """Reload the fixture from disk with from_pretrained and recompute everything."""
    d = OUT / name
    _, cls = MODELS[name]
    model = cls.from_pretrained(str(d), attn_implementation="eager")
    model.eval()
    saved = load_file(str(d / "io.safetensors"))
    weights = load_file(str(d / "model.safetensors"))
    batch = {k: saved[k] for k in ["input_ids", "attention_mask", "labels", "token_type_ids",
                                   "shifted_labels", "decoder_input_ids", "decoder_attention_mask"]
             if k in saved}
    for k, v in batch.items():
        assert v.dtype == torch.int64, (name, k, v.dtype)
    outputs, grads = run(name, model, batch)
    for k, v in {**outputs, **grads}.items():
        ref = saved[k]
        assert ref.shape == v.shape and ref.dtype == v.dtype, (name, k, ref.shape, v.shape)
        err = (ref.double() - v.double()).abs().max().item() if ref.numel() else 0.0
        assert err <= 1e-6, f"{name}: {k} differs by {err}"
    # Padding never leaks into real positions: the padded row run alone, unpadded, gives the same
    # logits at its real positions (so Rust may zero or skip padded positions freely).
    r = 1
    n = int(batch["attention_mask"][r].sum())
    alone = {k: v[r:r + 1, :n] for k, v in model_inputs(name, batch).items()
             if k in ("input_ids", "attention_mask", "token_type_ids")}
    q_mask = batch["attention_mask"][r, :n].bool()
    if name == "bart":
        nd = int(batch["decoder_attention_mask"][r].sum())
        alone["decoder_input_ids"] = batch["decoder_input_ids"][r:r + 1, :nd]
        q_mask = batch["decoder_attention_mask"][r, :nd].bool()
    with torch.no_grad():
        solo = model(**alone, return_dict=True).logits[0]
    err = (solo - saved["logits"][r, : solo.shape[0]]).abs()[q_mask].max().item()
    assert err <= 1e-5, f"{name}: padding changes real positions' logits by {err}"
    # Every gradient names a tensor of model.safetensors, and every trainable tensor there has one.
    grad_names = {k[len("grad."):] for k in saved if k.startswith("grad.")}
    missing = grad_names - set(weights)
    assert not missing, f"{name}: gradients of tensors absent from model.safetensors: {missing}"
    params = {n for n, _ in model.named_parameters()}
    assert grad_names == params, (name, grad_names ^ params)
    extra = set(weights) - params
    info = json.loads((d / "trajectory.json").read_text())
    info2, snaps2 = trajectory(name, model, batch)
    snaps = load_file(str(d / "trajectory.safetensors"))
    for a, b in zip(info["loss_before_step"], info2["loss_before_step"]):
        assert abs(a - b) <= 1e-6, (name, a, b)
    for k, v in snaps2.items():
        assert (snaps[k] - v).abs().max().item() <= 1e-6, (name, k)
    for k, f in sorted((p.name, p.stat().st_size) for p in d.iterdir()):
        assert f < 1_000_000, f"{name}/{k} is {f} bytes (limit 1 MB)"
    print(f"{name}: OK (reloaded; outputs, {len(grad_names)} gradients and 10-step trajectory match; "
          f"non-parameter tensors in model.safetensors: {sorted(extra)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only verify the fixtures on disk")
    parser.add_argument("models", nargs="*", default=list(MODELS), help="subset of bert gpt2 bart")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    for name in args.models:
        if name not in MODELS:
            print(f"error: unknown model {name!r} (expected one of {list(MODELS)})", file=sys.stderr)
            return 2
        if not args.check:
            generate(name)
        check(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
