#!/usr/bin/env bash
# Checks that two remask binaries produce byte-identical outputs: prepared data (shards, tokenizer,
# meta.json, static mask copies) for every masking strategy, masks (`inspect masking --json`), training
# losses (metrics.jsonl) and final weights of short MLM static / dynamic / adaptive, CLM and translation
# runs, `eval --json` on their checkpoints, and the losses of a small `remask compare`.
#
#   scripts/check_identical.sh BASE_BINARY NEW_BINARY [WORK_DIR]
#
# e.g. build main in a worktree (`git worktree add /tmp/base main && cargo build --release` there),
# then `scripts/check_identical.sh /tmp/base/target/release/remask target/release/remask`.
# Each binary writes its outputs under WORK_DIR/{base,new}; the script then diffs the two trees.
# Timings (tokens/s, wall seconds, masking ms) are stripped before the diff; everything else must match.
# Takes a few minutes on 2 cores (the runs are tiny). Needs bash, jq, diff; no network.
# REUSE_BASE=1 keeps an existing WORK_DIR/base instead of producing it again; ALLOW_NEW_FILES="a b"
# accepts files named a or b that only the new build writes.
set -euo pipefail

if [ $# -lt 2 ]; then
    sed -n 2,12p "$0" >&2
    exit 2
fi
base_bin=$(realpath "$1")
new_bin=$(realpath "$2")
work=${3:-$(mktemp -d /tmp/remask-identical.XXXXXX)}
repo=$(cd "$(dirname "$0")/.." && pwd)
command -v jq >/dev/null || { echo "jq not found: install jq" >&2; exit 2; }
mkdir -p "$work"
work=$(realpath "$work")

# Strips wall-clock figures from a JSON object per line.
strip_times() {
    jq -c 'del(.tokens_per_s, .wall_s, .seconds, .masking_ms_per_step, .elapsed_s)' "$@"
}

produce() {
    local bin=$1 out=$2
    rm -rf "$out"
    mkdir -p "$out/inputs" "$out/prepared" "$out/inspect" "$out/train" "$out/compare"
    # Inputs: the first verses of the embedded corpus, the first sentence pairs.
    head -n 1500 "$repo/data/web.en.txt" >"$out/inputs/web.txt"
    head -n 200 "$repo/data/web.en.txt" >"$out/inputs/small.txt"
    head -n 400 "$repo/data/kjv-rv1909.nt.en-es.tsv" >"$out/inputs/pairs.tsv"
    cd "$out"

    # 1. Prepared data: static copies for every strategy and count rule, frequency-weighted random
    #    replacement, pad packing, dynamic (no copies), sentence pairs.
    local data='[data]
inputs = ["inputs/web.txt"]
seq_len = 48
validation_share = 0.1
tokenizer = { kind = "wordpiece", vocab_size = 600 }'
    declare -A cases=(
        [token-exact]='when = { mode = "static", dupe_factor = 3 }'
        [token-bernoulli]='count = "bernoulli"
when = { mode = "static", dupe_factor = 3 }'
        [whole-word]='strategy = "whole-word"
when = { mode = "static", dupe_factor = 2 }'
        [whole-word-bernoulli]='strategy = "whole-word"
count = "bernoulli"
when = { mode = "static", dupe_factor = 2 }'
        [span]='strategy = "span"
when = { mode = "static", dupe_factor = 2 }'
        [span-bernoulli]='strategy = "span"
count = "bernoulli"
when = { mode = "static", dupe_factor = 2 }'
        [frequency-random]='frequency_weighted_random = true
random_share = 0.3
mask_share = 0.6
when = { mode = "static", dupe_factor = 2 }'
        [rate-30]='rate = 0.3
when = { mode = "static", dupe_factor = 2 }'
        [dynamic]='when = { mode = "dynamic" }'
    )
    for name in "${!cases[@]}"; do
        printf '%s\n[masking]\n%s\n' "$data" "${cases[$name]}" >"inputs/$name.toml"
        "$bin" prepare --config "inputs/$name.toml" --out "prepared/$name" >"prepared/$name.txt"
    done
    printf '%s\npacking = "pad"\n[masking]\nstrategy = "span"\nwhen = { mode = "static", dupe_factor = 2 }\n' "$data" >inputs/pad.toml
    "$bin" prepare --config inputs/pad.toml --out prepared/pad >prepared/pad.txt
    "$bin" prepare --input inputs/pairs.tsv --vocab-size 500 --seq-len 40 --out prepared/pairs >prepared/pairs.txt

    # 2. Masks: statistics over prepared rows and over a text, per strategy, count rule and mode.
    for s in token whole-word span; do
        for c in exact bernoulli; do
            for w in static dynamic; do
                "$bin" inspect masking --data prepared/dynamic --strategy "$s" --count "$c" --when "$w" \
                    --dupe-factor 2 --epochs 3 --json >"inspect/data-$s-$c-$w.json"
                "$bin" inspect masking --data prepared/dynamic --strategy "$s" --count "$c" --when "$w" \
                    --dupe-factor 2 --epochs 2 --examples 2 >"inspect/data-$s-$c-$w.txt"
            done
        done
        "$bin" inspect masking --tokenizer prepared/dynamic/tokenizer.json --strategy "$s" --rate 0.3 \
            --seed 7 --seq-len 32 --json --text "$(head -n 40 inputs/web.txt)" >"inspect/text-$s.json"
    done

    # 3. Training: tiny models, a few steps (about 3 epochs of a small corpus, so static runs read
    #    several copies), metrics and final weights.
    local small='[data]
inputs = ["inputs/small.txt"]
seq_len = 48
validation_share = 0.1
tokenizer = { kind = "wordpiece", vocab_size = 400 }'
    # run NAME ARCH EXTRA_MODEL_KEYS DATA_SECTION MASKING_SECTION
    run() {
        cat >"inputs/$1-run.toml" <<EOF
[model]
arch = "$2"
$3
d_model = 32
n_heads = 2
n_layers = 1
d_ff = 64
max_positions = 64
vocab_size = 600
[optimizer]
lr = 3e-3
batch_size = 8
[schedule]
warmup_steps = 2
[budget]
steps = 60
[eval]
every_steps = 20
batches = 2
batch_size = 8
[checkpoint]
every_steps = 30
[run]
seed = 5
threads = 2
log_every = 5
$4
$5
EOF
        "$bin" train --config "inputs/$1-run.toml" --set "run.output_dir=train/$1" --log-lines 2>/dev/null
        "$bin" eval --checkpoint "train/$1" --json | jq 'del(.checkpoint)' >"train/$1.eval.json"
    }
    run mlm-static encoder '' "$small" '[masking]
strategy = "whole-word"
when = { mode = "static", dupe_factor = 2 }'
    run mlm-dynamic encoder '' "$small" '[masking]
strategy = "span"
rate = 0.3
final_rate = 0.15
schedule = "cosine"'
    run mlm-adaptive encoder '' "$small" '[masking]
when = { mode = "adaptive", temperature = 0.5 }'
    run mlm-frequency encoder '' "$small" '[masking]
frequency_weighted_random = true
count = "bernoulli"'
    run clm decoder 'attention = { kind = "document", causal = true }' "$small" ''
    run translation encoder-decoder 'n_decoder_layers = 1' '[data]
inputs = ["inputs/pairs.tsv"]
format = "tsv"
seq_len = 40
packing = "pad"
validation_share = 0.1
tokenizer = { kind = "bpe", vocab_size = 500 }' ''
    for d in train/*/; do
        d=${d%/}
        strip_times "$d/metrics.jsonl" >"$d.metrics.jsonl"
        cp "$(ls -d "$d"/checkpoints/step-* | tail -n 1)/model.safetensors" "$d.model.safetensors"
        rm -rf "$d"
    done

    # 4. A small comparison: every built-in strategy, one seed, about 5 epochs of 300 verses (so the
    #    static run reads copies 0-4); losses and curves of report.json.
    printf '[compare]\nmax_documents = 300\neval_every_steps = 10\neval_batches = 2\n' >inputs/compare.toml
    "$bin" compare --config inputs/compare.toml --strategies static,dynamic,wwm,span,schedule,adaptive \
        --seeds 1 --steps 40 --out compare/run --force --log-lines >/dev/null 2>&1 || {
        echo "compare failed with $bin" >&2
        exit 1
    }
    jq '{runs: [.runs[] | {strategy, seed, final_train_loss, final_val_loss, final_val_accuracy, mask_bytes,
        train_curve, eval_curve: [.eval_curve[] | del(.seconds)]}], audit}' compare/run/report.json >compare/report-losses.json
    for m in compare/run/runs/*/metrics.jsonl; do
        strip_times "$m" >"compare/$(basename "$(dirname "$m")").metrics.jsonl"
    done
    cp -r compare/run/data compare/data
    rm -rf compare/run
}

if [ "${REUSE_BASE:-0}" = 1 ] && [ -d "$work/base" ]; then
    echo "base: reusing $work/base (REUSE_BASE=1)"
else
    echo "base: $base_bin -> $work/base"
    (produce "$base_bin" "$work/base")
fi
echo "new:  $new_bin -> $work/new"
(produce "$new_bin" "$work/new")
# Files that only the new build writes and that are expected (ALLOW_NEW_FILES, names separated by
# spaces, e.g. a file a newer `prepare` adds) are listed but do not fail the check.
diffs=$(diff -r "$work/base" "$work/new" || true)
unexpected=$(printf '%s\n' "$diffs" | while IFS= read -r line; do
    [ -z "$line" ] && continue
    case "$line" in
        "Only in $work/new"*)
            name=${line##*: }
            if [[ " ${ALLOW_NEW_FILES:-} " == *" $name "* ]]; then
                echo "allowed new file: ${line#Only in }" >&2
                continue
            fi
            ;;
    esac
    printf '%s\n' "$line"
done)
if [ -z "$unexpected" ]; then
    echo "identical: $(find "$work/base" -type f | wc -l) files"
else
    printf '%s\n' "$unexpected"
    echo "DIFFERENT (see above)" >&2
    exit 1
fi
