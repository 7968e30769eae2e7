#!/usr/bin/env python3
"""End-to-end `remask prepare` against Hugging Face `tokenizers` on the same text and tokenizer.json.

HF side: `Tokenizer.from_file(tokenizer.json).encode_batch(batch, add_special_tokens=False)` over the
corpus's non-empty, stripped lines in batches of 10,000 lines (what `prepare` treats as documents),
reading included. remask side: `remask prepare --input CORPUS --tokenizer tokenizer.json` under
`/usr/bin/time -v` (wall time, peak RSS), reading, tokenizing and writing shards included. Several
remask binaries (e.g. a build of main and this one) can be given; runs alternate between them and
the HF run, `--repeats` times, and the best throughput of each is reported (the machine is shared).

    python3 scripts/bench_prepare.py --corpus /tmp/data/c480.txt --tokenizer /tmp/data/tok.json \\
        --remask main=/tmp/data/main-target/release/remask --remask new=target/release/remask

Measurement only: never run by the tests or CI (it needs the `tokenizers` Python package).
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time


def hf_run(corpus, tokenizer, batch_lines):
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
    return time.perf_counter() - start, tokens


def remask_run(binary, corpus, tokenizer, out, extra):
    shutil.rmtree(out, ignore_errors=True)
    cmd = ["/usr/bin/time", "-v", binary, "prepare", "--input", corpus, "--tokenizer", tokenizer, "--out", out]
    start = time.perf_counter()
    p = subprocess.run(cmd + extra, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if p.returncode != 0:
        sys.exit(f"{binary} failed:\n{p.stderr}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
    tokens = json.load(open(os.path.join(out, "meta.json")))
    tokens = tokens["train"]["tokens"] + tokens["validation"]["tokens"]
    return wall, rss_kb / 1024, tokens


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--remask", action="append", required=True, help="NAME=PATH of a remask binary (repeatable)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--batch-lines", type=int, default=10_000)
    ap.add_argument("--no-hf", action="store_true", help="only the remask binaries (peak RSS figures)")
    ap.add_argument("--out", default=None, help="scratch directory for the prepared output")
    ap.add_argument("--extra", default="", help="extra arguments for remask prepare")
    args = ap.parse_args()
    mb = os.path.getsize(args.corpus) / 1e6
    scratch = args.out or tempfile.mkdtemp(prefix="bench-prepare-")
    bins = [b.split("=", 1) for b in args.remask]
    best = {}
    for rep in range(args.repeats):
        if not args.no_hf:
            s, tokens = hf_run(args.corpus, args.tokenizer, args.batch_lines)
            print(f"[{rep}] hf encode_batch: {s:.1f} s, {mb / s:.2f} MB/s, {tokens} tokens", flush=True)
            best["hf"] = max(best.get("hf", (0,))[0], mb / s), None
        for name, path in bins:
            s, rss, tokens = remask_run(path, args.corpus, args.tokenizer, os.path.join(scratch, name), args.extra.split())
            print(f"[{rep}] {name}: {s:.1f} s, {mb / s:.2f} MB/s, peak RSS {rss:.0f} MiB, {tokens} tokens", flush=True)
            prev = best.get(name)
            best[name] = (max(prev[0], mb / s) if prev else mb / s, min(prev[1], rss) if prev else rss)
    print(f"corpus {args.corpus}: {mb:.1f} MB")
    for name, (mbs, rss) in best.items():
        ratio = f", {mbs / best['hf'][0]:.2f}x HF" if "hf" in best and name != "hf" else ""
        mem = f", peak RSS {rss:.0f} MiB" if rss is not None else ""
        print(f"  {name:>6}: {mbs:.2f} MB/s{mem}{ratio}")
    if not args.out:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
