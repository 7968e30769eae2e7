"""remask.torch.flex_attention against torch.nn.functional.scaled_dot_product_attention with the
dense mask: outputs and gradients within 1e-5. Needs torch (marker `torch`; CI deselects it)."""

from __future__ import annotations

import numpy as np
import pytest

from remask import BlockMask

pytestmark = pytest.mark.torch


def masks(b, t):
    rng = np.random.default_rng(1)
    lengths = rng.integers(t // 2, t + 1, size=b)
    docs = np.stack([np.sort(rng.integers(0, 4, size=t)) for _ in range(b)])
    docs[0, t - 5 :] = -1
    pre = rng.integers(0, t, size=b)
    return {
        "causal": BlockMask.causal(t),
        "padding": BlockMask.padding(lengths, t),
        "document": BlockMask.document(docs),
        "document-causal": BlockMask.document(docs, causal=True),
        "sliding": BlockMask.sliding(t, 24),
        "sliding-causal&padding": BlockMask.sliding(t, 17, causal=True) & BlockMask.padding(lengths, t),
        "prefix_lm": BlockMask.prefix_lm(pre, t),
        "causal|~sliding": BlockMask.causal(t) | ~BlockMask.sliding(t, 9),
        "full": None,
    }


def sdpa(q, k, v, dense):
    import torch

    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=dense)
    # SDPA gives NaN for a query that may read nothing; remask gives 0 (and zero gradients).
    return torch.where(dense.any(-1, keepdim=True), out, torch.zeros_like(out))


@pytest.mark.parametrize("name", list(masks(2, 8).keys()))
@pytest.mark.parametrize("b,h,t,d,tile", [(2, 3, 100, 32, 16), (3, 2, 64, 64, 64)])
def test_forward_and_gradients_equal_sdpa(name, b, h, t, d, tile):
    import torch

    from remask.torch import flex_attention

    torch.manual_seed(0)
    mask = masks(b, t)[name]
    dense = torch.ones(b, 1, t, t, dtype=torch.bool) if mask is None else torch.from_numpy(mask.to_dense(batch=b if mask.batch is None else None)).unsqueeze(1)
    q, k, v = (torch.randn(b, h, t, d, requires_grad=True) for _ in range(3))
    g = torch.randn(b, h, t, d)
    out = flex_attention(q, k, v, mask, tile=tile)
    (out * g).sum().backward()
    grads = [x.grad.clone() for x in (q, k, v)]
    for x in (q, k, v):
        x.grad = None
    ref = sdpa(q, k, v, dense)
    (ref * g).sum().backward()
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    for got, want in zip(grads, [x.grad for x in (q, k, v)]):
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_errors_non_contiguous_inputs_and_zero_copy():
    import torch

    from remask.torch import flex_attention

    b, h, t, d = 1, 2, 20, 8
    mask = BlockMask.causal(t) & BlockMask.sliding(t, 6)
    q, k, v = (torch.randn(b, h, t, d, requires_grad=True) for _ in range(3))
    with pytest.raises(ValueError, match="float32"):
        flex_attention(q.double(), k.double(), v.double(), mask)
    with pytest.raises(ValueError, match="covers 20 positions but q has 10"):
        flex_attention(q[:, :, :10], k[:, :, :10], v[:, :, :10], mask)
    with pytest.raises(ValueError, match="2 rows but q has batch 1"):
        flex_attention(q, k, v, BlockMask.padding(np.array([3, 4]), t))
    # Non-contiguous inputs work (copied once), and give the same result as contiguous ones.
    qt = q.detach().transpose(2, 3).contiguous().transpose(2, 3)
    assert not qt.is_contiguous()
    torch.testing.assert_close(flex_attention(qt, k.detach(), v.detach(), mask), flex_attention(q.detach(), k.detach(), v.detach(), mask))
    # Zero-copy: the NumPy view of a contiguous tensor shares its memory.
    x = torch.randn(2, 2, 4, 4)
    assert x.numpy().__array_interface__["data"][0] == x.data_ptr()
