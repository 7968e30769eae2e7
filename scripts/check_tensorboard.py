#!/usr/bin/env python3
"""Checks that TensorBoard reads the event files `remask train` writes, and that their scalars equal
metrics.jsonl. Test-time helper only (TensorBoard is not a dependency of remask):

    python3 -m venv /tmp/tb && /tmp/tb/bin/pip install tensorboard
    /tmp/tb/bin/python scripts/check_tensorboard.py RUN_DIR

Exits non-zero (with a message) when a check fails.
"""
import json
import math
import sys
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main(run_dir: str) -> int:
    run = Path(run_dir)
    acc = EventAccumulator(str(run / "tensorboard"), purge_orphaned_data=True)
    acc.Reload()
    tags = acc.Tags()["scalars"]
    for want in ["train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s", "train/mask_rate"]:
        if want not in tags:
            print(f"missing scalar tag {want}; found {tags}")
            return 1
    train = {}
    evals = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "train":
            train[rec["step"]] = rec
        elif rec.get("kind") == "eval":
            evals[rec["step"]] = rec
    loss = {e.step: e.value for e in acc.Scalars("train/loss")}
    if sorted(loss) != sorted(train):
        print(f"steps differ: tensorboard {sorted(loss)[:10]}..., metrics.jsonl {sorted(train)[:10]}...")
        return 1
    for step, rec in train.items():
        for tag, key in [("train/loss", "loss"), ("train/lr", "lr"), ("train/grad_norm", "grad_norm")]:
            got = {e.step: e.value for e in acc.Scalars(tag)}[step]
            if not math.isclose(got, rec[key], rel_tol=1e-6, abs_tol=1e-12):
                print(f"{tag} at step {step}: tensorboard {got}, metrics.jsonl {rec[key]}")
                return 1
    if evals:
        ev = {e.step: e.value for e in acc.Scalars("eval/loss")}
        for step, rec in evals.items():
            if not math.isclose(ev[step], rec["loss"], rel_tol=1e-6):
                print(f"eval/loss at step {step}: tensorboard {ev[step]}, metrics.jsonl {rec['loss']}")
                return 1
    print(f"ok: {len(train)} train steps, {len(evals)} evaluations, tags {sorted(tags)}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
