#!/usr/bin/env python3
"""End-to-end `remask prepare` against Hugging Face `tokenizers` on the same text and tokenizer.json.

HF side: `Tokenizer.from_file(tokenizer.json).encode_batch(batch, add_special_tokens=False)` over the
corpus's non-empty, stripped lines in batches of 10,000 lines (what `prepare` treats as documents),
reading included, in a child process with `RAYON_NUM_THREADS=--threads` (the rayon pool
`encode_batch` runs on) under `/usr/bin/time -v` (peak RSS). remask side: `remask prepare --input
CORPUS --tokenizer tokenizer.json --threads N` under `/usr/bin/time -v` (wall time, peak RSS):
reading, tokenizing, writing shards and publishing included. Throughput is MB of corpus text per
second of wall time on both sides. Several remask binaries (e.g. a build of main and this one) can
be given; each round runs HF and then every binary, alternating, `--repeats` rounds; reported are
each side's best and median MB/s and the median of the per-round ratios to HF (the machine is
shared: a ratio within one round compares runs made under the same load).

    python3 scripts/bench_prepare.py --corpus /tmp/c160.txt --tokenizer /tmp/tok.json --threads 2 \\
        --remask main=/tmp/remask-main --remask new=target/release/remask --repeats 3

Measurement only: never run by the tests or CI (it needs the `tokenizers` Python package).
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def hf_child(corpus, tokenizer, batch_lines):
    """Runs in the child process: encodes the corpus, prints a JSON line."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tokenizer)
    tok.no_padding()
    tok.no_truncation()
    start = time.perf_counter()
    tokens = 0
    batch = []
    with open(corpus, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                batch.append(line)
            if len(batch) == batch_lines:
                tokens += sum(len(e.ids) for e in tok.encode_batch(batch, add_special_tokens=False))
                batch = []
    if batch:
        tokens += sum(len(e.ids) for e in tok.encode_batch(batch, add_special_tokens=False))
    seconds = time.perf_counter() - start
    os_threads = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else None
    print(json.dumps({"seconds": seconds, "tokens": tokens, "os_threads": os_threads}))


def peak_rss_mib(stderr):
    return int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr).group(1)) / 1024


def hf_run(corpus, tokenizer, batch_lines, threads):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="true")
    cmd = ["/usr/bin/time", "-v", sys.executable, os.path.abspath(__file__), "--hf-child",
           "--corpus", corpus, "--tokenizer", tokenizer, "--batch-lines", str(batch_lines)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.exit(f"HF run failed:\n{p.stderr}")
    r = json.loads(p.stdout.strip().splitlines()[-1])
    return r["seconds"], peak_rss_mib(p.stderr), r["tokens"], r["os_threads"]


def remask_run(binary, corpus, tokenizer, out, threads, extra):
    shutil.rmtree(out, ignore_errors=True)
    cmd = ["/usr/bin/time", "-v", binary, "prepare", "--input", corpus, "--tokenizer", tokenizer, "--out", out,
           "--threads", str(threads)]
    start = time.perf_counter()
    p = subprocess.run(cmd + extra, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if p.returncode != 0:
        sys.exit(f"{binary} failed:\n{p.stderr}")
    meta = json.load(open(os.path.join(out, "meta.json")))
    tokens = meta["train"]["tokens"] + meta["validation"]["tokens"]
    return wall, peak_rss_mib(p.stderr), tokens


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--remask", action="append", default=[], help="NAME=PATH of a remask binary (repeatable)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="threads on both sides (default: all cores)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--batch-lines", type=int, default=10_000)
    ap.add_argument("--no-hf", action="store_true", help="only the remask binaries (peak RSS figures)")
    ap.add_argument("--out", default=None, help="scratch directory for the prepared output")
    ap.add_argument("--extra", default="", help="extra arguments for remask prepare")
    ap.add_argument("--hf-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.hf_child:
        return hf_child(args.corpus, args.tokenizer, args.batch_lines)
    if not args.remask and args.no_hf:
        sys.exit("nothing to run: give --remask NAME=PATH or drop --no-hf")
    mb = os.path.getsize(args.corpus) / 1e6
    scratch = args.out or tempfile.mkdtemp(prefix="bench-prepare-")
    bins = [b.split("=", 1) for b in args.remask]
    print(f"corpus {args.corpus}: {mb:.1f} MB; tokenizer {args.tokenizer}; {args.threads} threads both sides", flush=True)
    runs = {}  # name -> list of (MB/s, peak RSS MiB)
    ratios = {}  # name -> per-round ratio to HF
    for rep in range(args.repeats):
        hf = None
        if not args.no_hf:
            s, rss, tokens, os_threads = hf_run(args.corpus, args.tokenizer, args.batch_lines, args.threads)
            hf = mb / s
            print(f"[{rep}] hf encode_batch: {s:.1f} s, {hf:.2f} MB/s, peak RSS {rss:.0f} MiB, {tokens} tokens,"
                  f" {os_threads} OS threads", flush=True)
            runs.setdefault("hf", []).append((hf, rss))
        for name, path in bins:
            s, rss, tokens = remask_run(path, args.corpus, args.tokenizer, os.path.join(scratch, name), args.threads,
                                        args.extra.split())
            print(f"[{rep}] {name}: {s:.1f} s, {mb / s:.2f} MB/s, peak RSS {rss:.0f} MiB, {tokens} tokens", flush=True)
            runs.setdefault(name, []).append((mb / s, rss))
            if hf:
                ratios.setdefault(name, []).append(mb / s / hf)
    print(f"corpus {args.corpus}: {mb:.1f} MB, {args.threads} threads, {args.repeats} rounds")
    for name, rs in runs.items():
        speeds = [r[0] for r in rs]
        line = f"  {name:>6}: best {max(speeds):.2f} MB/s, median {statistics.median(speeds):.2f} MB/s," \
               f" peak RSS {max(r[1] for r in rs):.0f} MiB"
        if name in ratios:
            line += f"; vs HF per round {', '.join(f'{x:.2f}' for x in ratios[name])}x," \
                    f" median {statistics.median(ratios[name]):.2f}x"
        print(line)
    if not args.out:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
