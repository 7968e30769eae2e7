"""BlockMask constructors and combinators against their rules, evaluated densely (no torch)."""

from __future__ import annotations

import numpy as np
import pytest

from remask import BlockMask


def test_constructors_follow_their_rules():
    t = 12
    q, k = np.meshgrid(np.arange(t), np.arange(t), indexing="ij")
    assert (BlockMask.causal(t).to_dense()[0] == (k <= q)).all()
    assert (BlockMask.full(t).to_dense()[0]).all()
    assert (BlockMask.sliding(t, 4, causal=True).to_dense()[0] == ((k <= q) & (k > q - 4))).all()
    assert (BlockMask.sliding(t, 5).to_dense()[0] == ((k >= q - 2) & (k <= q + 2))).all()
    lengths = np.array([12, 7])
    pad = BlockMask.padding(lengths, t).to_dense()
    assert pad.shape == (2, t, t)
    for b in range(2):
        assert (pad[b] == (k < lengths[b])).all()
    docs = np.array([[0] * 5 + [1] * 4 + [-1] * 3, [0] * 12])
    d = BlockMask.document(docs).to_dense()
    for b in range(2):
        same = (docs[b][:, None] == docs[b][None, :]) & (docs[b][None, :] >= 0) & (docs[b][:, None] >= 0)
        assert (d[b] == same).all()
    dc = BlockMask.document(docs, causal=True).to_dense()
    assert (dc == (d & (k <= q))).all()
    pre = np.array([4, 0])
    p = BlockMask.prefix_lm(pre, t).to_dense()
    for b in range(2):
        assert (p[b] == ((k < pre[b]) | (k <= q))).all()


def test_combinators_and_broadcast():
    t = 16
    lengths = np.array([16, 9, 3])
    c, s, pad = BlockMask.causal(t), BlockMask.sliding(t, 3), BlockMask.padding(lengths, t)
    both = (c & pad).to_dense()
    assert both.shape == (3, t, t)
    assert (both == (c.to_dense(batch=3) & pad.to_dense())).all()
    assert ((c | s).to_dense() == (c.to_dense() | s.to_dense())).all()
    assert ((~c).to_dense() == ~c.to_dense()).all()
    assert (c & pad).batch == 3 and c.batch is None and c.seq_len == t
    dense = np.random.default_rng(0).random((2, t, t)) < 0.3
    assert (BlockMask.from_dense(dense).to_dense() == dense).all()
    assert "causal" in repr(c)


def test_tiles_and_sparsity():
    s = BlockMask.sliding(256, 16, causal=True)
    assert s.sparsity(tile=32) > 0.7
    assert BlockMask.full(64).sparsity(tile=16) == 0.0
    assert len(BlockMask.causal(64).render(tile=16).strip().splitlines()) == 4


def test_bad_combinations_are_refused():
    with pytest.raises(ValueError, match="T = 8 and T = 9"):
        BlockMask.causal(8) & BlockMask.causal(9)
    with pytest.raises(ValueError, match="2 and 3 rows"):
        BlockMask.padding(np.array([1, 2]), 4) | BlockMask.padding(np.array([1, 2, 3]), 4)
    with pytest.raises(ValueError, match=r"lengths\[1\] = 9"):
        BlockMask.padding(np.array([1, 9]), 4)
    with pytest.raises(ValueError, match="window"):
        BlockMask.sliding(8, 0)
    with pytest.raises(ValueError, match=r"expected \[B, T, T\] booleans, got shape \[3, 3\]"):
        BlockMask.from_dense(np.ones((3, 3), bool))
