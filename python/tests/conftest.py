"""Shared fixtures: a WordPiece tokenizer.json written here (no tokenizers / transformers needed),
the texts it covers, and the `remask` CLI binary for the cross-checks."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

ENGLISH = [
    "In the beginning God created the heavens and the earth.",
    "The earth was formless and empty, and darkness was on the surface of the deep.",
    "God said, let there be light, and there was light.",
    "God saw the light, and saw that it was good. God divided the light from the darkness.",
    "God called the light day, and the darkness he called night. There was evening and there was morning, the first day.",
    "Tokenization splits unbelievable words into smaller pieces sometimes.",
]
CHINESE = [
    "中华人民共和国成立了。我们热爱和平。",
    "起初神创造天地。地是空虚混沌，渊面黑暗；神的灵运行在水面上。",
    "神说：要有光，就有了光。神看光是好的，就把光暗分开了。",
]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_tokenizer_json(texts: list) -> str:
    """A BERT-style WordPiece tokenizer.json: specials first, whole words of `texts`, their first
    three letters, single letters and `##` letters (so long words split into pieces), and every CJK
    character (BERT's normaliser splits CJK characters apart)."""
    words, pieces = set(), set()
    for t in texts:
        for w in re.findall(r"[A-Za-z]+", t.lower()):
            (words if len(w) <= 7 else pieces).add(w if len(w) <= 7 else w[:3])
        pieces.update(c for c in t if "\u4e00" <= c <= "\u9fff")
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab_list = SPECIALS + sorted(set("，。；：,.;:!?") | words | pieces | set(letters)) + ["##" + l for l in letters]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(vocab_list))}
    added = [
        {"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
        for i, s in enumerate(SPECIALS)
    ]
    return json.dumps(
        {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": added,
            "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True, "strip_accents": None, "lowercase": True},
            "pre_tokenizer": {"type": "BertPreTokenizer"},
            "post_processor": None,
            "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
            "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 100, "vocab": vocab},
        }
    )


@pytest.fixture(scope="session")
def texts() -> list:
    return ENGLISH + CHINESE


@pytest.fixture(scope="session")
def tokenizer_path(tmp_path_factory, texts) -> Path:
    p = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    p.write_text(make_tokenizer_json(texts), encoding="utf-8")
    return p


@pytest.fixture(scope="session")
def remask_bin() -> str:
    """The remask CLI: $REMASK_BIN, else target/{debug,release}/remask of this repository. Missing
    is a failure, not a skip (CI builds it with `cargo test --workspace` first)."""
    cands = [os.environ.get("REMASK_BIN"), REPO / "target/debug/remask", REPO / "target/release/remask", shutil.which("remask")]
    for c in cands:
        if c and Path(c).is_file():
            return str(c)
    pytest.fail("the remask CLI was not found: build it (cargo build -p remask-cli) or set REMASK_BIN")
