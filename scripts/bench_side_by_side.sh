#!/bin/bash
# Side-by-side training-step throughput: remask (one or two binaries, bf16 and fp32) against
# PyTorch's bf16 autocast, in alternating rounds, on config R with 2 threads (docs/performance.md,
# "Mixed precision"). Needs `pip install torch`. Prints one JSON line per measurement and a summary.
#
#   scripts/bench_side_by_side.sh NEW_REMASK [OLD_REMASK] [ROUNDS]
#   e.g. scripts/bench_side_by_side.sh target/release/remask /tmp/remask-main 2
set -euo pipefail
new=${1:?usage: scripts/bench_side_by_side.sh NEW_REMASK [OLD_REMASK] [ROUNDS]}
old=${2:-}
rounds=${3:-2}
# TORCH_REF: another copy of the reference (e.g. ../shared/bench/torch_reference.py).
torch_ref=${TORCH_REF:-"$(dirname "$0")/torch_reference.py"}
out=$(mktemp)
tps() { python3 -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])["tokens_per_s"])'; }
emit() { echo "{\"round\":$1,\"who\":\"$2\",\"task\":\"$3\",\"mask\":\"$4\",\"tokens_per_s\":$5}" | tee -a "$out"; }
for round in $(seq "$rounds"); do
  for case in "mlm padding" "mlm document" "clm causal"; do
    set -- $case
    task=$1 mask=$2 head=()
    [ "$task" = mlm ] && head=(--head gathered)
    bins=("new=$new")
    [ -n "$old" ] && bins+=("old=$old")
    for b in "${bins[@]}"; do
      emit "$round" "remask-${b%%=*}-bf16" "$task" "$mask" \
        "$("${b#*=}" bench train --task "$task" --mask "$mask" --threads 2 --precision bf16 | tps)"
    done
    emit "$round" torch-bf16 "$task" "$mask" \
      "$(python3 "$torch_ref" --task "$task" --mask "$mask" "${head[@]}" --threads 2 --bf16 | tps)"
    for b in "${bins[@]}"; do
      emit "$round" "remask-${b%%=*}-fp32" "$task" "$mask" \
        "$("${b#*=}" bench train --task "$task" --mask "$mask" --threads 2 | tps)"
    done
  done
done
python3 - "$out" <<'PY'
import collections, json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = collections.defaultdict(dict)
for r in rows:
    by[(r["task"], r["mask"], r["round"])][r["who"]] = r["tokens_per_s"]
for (task, mask, rnd), v in sorted(by.items()):
    line = f"{task} {mask} round {rnd}: remask bf16 / torch bf16 = {v['remask-new-bf16'] / v['torch-bf16']:.2f}x"
    if "remask-old-bf16" in v:
        line += f" (old {v['remask-old-bf16'] / v['torch-bf16']:.2f}x); fp32 new / old = {v['remask-new-fp32'] / v['remask-old-fp32']:.2f}x"
    print(line)
PY
rm -f "$out"
