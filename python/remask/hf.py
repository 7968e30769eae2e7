"""Hugging Face Trainer glue: :class:`MaskingCallback` keeps a :class:`remask.MaskingCollator`'s
epoch and progress in step with training. Imports transformers (only this module does)."""

from __future__ import annotations

from transformers import TrainerCallback

from .collator import MaskingCollator

__all__ = ["MaskingCallback"]


class MaskingCallback(TrainerCallback):
    """Calls ``collator.set_epoch`` at the start of every epoch and ``collator.set_progress`` at
    every step (for rate schedules).

    The collator runs where the DataLoader calls it: with ``dataloader_num_workers=0`` (the
    Trainer's default) that is this process and every update is seen at once. With workers, each
    worker holds a copy made when the DataLoader starts its iterator, so the epoch reaches it only if
    workers are started anew each epoch (``dataloader_persistent_workers=False``, the default) and
    schedules move at worker starts only.
    """

    def __init__(self, collator: MaskingCollator):
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.collator.set_epoch(int(round(state.epoch or 0)))

    def on_step_begin(self, args, state, control, **kwargs):
        if state.max_steps:
            self.collator.set_progress(min(1.0, state.global_step / state.max_steps))
