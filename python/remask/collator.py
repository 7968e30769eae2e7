"""`MaskingCollator`: MLM masking for PyTorch / Hugging Face data pipelines, drawn by the remask
library itself (the native `NativeMasker` calls `remask::masking::MaskPlan::mask_train`).

Every mask is keyed by (seed, epoch, sample index): a row gets the same mask whatever DataLoader
worker, batch size or batch position it lands in.

- The sample index comes from each feature's ``idx`` (``dataset.map(lambda e, i: {"idx": i},
  with_indices=True)``; keep it with ``remove_unused_columns=False`` in a Trainer). A feature
  without one is keyed by its content (2^63 + a hash of its ids): still the same in every worker,
  and equal rows then get equal masks within an epoch.
- The epoch comes from :meth:`MaskingCollator.set_epoch` (the Trainer callback
  :class:`remask.hf.MaskingCallback` calls it), the training progress for rate schedules from
  :meth:`MaskingCollator.set_progress`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import _native

IGNORE_INDEX = -100

# The strategies the library knows are validated by the library itself (an unknown name is refused
# with the list of known ones). A new strategy of `remask::masking` becomes available here under its
# config name; one that needs more than the `[masking]` keys gets a keyword passed to `NativeMasker`
# beside `token_counts` (PMI masking's n-gram table: `ngrams`).
STRATEGIES = ("token", "whole-word", "span", "pmi")

_WHEN_MODES = ("static", "dynamic", "adaptive")

_OUTPUT_KEYS = ("input_ids", "labels", "attention_mask", "token_type_ids")

_from_numpy = None


def _torch_from_numpy():
    """`torch.from_numpy`, imported on first use (the package itself never imports torch)."""
    global _from_numpy
    if _from_numpy is None:
        import torch

        _from_numpy = torch.from_numpy
    return _from_numpy


def _tokenizer_json(tokenizer: Any) -> tuple:
    """The text of a `tokenizer.json` and where it came from (for errors), from a path (file or
    directory), a `tokenizers.Tokenizer` or a `transformers` fast tokenizer."""
    if isinstance(tokenizer, (str, os.PathLike)):
        path = os.fspath(tokenizer)
        if os.path.isdir(path):
            path = os.path.join(path, "tokenizer.json")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"tokenizer: {path} does not exist (give a tokenizer.json or a directory holding one)")
        with open(path, encoding="utf-8") as f:
            return f.read(), path
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return backend.to_str(), f"<{type(tokenizer).__name__}>"
    if hasattr(tokenizer, "to_str"):
        return tokenizer.to_str(), f"<{type(tokenizer).__name__}>"
    raise TypeError(
        f"tokenizer: expected a path to tokenizer.json, a tokenizers.Tokenizer or a transformers fast tokenizer, got {type(tokenizer).__name__}"
    )


def _as_batch(features: Any):
    """A batch given as something other than a list: a [B, T] array or tensor of ids becomes an
    int64 NumPy array (read in place when it is one already), any other sequence a list."""
    if hasattr(features, "numpy") and hasattr(features, "detach"):  # a torch tensor
        features = features.detach().cpu().numpy()
    if isinstance(features, np.ndarray) and features.ndim == 2 and features.dtype != object:
        return features.astype(np.int64, copy=False)
    return list(features)


def _plain_ids(f: Any, r: int):
    if isinstance(f, Mapping):
        raise ValueError("features mix dicts and plain id sequences: give one kind per batch")
    return _as_ids(f, f"feature {r}")


def _when_config(when: Any, dupe_factor: int | None, temperature: float, decay: float, uniform_mix: float) -> dict:
    if isinstance(when, Mapping):
        return dict(when)
    if when not in _WHEN_MODES:
        raise ValueError(f"when={when!r}: expected one of {', '.join(_WHEN_MODES)} (or a dict such as {{'mode': 'static', 'dupe_factor': 10}})")
    if when == "static":
        return {"mode": "static", "dupe_factor": 10 if dupe_factor is None else int(dupe_factor)}
    if dupe_factor is not None:
        raise ValueError(f"dupe_factor is the number of static copies: it needs when='static', not when={when!r}")
    if when == "adaptive":
        return {"mode": "adaptive", "temperature": temperature, "decay": decay, "uniform_mix": uniform_mix}
    return {"mode": "dynamic"}


def _as_id_list(x: Any, what: str) -> list:
    if isinstance(x, list):
        return x
    if hasattr(x, "tolist"):  # numpy arrays, torch tensors
        return x.tolist()
    if isinstance(x, Sequence):
        return list(x)
    raise TypeError(f"{what}: expected a sequence of token ids, got {type(x).__name__}")


def _as_ids(x: Any, what: str):
    """Token ids as the native side reads them fastest: a list, or an int64 NumPy array (read
    without converting each element; torch tensors become such arrays without a copy)."""
    if isinstance(x, list):
        return x
    if isinstance(x, np.ndarray):
        return x if x.dtype == np.int64 and x.ndim == 1 else np.ascontiguousarray(x, dtype=np.int64).ravel()
    if hasattr(x, "numpy") and hasattr(x, "detach"):  # a torch tensor
        return np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.int64).ravel()
    return _as_id_list(x, what)


class MaskingCollator:
    """Pads features and masks them for MLM, as remask does.

    Arguments that `transformers.DataCollatorForLanguageModeling` also has keep its names and
    meaning: ``tokenizer``, ``mlm``, ``mlm_probability`` (alias of ``rate``), ``mask_replace_prob``,
    ``random_replace_prob``, ``pad_to_multiple_of``, ``return_tensors``, ``seed``. See the README's
    Python section for the differences.

    Args:
        tokenizer: path to a `tokenizer.json` (or its directory), a `tokenizers.Tokenizer`, or a
            `transformers` fast tokenizer. Its special tokens are never masked.
        strategy: ``"token"``, ``"whole-word"`` (all pieces of a word; Chinese words from jieba),
            ``"span"`` (SpanBERT: geometric spans of whole words) or ``"pmi"`` (PMI-Masking:
            collocations of 2-5 words as units; needs ``ngrams``).
        when: ``"dynamic"`` (new masks every epoch), ``"static"`` (``dupe_factor`` keyed copies;
            epoch e shows copy e mod K) or ``"adaptive"`` (weighted by :meth:`feedback` losses).
        rate: share of eligible tokens masked (default 0.15).
        seed: the masks' key.
        count: ``"exact"`` (rate x eligible tokens, rounded probabilistically) or ``"bernoulli"``.
        schedule, final_rate: rate schedule (``"constant"``, ``"linear"``, ``"cosine"``) from
            ``rate`` to ``final_rate``, driven by :meth:`set_progress`.
        mask_replace_prob, random_replace_prob: shares of the chosen tokens replaced by the mask
            token and by a random token; the rest stays unchanged (80/10/10 by default).
        span_p, span_max_words: span length distribution (``strategy="span"``).
        language: ``"auto"`` (jieba for text with CJK characters), ``"zh"`` or ``"other"``.
        frequency_weighted_random, token_counts: draw random replacements by corpus frequency
            (``token_counts``: one count per token id).
        ngrams: a directory prepared by ``remask prepare --strategy pmi`` with the same tokenizer
            (it holds ``ngrams.bin``, the n-gram vocabulary PMI masking reads).
        pad_to_multiple_of, max_length: padding; features longer than ``max_length`` are refused.
        return_tensors: ``"np"`` (default) or ``"pt"`` (torch tensors, sharing the arrays' memory).
        mlm: ``False`` gives causal-LM batches (labels = input ids, -100 on padding), as HF does.
    """

    def __init__(
        self,
        tokenizer: Any,
        strategy: str = "token",
        when: Any = "dynamic",
        rate: float | None = None,
        seed: int = 0,
        *,
        mlm: bool = True,
        mlm_probability: float | None = None,
        mask_replace_prob: float = 0.8,
        random_replace_prob: float = 0.1,
        count: str = "exact",
        schedule: str = "constant",
        final_rate: float | None = None,
        dupe_factor: int | None = None,
        temperature: float = 1.0,
        decay: float = 0.9,
        uniform_mix: float = 0.5,
        span_p: float = 0.2,
        span_max_words: int = 10,
        language: str = "auto",
        frequency_weighted_random: bool = False,
        token_counts: Any = None,
        ngrams: Any = None,
        pad_to_multiple_of: int | None = None,
        max_length: int | None = None,
        return_tensors: str = "np",
    ):
        if rate is not None and mlm_probability is not None and rate != mlm_probability:
            raise ValueError(f"rate={rate} and mlm_probability={mlm_probability} name the same thing: give one")
        rate = 0.15 if rate is None and mlm_probability is None else (rate if rate is not None else mlm_probability)
        if return_tensors not in ("np", "pt"):
            raise ValueError(f"return_tensors={return_tensors!r}: expected 'np' or 'pt'")
        if pad_to_multiple_of is not None and int(pad_to_multiple_of) < 1:
            raise ValueError(f"pad_to_multiple_of={pad_to_multiple_of} must be at least 1")
        if not 0.0 <= mask_replace_prob + random_replace_prob <= 1.0 + 1e-6:
            raise ValueError(
                f"mask_replace_prob + random_replace_prob = {mask_replace_prob + random_replace_prob} must lie in [0, 1] (the rest stays unchanged)"
            )
        self.config = {
            "strategy": strategy,
            "count": count,
            "rate": float(rate),
            "schedule": schedule,
            "final_rate": final_rate,
            "mask_share": float(mask_replace_prob),
            "random_share": float(random_replace_prob),
            "unchanged_share": max(0.0, 1.0 - float(mask_replace_prob) - float(random_replace_prob)),
            "frequency_weighted_random": bool(frequency_weighted_random),
            "span": {"p": float(span_p), "max_words": int(span_max_words)},
            "when": _when_config(when, dupe_factor, temperature, decay, uniform_mix),
            "language": language,
        }
        self.seed = int(seed)
        self.mlm = bool(mlm)
        self.pad_to_multiple_of = pad_to_multiple_of
        self.max_length = max_length
        self.return_tensors = return_tensors
        self.epoch = 0
        self.progress = 0.0
        self._tokenizer_json, self._tokenizer_source = _tokenizer_json(tokenizer)
        self._token_counts = None if token_counts is None else [int(c) for c in np.asarray(token_counts).ravel()]
        self._ngrams = None if ngrams is None else str(ngrams)
        self._build()

    def _build(self) -> None:
        self._native = _native.NativeMasker(
            self._tokenizer_json, json.dumps(self.config), self.seed, self._token_counts, self._tokenizer_source, self._ngrams
        )

    # Pickling (DataLoader workers with the spawn start method): rebuilt from the arguments.
    # Adaptive statistics are not carried (see `feedback`).
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        del state["_native"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._build()

    @property
    def pad_token_id(self) -> int:
        return self._native.pad_id

    @property
    def mask_token_id(self) -> int:
        return self._native.mask_id

    @property
    def special_ids(self) -> list:
        return self._native.special_ids

    def set_epoch(self, epoch: int) -> None:
        """Masks of epoch `epoch` from now on (static masking shows copy epoch mod K)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def set_progress(self, progress: float) -> None:
        """Training progress in [0, 1], for rate schedules."""
        if not 0.0 <= progress <= 1.0:
            raise ValueError(f"progress must lie in [0, 1], got {progress}")
        self.progress = float(progress)

    def key_epoch(self, epoch: int | None = None) -> int:
        """The epoch whose masks `epoch` (default: the current one) shows."""
        return self._native.key_epoch(self.epoch if epoch is None else epoch)

    def encode(self, texts: Sequence[str], max_length: int | None = None, start_index: int = 0) -> list:
        """Features as `remask prepare` makes them: ``[CLS] … [SEP]`` ids with remask's word starts
        (the tokenizer's words, or jieba's for Chinese), and ``idx`` = start_index + position."""
        if isinstance(texts, str):
            texts = [texts]
        enc = self._native.encode(list(texts), max_length)
        return [{"input_ids": ids, "word_starts": ws, "idx": start_index + i} for i, (ids, ws) in enumerate(enc)]

    def _word_starts(self, f: Mapping, r: int) -> list | None:
        if "word_starts" in f and f["word_starts"] is not None:
            return [bool(x) for x in _as_id_list(f["word_starts"], f"feature {r} word_starts")]
        if "word_ids" in f and f["word_ids"] is not None:
            w = list(f["word_ids"])
            return [i == 0 or w[i] is None or w[i] != w[i - 1] for i in range(len(w))]
        if "offset_mapping" in f and f["offset_mapping"] is not None:
            if "text" not in f:
                raise ValueError(f"feature {r} has offset_mapping but no text: add the text the offsets point into")
            offsets = [(int(s), int(e)) for s, e in _as_id_list(f["offset_mapping"], f"feature {r} offset_mapping")]
            return self._native.word_starts_from_offsets(str(f["text"]), offsets)
        return None

    def __call__(self, features: Sequence[Any], return_tensors: str | None = None) -> dict:
        """Pads and masks a batch. Each feature is a sequence of token ids or a dict with
        ``input_ids`` and optionally ``idx``, ``word_starts`` / ``word_ids`` / ``offset_mapping`` +
        ``text``, ``token_type_ids``. A ``[B, T]`` array or tensor of ids is a batch of B rows.
        Returns ``input_ids``, ``labels`` (-100 where not masked) and ``attention_mask`` (and
        ``token_type_ids`` when given), each [B, T]."""
        if len(features) == 0:
            raise ValueError("an empty batch: the collator needs at least one feature")
        native = self._native
        if type(features) is not list:
            features = _as_batch(features)
            if isinstance(features, np.ndarray):
                arrays = native.mask(features, None, None, self.epoch, self.progress, self.max_length, self.pad_to_multiple_of, self.mlm)
                return self._output(arrays, return_tensors)
        first = features[0]
        if type(first) is list or (type(first) is not dict and not isinstance(first, Mapping)):
            # Plain id sequences (no keys, no word boundaries): lists and int64 arrays are read
            # natively; other rows go through `_plain_ids` first. (Positional arguments: the
            # native call's fastest form.)
            arrays = native.mask(features, None, None, self.epoch, self.progress, self.max_length, self.pad_to_multiple_of, self.mlm, _plain_ids)
            return self._output(arrays, return_tensors)
        ids, starts, indices, types = [], [], [], []
        mlm = self.mlm
        for r, f in enumerate(features):
            if type(f) is not dict and not isinstance(f, Mapping):
                raise ValueError("features mix dicts and plain id sequences: give one kind per batch")
            if "input_ids" not in f:
                raise ValueError(f"feature {r} has no input_ids (keys: {', '.join(map(str, f.keys()))})")
            row = f["input_ids"]
            ids.append(row if type(row) is list else _as_ids(row, f"feature {r} input_ids"))
            starts.append(self._word_starts(f, r) if mlm else None)
            idx = f.get("idx")
            if idx is not None:
                idx = int(idx)
                if idx < 0:
                    raise ValueError("idx must be >= 0 (the sample's index in its dataset)")
            indices.append(idx)
            if "token_type_ids" in f:
                types.append(f["token_type_ids"])
        if types and len(types) != len(ids):
            raise ValueError("token_type_ids is given for some features but not for all")
        arrays = native.mask(ids, starts, indices, self.epoch, self.progress, self.max_length, self.pad_to_multiple_of, mlm, _plain_ids, types or None)
        return self._output(arrays, return_tensors)

    def _output(self, arrays: list, return_tensors: str | None) -> dict:
        if (return_tensors or self.return_tensors) == "pt":
            f = _from_numpy or _torch_from_numpy()
            if len(arrays) == 3:
                return {"input_ids": f(arrays[0]), "labels": f(arrays[1]), "attention_mask": f(arrays[2])}
            arrays = [f(a) for a in arrays]
        return dict(zip(_OUTPUT_KEYS, arrays))

    def feedback(self, labels: Any, losses: Any) -> None:
        """Adaptive masking: the model's loss at every labelled position of a batch this collator
        made (`labels` [B, T] as returned, `losses` one value per label != -100, row-major; e.g.
        ``F.cross_entropy(logits[labels != -100], labels[labels != -100], reduction="none")``).
        Later batches weight tokens with a high running loss up. The statistics live in this
        object: use it in the training process (``num_workers=0``), where the losses are."""
        labels = np.ascontiguousarray(labels.detach().cpu().numpy() if hasattr(labels, "detach") else labels, dtype=np.int64)
        losses = np.ascontiguousarray(losses.detach().cpu().numpy() if hasattr(losses, "detach") else losses, dtype=np.float32).ravel()
        self._native.feedback(labels, losses)

    def stats(self, features: Sequence[Any], epochs: int = 2) -> dict:
        """What `remask inspect masking --json` reports for these rows (feature r keyed as sample r,
        epochs 0..epochs-1 at progress 0), computed by the library's own `collect_stats`."""
        if len(features) == 0 or epochs < 1:
            raise ValueError("stats needs at least one feature and one epoch")
        ids, starts = [], []
        for r, f in enumerate(features):
            if isinstance(f, Mapping):
                row = _as_id_list(f["input_ids"], f"feature {r} input_ids")
                starts.append(self._word_starts(f, r))
            else:
                row = _as_id_list(f, f"feature {r}")
                starts.append(None)
            ids.append(row)
        return json.loads(self._native.stats_json(ids, starts, epochs, self.max_length, self.pad_to_multiple_of))

    def __repr__(self) -> str:
        return f"MaskingCollator(strategy={self.config['strategy']!r}, when={self.config['when']!r}, rate={self.config['rate']}, seed={self.seed}, epoch={self.epoch})"
