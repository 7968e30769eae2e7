"""MaskingCollator against the remask library: the CLI's statistics on the same rows, keyed
determinism (independent of batch composition, i.e. of DataLoader workers), epochs and static
copies, word boundaries (incl. Chinese through jieba), shares, schedules, adaptive feedback, errors."""

from __future__ import annotations

import json
import pickle
import subprocess

import numpy as np
import pytest

import remask
from remask import MaskingCollator


def packed_rows(collator, texts, t):
    """Rows as `remask inspect masking --text` packs them: the lines' `[CLS] … [SEP]` encodings
    back to back, cut into rows of t."""
    ids, starts = [], []
    for f in collator.encode(texts):
        ids += f["input_ids"]
        starts += f["word_starts"]
    return [{"input_ids": ids[i : i + t], "word_starts": starts[i : i + t], "idx": r} for r, i in enumerate(range(0, len(ids), t))]


def realised_stats(collator, rows, epochs, t):
    """inspect masking --json's statistics computed from the collator's own batches."""
    special = set(collator.special_ids)
    eligible = sum(1 for r in rows for x in r["input_ids"] if x not in special)
    chosen = mask = rand = same = 0
    prev, overlaps = None, []
    for e in range(epochs):
        collator.set_epoch(e)
        b = collator(rows)
        assert b["input_ids"].shape[1] == t or len(rows[0]["input_ids"]) < t
        lab = b["labels"]
        ch = lab != -100
        chosen += int(ch.sum())
        inp = b["input_ids"]
        mask += int((ch & (inp == collator.mask_token_id)).sum())
        rand += int((ch & (inp != collator.mask_token_id) & (inp != lab)).sum())
        same += int((ch & (inp == lab)).sum())
        if prev is not None:
            for r in range(len(rows)):
                n = int(ch[r].sum())
                if n:
                    overlaps.append(int((ch[r] & prev[r]).sum()) / n)
        prev = ch
    return {
        "eligible_tokens": eligible,
        "chosen_tokens": chosen,
        "mask_rate": chosen / (eligible * epochs),
        "mask_token_share": mask / chosen,
        "random_token_share": rand / chosen,
        "unchanged_share": same / chosen,
        "epoch_overlap": sum(overlaps) / len(overlaps) if overlaps else 0.0,
    }


@pytest.mark.parametrize(
    "strategy,when,dupe",
    [("token", "dynamic", None), ("whole-word", "dynamic", None), ("span", "dynamic", None), ("token", "static", 2), ("whole-word", "static", 1)],
)
def test_statistics_equal_remask_inspect_masking_json(tokenizer_path, texts, remask_bin, strategy, when, dupe):
    t, seed, epochs = 32, 77, 3
    c = MaskingCollator(str(tokenizer_path), strategy=strategy, when=when, dupe_factor=dupe, rate=0.3, seed=seed)
    rows = packed_rows(c, texts, t)
    cmd = [remask_bin, "inspect", "masking", "--text", "\n".join(texts), "--tokenizer", str(tokenizer_path), "--json",
           "--strategy", strategy, "--when", when, "--rate", "0.3", "--seed", str(seed), "--seq-len", str(t), "--epochs", str(epochs)]
    if dupe:
        cmd += ["--dupe-factor", str(dupe)]
    cli = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    mine = realised_stats(c, rows, epochs, t)
    assert cli["rows"] == len(rows)
    assert cli["chosen_ineligible"] == 0
    for k, v in mine.items():
        assert cli[k] == pytest.approx(v, abs=1e-12), k
    # The library's own statistics over the same rows, through the binding.
    lib = c.stats(rows, epochs)
    for k in mine:
        assert lib[k] == pytest.approx(cli[k], abs=1e-12), k
    if when == "static" and dupe == 1:
        assert mine["epoch_overlap"] == 1.0


def test_pmi_masks_equal_remask_inspect_masking_json(tokenizer_path, remask_bin, tmp_path):
    """PMI masking with the n-gram vocabulary of a directory `remask prepare --strategy pmi` made:
    the same statistics as `remask inspect masking --strategy pmi` over the same text (which counts
    the same vocabulary over it: the whole text is the training split here), n-grams masked whole."""
    from conftest import ENGLISH

    lines = ENGLISH * 8
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    prepared = tmp_path / "prepared"
    subprocess.run([remask_bin, "prepare", "--quiet", "--input", str(tmp_path / "in.txt"), "--tokenizer", str(tokenizer_path),
                    "--strategy", "pmi", "--seq-len", "32", "--validation-share", "0", "--out", str(prepared)],
                   check=True, capture_output=True, text=True)
    meta = json.loads((prepared / "meta.json").read_text())
    assert meta["train"]["documents"] == len(lines) and meta["ngrams"]["entries"] > 0
    t, seed, epochs = 32, 77, 3
    c = MaskingCollator(str(tokenizer_path), strategy="pmi", ngrams=prepared, rate=0.3, seed=seed)
    rows = packed_rows(c, lines, t)
    cmd = [remask_bin, "inspect", "masking", "--text", "\n".join(lines), "--tokenizer", str(tokenizer_path), "--json",
           "--strategy", "pmi", "--rate", "0.3", "--seed", str(seed), "--seq-len", str(t), "--epochs", str(epochs)]
    cli = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    assert cli["pmi"]["vocabulary"] == meta["ngrams"]["entries"] and cli["pmi"]["ngrams_split"] == 0
    mine = realised_stats(c, rows, epochs, t)
    assert cli["rows"] == len(rows)
    for k, v in mine.items():
        assert cli[k] == pytest.approx(v, abs=1e-12), k
    # (The realised rate is the library's: 0.25 here for 0.3, rows of 32 tokens whose words are 90%
    # inside n-grams of up to 5 words; on real text and longer rows it is on target, see
    # crates/remask-cli/tests/masking_cli.rs.)
    assert 0.2 < mine["mask_rate"] <= 0.3
    # Another directory's vocabulary does not fit this tokenizer's ids: refused, naming the file.
    with pytest.raises(Exception, match="ngrams.bin"):
        MaskingCollator(str(tokenizer_path), strategy="pmi", ngrams=tmp_path / "nowhere")


def test_masks_do_not_depend_on_batch_composition(tokenizer_path, texts):
    c = MaskingCollator(tokenizer_path, strategy="whole-word", seed=3)
    feats = c.encode(texts * 3)
    whole = c(feats)
    # Other batches (as other DataLoader workers would make them), shuffled and padded differently.
    order = np.random.default_rng(0).permutation(len(feats))
    for part in np.array_split(order, 4):
        b = c([feats[i] for i in part])
        for j, i in enumerate(part):
            n = len(feats[i]["input_ids"])
            assert (b["input_ids"][j, :n] == whole["input_ids"][i, :n]).all()
            assert (b["labels"][j, :n] == whole["labels"][i, :n]).all()
    # Pickled (a spawned worker's copy) gives the same masks.
    c2 = pickle.loads(pickle.dumps(c))
    assert (c2(feats)["labels"] == whole["labels"]).all()


def test_labels_padding_and_special_tokens(tokenizer_path, texts):
    c = MaskingCollator(tokenizer_path, rate=0.5, seed=1, pad_to_multiple_of=16)
    feats = c.encode(texts)
    b = c(feats)
    lens = [len(f["input_ids"]) for f in feats]
    assert b["input_ids"].shape == (len(feats), (max(lens) + 15) // 16 * 16)
    assert b["input_ids"].dtype == np.int64 and b["labels"].dtype == np.int64
    special = np.isin(np.array([f["input_ids"] + [0] * (b["input_ids"].shape[1] - len(f["input_ids"])) for f in feats]), c.special_ids)
    for r, n in enumerate(lens):
        assert (b["attention_mask"][r, :n] == 1).all() and (b["attention_mask"][r, n:] == 0).all()
        assert (b["input_ids"][r, n:] == c.pad_token_id).all()
        orig = np.array(feats[r]["input_ids"])
        lab = b["labels"][r, :n]
        chosen = lab != -100
        assert (lab[chosen] == orig[chosen]).all()
        assert (b["input_ids"][r, :n][~chosen] == orig[~chosen]).all()
        assert (b["labels"][r, n:] == -100).all()
    assert not (special & (b["labels"] != -100)).any()
    # Random replacements never draw special tokens.
    rnd = (b["labels"] != -100) & (b["input_ids"] != c.mask_token_id) & (b["input_ids"] != b["labels"])
    assert not np.isin(b["input_ids"][rnd], c.special_ids).any()


def test_epochs_and_static_copies(tokenizer_path, texts):
    feats = MaskingCollator(tokenizer_path).encode(texts * 4)
    dyn = MaskingCollator(tokenizer_path, seed=9)
    sta = MaskingCollator(tokenizer_path, when="static", dupe_factor=3, seed=9)
    by_epoch = {}
    for e in range(7):
        dyn.set_epoch(e)
        sta.set_epoch(e)
        by_epoch[e] = (dyn(feats)["labels"], sta(feats)["labels"])
    assert not (by_epoch[0][0] == by_epoch[1][0]).all(), "dynamic masks change with the epoch"
    for e in range(7):
        # Static copy e mod K is the dynamic mask of key epoch e mod K.
        assert (by_epoch[e][1] == by_epoch[e % 3][0]).all()
    assert sta.key_epoch(5) == 2


def test_whole_word_masks_every_piece_and_chinese_words_come_from_jieba(tokenizer_path, texts):
    c = MaskingCollator(tokenizer_path, strategy="whole-word", rate=0.4, seed=5)
    feats = c.encode(texts * 5)
    b = c(feats)
    for r, f in enumerate(feats):
        starts, chosen = f["word_starts"], b["labels"][r] != -100
        word, words = [], []
        for i, s in enumerate(starts):
            if s and word:
                words.append(word)
                word = []
            word.append(i)
        words.append(word)
        for w in words:
            assert len({bool(chosen[i]) for i in w}) == 1, f"row {r}: word {w} partly masked"
    # Chinese: one token per character, words from jieba (中华人民共和国 is one word).
    zh = c.encode([texts[-3]])[0]
    assert sum(zh["word_starts"][1:8]) == 1
    # The same word starts from Hugging Face style character offsets plus the text.
    text = texts[-3]
    offsets = [(0, 0)] + [(i, i + 1) for i in range(len(text))] + [(0, 0)]
    assert len(offsets) == len(zh["input_ids"])
    via_offsets = c([{"input_ids": zh["input_ids"], "offset_mapping": offsets, "text": text, "idx": 0}])
    via_starts = c([{"input_ids": zh["input_ids"], "word_starts": zh["word_starts"], "idx": 0}])
    assert (via_offsets["labels"] == via_starts["labels"]).all()
    # word_ids (HF BatchEncoding.word_ids()) give the same boundaries as word_starts.
    wid, k = [], -1
    for s in zh["word_starts"]:
        k += s
        wid.append(k)
    via_ids = c([{"input_ids": zh["input_ids"], "word_ids": wid, "idx": 0}])
    assert (via_ids["labels"] == via_starts["labels"]).all()


def test_pieces_rule_without_word_boundaries(tokenizer_path, texts):
    c = MaskingCollator(tokenizer_path, strategy="whole-word", seed=2)
    f = c.encode(["Tokenization splits unbelievable words"])[0]
    plain = c([{"input_ids": f["input_ids"], "idx": 0}])
    given = c([f])
    assert (plain["labels"] == given["labels"]).all()
    # Token masking reads no word starts, so the collator skips the pieces rule for it: any given
    # word starts give the same masks (this fails if the library's token strategy starts using them).
    tok = MaskingCollator(tokenizer_path, strategy="token", rate=0.3, seed=2)
    rows = [g["input_ids"] for g in c.encode(texts)]
    plain = tok(rows)
    given = tok([{"input_ids": r, "word_starts": [i % 3 == 0 for i in range(len(r))]} for r in rows])
    assert (plain["labels"] != -100).any()
    assert (plain["labels"] == given["labels"]).all() and (plain["input_ids"] == given["input_ids"]).all()


def test_replacement_shares_and_rate_schedule(tokenizer_path, texts):
    feats = MaskingCollator(tokenizer_path).encode(texts * 40)
    c = MaskingCollator(tokenizer_path, mask_replace_prob=0.5, random_replace_prob=0.5, rate=0.2, seed=4)
    s = c.stats(feats, epochs=2)
    assert s["unchanged_share"] < 0.05 and abs(s["mask_token_share"] - 0.5) < 0.05
    sch = MaskingCollator(tokenizer_path, schedule="linear", rate=0.4, final_rate=0.1, seed=4)
    special = set(sch.special_ids)
    eligible = sum(1 for f in feats for x in f["input_ids"] if x not in special)
    rates = []
    for p in (0.0, 1.0):
        sch.set_progress(p)
        rates.append(float((sch(feats)["labels"] != -100).sum()) / eligible)
    assert rates[0] == pytest.approx(0.4, abs=0.02) and rates[1] == pytest.approx(0.1, abs=0.02)


def test_adaptive_feedback_moves_masks_toward_high_loss_tokens(tokenizer_path, texts):
    feats = MaskingCollator(tokenizer_path).encode(texts * 20)
    a = MaskingCollator(tokenizer_path, when="adaptive", seed=8, temperature=0.1, uniform_mix=0.0)
    before = a(feats)
    target = int(np.bincount(np.array([x for f in feats for x in f["input_ids"]])).argsort()[-10])  # a frequent id
    for _ in range(3):
        b = a(feats)
        lab = b["labels"]
        losses = np.where(lab[lab != -100] == target, 20.0, 0.1).astype(np.float32)
        a.feedback(lab, losses)
    after = a(feats)
    hit = lambda x: int((x["labels"] == target).sum())
    assert hit(after) > hit(before)


def test_token_type_ids_are_padded_with_zeros(tokenizer_path):
    c = MaskingCollator(tokenizer_path, seed=1)
    feats = [{"input_ids": [2, 10, 3], "token_type_ids": [0, 1, 1]}, {"input_ids": [2, 3], "token_type_ids": np.array([1, 0])}]
    b = c(feats)
    assert b["token_type_ids"].tolist() == [[0, 1, 1], [1, 0, 0]]
    assert b["token_type_ids"].dtype == np.int64 and b["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]


def test_causal_mode_and_plain_id_lists(tokenizer_path):
    c = MaskingCollator(tokenizer_path, mlm=False)
    b = c([[2, 10, 11, 3], [2, 12, 3]])
    assert b["labels"].tolist() == [[2, 10, 11, 3], [2, 12, 3, -100]]
    m = MaskingCollator(tokenizer_path, seed=1)
    assert (m([[2, 10, 11, 3]])["labels"] == m([[2, 10, 11, 3]])["labels"]).all()


def test_every_input_form_gives_the_same_batch(tokenizer_path, texts):
    """Lists, int64 / int32 / strided NumPy rows, tuples, dicts and a [B, T] array are read by
    different native paths; the same rows give the same batch."""
    c = MaskingCollator(tokenizer_path, strategy="whole-word", rate=0.3, seed=6)
    ragged = [f["input_ids"] for f in c.encode(texts)]
    want = c(ragged)
    assert (want["labels"] != -100).any()
    forms = {
        "int64 rows": [np.array(r, dtype=np.int64) for r in ragged],
        "int32 rows": [np.array(r, dtype=np.int32) for r in ragged],
        "strided rows": [np.repeat(np.array(r, dtype=np.int64), 2)[::2] for r in ragged],
        "tuples": [tuple(r) for r in ragged],
        "tuple of lists": tuple(ragged),
        "dicts": [{"input_ids": r} for r in ragged],
        "dicts of arrays": [{"input_ids": np.array(r)} for r in ragged],
        "numpy ints in lists": [[np.int64(x) if i % 3 == 0 else x for i, x in enumerate(r)] for r in ragged],
    }
    for name, feats in forms.items():
        got = c(feats)
        for k in ("input_ids", "labels", "attention_mask"):
            assert (got[k] == want[k]).all(), (name, k)
    # Equal-length rows as one [B, T] array, C-ordered, Fortran-ordered or int32.
    t = min(len(r) for r in ragged)
    square = [r[:t] for r in ragged]
    want = c(square)
    for m in (np.array(square), np.asfortranarray(np.array(square)), np.array(square, dtype=np.int32)):
        got = c(m)
        for k in ("input_ids", "labels", "attention_mask"):
            assert (got[k] == want[k]).all(), (m.dtype, m.flags["C_CONTIGUOUS"], k)


def test_reused_buffers_and_threads_do_not_change_masks(tokenizer_path, texts):
    """The native side reuses its buffers between calls and masks without the GIL: a batch after a
    larger one, batches from several threads at once, and a batch masked on rayon's threads (>= 128
    rows) equal a fresh collator's."""
    import threading

    feats = MaskingCollator(tokenizer_path).encode(texts * 20)
    small = [f["input_ids"][:5] for f in feats[:3]]
    c = MaskingCollator(tokenizer_path, strategy="span", seed=12)
    want_small = MaskingCollator(tokenizer_path, strategy="span", seed=12)(small)
    whole = c(feats)  # 180 rows: masked in parallel
    got_small = c(small)
    for k in want_small:
        assert (got_small[k] == want_small[k]).all(), k
    for i in range(0, len(feats), 7):  # the same rows in small (serial) batches
        part = c(feats[i : i + 7])
        t = part["labels"].shape[1]
        assert (part["labels"] == whole["labels"][i : i + 7, :t]).all()
        assert (whole["labels"][i : i + 7, t:] == -100).all()
    results, errors = {}, []

    def work(k):
        try:
            for _ in range(20):
                results[k] = c(feats[k * 9 : k * 9 + 9])
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    for k, b in results.items():
        t = b["labels"].shape[1]
        assert (b["labels"] == whole["labels"][k * 9 : k * 9 + 9, :t]).all(), k


def test_bad_input_is_refused_with_a_message(tokenizer_path):
    with pytest.raises(ValueError, match="unknown variant `bogus`"):
        MaskingCollator(tokenizer_path, strategy="bogus")
    # PMI masking needs a prepared directory's n-gram vocabulary (`ngrams=`).
    with pytest.raises(ValueError, match="n-gram vocabulary"):
        MaskingCollator(tokenizer_path, strategy="pmi")
    with pytest.raises(ValueError, match="masking.when"):
        MaskingCollator(tokenizer_path, when="static", schedule="linear", final_rate=0.1)
    with pytest.raises(ValueError, match="rate"):
        MaskingCollator(tokenizer_path, rate=1.5)
    with pytest.raises(ValueError, match="dupe_factor"):
        MaskingCollator(tokenizer_path, dupe_factor=3)
    with pytest.raises(FileNotFoundError):
        MaskingCollator("/nonexistent/tokenizer.json")
    bad = tokenizer_path.parent / "bad.json"
    bad.write_text("{ not json")
    with pytest.raises(ValueError, match="bad.json: not a valid tokenizer.json"):
        MaskingCollator(bad)
    c = MaskingCollator(tokenizer_path)
    with pytest.raises(ValueError, match="outside the tokenizer's vocabulary"):
        c([[2, 999999, 3]])
    with pytest.raises(ValueError, match="feature 1, position 2: id -1 is outside"):
        c([[2, 3], np.array([2, 10, -1, 3])])
    with pytest.raises(ValueError, match="feature 0, position 1: id .* is outside"):
        c([[2, 2**70, 3]])
    with pytest.raises(ValueError, match="feature 1, position 0: id 99999 is outside"):
        c(np.array([[2, 3], [99999, 3]]))
    with pytest.raises(TypeError, match="sequence of token ids"):
        c([[2, 3], 7])
    with pytest.raises(ValueError, match="feature 0: token_type_ids has 2 entries for 3 input_ids"):
        c([{"input_ids": [2, 10, 3], "token_type_ids": [0, 0]}])
    with pytest.raises(ValueError, match="token_type_ids of feature 1, position 0: -1 is not a token type id"):
        c([{"input_ids": [2, 3], "token_type_ids": [0, 0]}, {"input_ids": [2, 3], "token_type_ids": [-1, 0]}])
    with pytest.raises(ValueError, match="no input_ids"):
        c([{"ids": [1]}])
    with pytest.raises(ValueError, match="max_length"):
        MaskingCollator(tokenizer_path, max_length=2)([[2, 10, 3]])
    with pytest.raises(ValueError, match="word_ids / word_starts has 1 entries"):
        c([{"input_ids": [2, 10, 3], "word_starts": [True]}])
    with pytest.raises(ValueError, match="mix dicts and plain"):
        c([[2, 10, 3], {"input_ids": [2, 3]}])
    with pytest.raises(ValueError, match="at least one feature"):
        c.stats([])


def test_package_does_not_import_torch():
    import sys

    code = "import remask, sys; remask.MaskingCollator; remask.BlockMask; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    assert out == "False"


@pytest.mark.torch
def test_torch_tensors_and_dataloader_workers(tokenizer_path, texts):
    import torch
    from torch.utils.data import DataLoader

    c = MaskingCollator(tokenizer_path, strategy="span", seed=11, return_tensors="pt")
    feats = c.encode(texts * 8)
    b = c(feats[:4])
    assert isinstance(b["input_ids"], torch.Tensor) and b["input_ids"].dtype == torch.int64
    # Tensors as rows, and a [B, T] tensor as the batch, give the same masks as lists.
    rows = [f["input_ids"][:6] for f in feats[:4]]
    want = c(rows)
    for given in ([torch.tensor(r) for r in rows], torch.tensor(rows), torch.tensor(rows, dtype=torch.int32)):
        got = c(given)
        assert all(torch.equal(got[k], want[k]) for k in want)
    c.set_epoch(2)
    runs = []
    for workers in (0, 2):
        dl = DataLoader(feats, batch_size=5, shuffle=False, num_workers=workers, collate_fn=c)
        runs.append([x["labels"] for x in dl])
    assert len(runs[0]) == len(runs[1]) == 15
    for a, b2 in zip(*runs):
        assert torch.equal(a, b2)
