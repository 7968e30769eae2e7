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

echo "mpi-tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
