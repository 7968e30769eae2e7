"""remask for Python: the MLM masking collator and the block-sparse CPU attention of the remask
Rust library.

- :class:`MaskingCollator` — drop-in for ``transformers.DataCollatorForLanguageModeling``: token,
  whole-word (Chinese words through jieba) and span masking, rate schedules, configurable 80/10/10,
  static / dynamic / adaptive masks keyed by (seed, epoch, sample index).
- :class:`BlockMask` — attention masks (``causal``, ``padding``, ``document``, ``sliding``,
  ``prefix_lm``, ``full``, ``from_dense``) combined with ``&``, ``|``, ``~``.
- :func:`remask.torch.flex_attention` — fused block-sparse attention with forward and backward on
  CPU float32 tensors (imports torch; this module does not).
- :mod:`remask.hf` — a Trainer callback that feeds the epoch and progress to the collator.
"""

from ._native import DEFAULT_TILE, BlockMask
from .collator import IGNORE_INDEX, STRATEGIES, MaskingCollator

__all__ = ["MaskingCollator", "BlockMask", "DEFAULT_TILE", "IGNORE_INDEX", "STRATEGIES"]
