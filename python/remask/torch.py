"""`flex_attention` for PyTorch on CPU: remask's fused block-sparse attention (forward and backward)
as a ``torch.autograd.Function``. Empty tiles of the :class:`remask.BlockMask` are skipped in both
passes; full tiles run without a per-element test.

Inputs are CPU float32 tensors ``[B, H, T, D]``. Contiguous inputs are not copied: the kernel reads
their memory through ``Tensor.numpy()`` views and writes into tensors allocated here. This module is
the only one that imports torch.
"""

from __future__ import annotations

import math

import torch

from . import _native
from ._native import DEFAULT_TILE, BlockMask

__all__ = ["flex_attention", "BlockMask"]


def _check(name: str, t: torch.Tensor) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.device.type != "cpu" or t.dtype != torch.float32:
        raise ValueError(f"{name}: remask's attention runs on CPU float32 tensors, got {t.dtype} on {t.device}")
    if t.dim() != 4:
        raise ValueError(f"{name}: expected [B, H, T, D], got shape {tuple(t.shape)}")


def _view(t: torch.Tensor):
    """A NumPy view of `t`'s memory (no copy when `t` is contiguous)."""
    return t.detach().contiguous().numpy()


class FlexAttentionFunction(torch.autograd.Function):
    """out = softmax(scale · q kᵀ, masked by `block_mask`) v, with lse saved for the backward."""

    @staticmethod
    def forward(ctx, q, k, v, block_mask, scale, tile):
        q, k, v = (x.detach().contiguous() for x in (q, k, v))
        out = torch.empty_like(q)
        lse = torch.empty(q.shape[:3], dtype=torch.float32)
        _native.attention_forward(q.numpy(), k.numpy(), v.numpy(), block_mask, scale, out.numpy(), lse.numpy(), tile)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.block_mask, ctx.scale, ctx.tile = block_mask, scale, tile
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        _native.attention_backward(
            _view(dout), q.numpy(), k.numpy(), v.numpy(), out.numpy(), lse.numpy(), ctx.block_mask, ctx.scale,
            dq.numpy(), dk.numpy(), dv.numpy(), ctx.tile,
        )
        return dq, dk, dv, None, None, None


def flex_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    block_mask: BlockMask | None = None,
    scale: float | None = None,
    *,
    tile: int = DEFAULT_TILE,
) -> torch.Tensor:
    """Masked scaled-dot-product attention, ``[B, H, T, D]`` → ``[B, H, T, D]``.

    ``block_mask`` says which keys each query may read (``None``: all); ``scale`` defaults to
    1/sqrt(D). A query that may read no key gets a zero output and zero gradients (never NaN).
    Differentiable in query, key and value. Unlike ``torch.nn.attention.flex_attention`` there is
    no ``score_mod``, no GQA, and masks are built from :class:`remask.BlockMask` constructors rather
    than a Python predicate (``BlockMask.from_dense`` takes any boolean ``[B, T, T]`` mask).
    """
    for name, t in (("query", query), ("key", key), ("value", value)):
        _check(name, t)
    if query.shape[-1] == 0:
        raise ValueError("query: the head dimension D is 0")
    t = query.shape[2]
    if block_mask is None:
        block_mask = BlockMask.full(t)
    if not isinstance(block_mask, BlockMask):
        raise TypeError(f"block_mask: expected a remask.BlockMask, got {type(block_mask).__name__}")
    if scale is None:
        scale = 1.0 / math.sqrt(query.shape[-1])
    return FlexAttentionFunction.apply(query, key, value, block_mask, float(scale), int(tile))
