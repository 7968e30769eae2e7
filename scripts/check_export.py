#!/usr/bin/env python3
"""Scripted check of `remask export`: transformers loads the exported directory with
`from_pretrained` and gives the same outputs as remask on the same inputs (max abs diff <= 1e-4
at real positions).

Models checked:
  * an encoder (BertForMaskedLM) and a decoder (GPT2LMHeadModel) remask checkpoint, made here by
    `remask train --synthetic` for 2 steps on tiny configs;
  * fixtures/bart (BartForConditionalGeneration) imported and re-exported (HF -> remask -> HF);
  * any further `--checkpoint DIR` (e.g. a trained translation run).

    cargo build -p remask-cli --features testing   # `train --synthetic` is test scaffolding
    python3 scripts/check_export.py --remask target/debug/remask [--checkpoint runs/x/checkpoints/step-000100]

Needs torch, transformers and safetensors (scripts only, never tests).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import load_file, save_file

TINY = {
    "encoder": """
[model]
arch = "encoder"
vocab_size = 97
d_model = 32
n_heads = 4
n_layers = 2
d_ff = 64
max_positions = 32
type_vocab_size = 2
""",
    "decoder": """
[model]
arch = "decoder"
vocab_size = 97
d_model = 32
n_heads = 4
n_layers = 2
d_ff = 64
max_positions = 32
norm = "pre"
gelu = "tanh"
layer_norm_eps = 1e-5
embedding_layer_norm = false
attention = { kind = "causal" }
""",
}
COMMON = """
[optimizer]
lr = 1e-2
batch_size = 8
[budget]
steps = 2
[eval]
every_steps = 2
batches = 1
batch_size = 4
[checkpoint]
every_steps = 2
keep_last = 1
[run]
seed = 7
threads = 1
output_dir = "{out}"
"""


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"command failed: {' '.join(cmd)}\n{r.stdout}\n{r.stderr}")
    return r.stdout


def make_checkpoint(remask, kind, tmp):
    out = os.path.join(tmp, f"run-{kind}")
    cfg = os.path.join(tmp, f"{kind}.toml")
    with open(cfg, "w") as f:
        f.write(TINY[kind] + COMMON.format(out=out))
    run([remask, "train", "--synthetic", "--log-lines", "--config", cfg])
    ckdir = os.path.join(out, "checkpoints")
    steps = sorted(d for d in os.listdir(ckdir) if d.startswith("step-"))
    return os.path.join(ckdir, steps[-1])


def check(remask, model_dir, tmp, name):
    from transformers import AutoConfig, BartForConditionalGeneration, BertForMaskedLM, GPT2LMHeadModel

    export = os.path.join(tmp, f"export-{name}")
    run([remask, "export", "--checkpoint", model_dir, "--out", export])
    cfg = AutoConfig.from_pretrained(export)
    cls = {"bert": BertForMaskedLM, "gpt2": GPT2LMHeadModel, "bart": BartForConditionalGeneration}[cfg.model_type]
    model = cls.from_pretrained(export, attn_implementation="eager").float().eval()
    g = torch.Generator().manual_seed(0)
    b, t, td = 2, 11, 7
    lo = 5 if cfg.model_type != "gpt2" else 0
    ids = torch.randint(lo, cfg.vocab_size, (b, t), generator=g)
    mask = torch.ones(b, t, dtype=torch.long)
    mask[1, 8:] = 0
    pad = cfg.pad_token_id if cfg.pad_token_id is not None else 0
    ids[1, 8:] = pad
    inputs = {"input_ids": ids, "attention_mask": mask}
    if cfg.model_type == "bart":
        inputs["decoder_input_ids"] = torch.randint(lo, cfg.vocab_size, (b, td), generator=g)
    inp_path = os.path.join(tmp, f"in-{name}.safetensors")
    out_path = os.path.join(tmp, f"out-{name}.safetensors")
    save_file({k: v.contiguous() for k, v in inputs.items()}, inp_path)
    # remask runs the original checkpoint, transformers the export.
    run([remask, "forward", "--model", model_dir, "--inputs", inp_path, "--out", out_path])
    ours = load_file(out_path)
    with torch.no_grad():
        hf = model(**inputs, output_hidden_states=True)
    theirs = {"logits": hf.logits}
    if cfg.model_type == "bart":
        theirs["last_hidden_state"] = hf.decoder_hidden_states[-1]
        theirs["encoder_last_hidden_state"] = hf.encoder_last_hidden_state
    else:
        theirs["last_hidden_state"] = hf.hidden_states[-1]
    worst = 0.0
    report = {}
    for k, v in theirs.items():
        if k not in ours:
            sys.exit(f"{name}: remask forward did not write `{k}`")
        m = mask if (k == "encoder_last_hidden_state" or cfg.model_type != "bart") else torch.ones(b, td, dtype=torch.long)
        d = ((ours[k] - v).abs() * m[..., None]).max().item()
        report[k] = d
        worst = max(worst, d)
    print(f"{name:<10} {cls.__name__:<30} " + "  ".join(f"{k} {d:.2e}" for k, d in report.items()))
    return worst


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--remask", default="target/debug/remask")
    ap.add_argument("--checkpoint", action="append", default=[])
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        dirs = [(k, make_checkpoint(a.remask, k, tmp)) for k in ("encoder", "decoder")]
        dirs.append(("bart", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "bart")))
        dirs += [(f"extra{i}", d) for i, d in enumerate(a.checkpoint)]
        worst = max(check(a.remask, d, tmp, n) for n, d in dirs)
    print(f"max abs diff {worst:.2e} (tolerance {a.tol:g})")
    sys.exit(0 if worst <= a.tol else 1)


if __name__ == "__main__":
    main()
