#!/usr/bin/env bash
# Data-parallel tests over MPI: builds remask with `--features mpi` and checks on loopback that 2 ranks
# (half of every batch each) train like 1 rank with the whole batch: same rows and masks, same
# parameters up to summation order, ranks in sync, exact resume. Installs Open MPI and libclang with
# apt-get when `mpirun` is missing (Debian/Ubuntu, as root). Ends with `N passed, M failed`.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v mpirun >/dev/null || ! command -v mpicc >/dev/null; then
    echo "mpi-tests: installing libopenmpi-dev openmpi-bin libclang-dev"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq libopenmpi-dev openmpi-bin libclang-dev >/dev/null
fi
# Open MPI refuses to run as root without these; CI runs as root.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Loopback only: shared memory between the ranks, no network interfaces probed.
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none

cargo build -p remask-cli --features mpi,testing
bin=target/debug/remask

passed=0
failed=0
run() {
    local name=$1
    shift
    echo "mpi-tests: $name"
    if timeout 300 "$@"; then
        passed=$((passed + 1))
    else
        echo "mpi-tests: FAILED: $name" >&2
        failed=$((failed + 1))
    fi
}
mpi=(mpirun --allow-run-as-root --oversubscribe)

run "2 ranks == 1 rank (accumulation, adaptive masking, resume)" "${mpi[@]}" -np 2 "$bin" dist-check
run "2 ranks, tiny buckets (many all-reduce calls)" "${mpi[@]}" -np 2 "$bin" dist-check --bucket-elems 7 --steps 8 --checkpoint-every 3
run "3 ranks, uneven shares" "${mpi[@]}" -np 3 "$bin" dist-check --batch-size 14 --micro-batch-size 7
run "2 ranks, real encoder (MLM, adaptive masking)" "${mpi[@]}" -np 2 "$bin" dist-check --model encoder
run "2 ranks, real decoder (CLM)" "${mpi[@]}" -np 2 "$bin" dist-check --model decoder
run "1 rank under mpirun" "${mpi[@]}" -np 1 "$bin" dist-check

# `remask compare` spread over ranks: the runs are shared out, rank 0 writes the report, which must
# equal a single process's except for timings.
cmp_dir=$(mktemp -d)
cat > "$cmp_dir/tiny.toml" <<'TOML'
[compare]
strategies = ["static", "dynamic"]
seeds = 2
dupe_factor = 2
regimes = [1, 4]
threads = 1
max_documents = 300
eval_every_steps = 3
eval_batches = 2
eval_batch_size = 8
minimal_pairs = ""

[data]
seq_len = 32
validation_share = 0.2
tokenizer = { vocab_size = 200 }

[model]
arch = "encoder"
d_model = 16
n_heads = 2
n_layers = 1
d_ff = 32
max_positions = 32

[optimizer]
batch_size = 8

[budget]
steps = 6
TOML
cat > "$cmp_dir/same_report.sh" <<'SH'
# usage: same_report.sh BIN DIR N MPIRUN...: one process and N ranks give the same report.
set -euo pipefail
bin=$1; dir=$2; n=$3; shift 3
"$bin" compare --config "$dir/tiny.toml" --out "$dir/one" --force --log-lines >/dev/null 2>&1
"$@" -np "$n" "$bin" compare --config "$dir/tiny.toml" --out "$dir/np$n" --log-lines >/dev/null
python3 - "$dir/one/report.json" "$dir/np$n/report.json" <<'PY'
import json, sys
timing = {"tokens_per_s", "wall_s", "masking_ms_per_step", "seconds", "run_dir"}
def strip(x):
    if isinstance(x, dict):
        return {k: strip(v) for k, v in x.items() if k not in timing}
    if isinstance(x, list):
        return [strip(v) for v in x]
    return x
a, b = (json.load(open(p)) for p in sys.argv[1:])
ra, rb = strip(a["runs"]), strip(b["runs"])
assert len(ra) == len(rb) > 0, (len(ra), len(rb))
for x, y in zip(ra, rb):
    assert x == y, (x.get("strategy"), x.get("regime"), x.get("seed"))
assert strip(a["comparisons"]) == strip(b["comparisons"]), "comparisons differ"
assert strip(a["audit"]) == strip(b["audit"]), "audit differs"
print(f"compare under mpirun: {len(rb)} runs and {len(b['comparisons'])} comparisons equal a single process's")
PY
SH
run "compare over 2 ranks == 1 process (runs, comparisons, audit)" bash "$cmp_dir/same_report.sh" "$bin" "$cmp_dir" 2 "${mpi[@]}"
run "compare over 3 ranks == 1 process" bash "$cmp_dir/same_report.sh" "$bin" "$cmp_dir" 3 "${mpi[@]}"
rm -rf "$cmp_dir"

echo "mpi-tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
