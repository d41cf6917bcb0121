#!/usr/bin/env python3
"""Tokens/s of dsproc's tokenize step vs a bare Rust loop over the tokenizers crate
(the framework's overhead) and vs the Python tokenizers package's encode_batch, on
the same documents and cores.

usage: tokenize_peers.py TOKENIZER_JSON DOCS.jsonl [RUNS]
  (run with a Python that has `tokenizers`; build first:
   cargo build --release -p dsproc-cli && cargo build --release -p dsproc-functions --example tokenize_loop)

dsproc's step time is (read → tokenize → Parquet) minus (read → Parquet) of the
same input; the bare loop and Python time only the encoding of
texts already in memory. All use every core (os.cpu_count()). The four measurements are interleaved
in RUNS rounds and medians reported (this machine's timings drift by 10-20%).
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))


def dsproc_job(tok, docs, tokenize, tmp):
    steps = f'[[steps]]\nop = "tokenize"\ntokenizer = "{tok}"\n' if tokenize else ""
    spec = (f'name = "bench"\n[input]\nuri = "{docs}"\nid = "id"\n{steps}\n'
            f'[output]\nuri = "{tmp}/out"\nformat = "parquet"\nmode = "overwrite"\n')
    path = os.path.join(tmp, "job.toml")
    open(path, "w").write(spec)
    t = time.perf_counter()
    subprocess.run([os.path.join(TARGET, "release", "dsproc"), "run", "-q", path], check=True)
    secs = time.perf_counter() - t
    m = json.load(open(os.path.join(tmp, "out", "manifest.json")))
    return secs, sum(s.get("tokens") or 0 for s in m["shards"])


def main():
    tok, docs = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    cores = os.cpu_count()
    texts = [json.loads(l)["text"] for l in open(docs)]
    t = Tokenizer.from_file(tok)
    t.no_padding()
    t.no_truncation()
    loop_bin = os.path.join(TARGET, "release", "examples", "tokenize_loop")
    bases, wholes, loops, pys = [], [], [], []
    # Rounds interleave the four measurements so machine noise hits all alike; medians.
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(runs):
            bases.append(dsproc_job(tok, docs, False, tmp)[0])
            secs, tokens = dsproc_job(tok, docs, True, tmp)
            wholes.append(secs)
            out = subprocess.run([loop_bin, tok, docs, str(cores)], check=True, capture_output=True, text=True).stdout
            loops.append(json.loads(out)["seconds"])
            s = time.perf_counter()
            n = sum(len(e.ids) for e in t.encode_batch(texts, add_special_tokens=False))
            pys.append(time.perf_counter() - s)
    med = statistics.median
    base, whole, loop, py = med(bases), med(wholes), med(loops), med(pys)
    step = whole - base
    mb = os.path.getsize(docs) / 1e6
    print(f"{len(texts)} documents, {mb:.1f} MB, {tokens} tokens, {cores} cores, median of {runs} interleaved rounds")
    print(f"dsproc tokenize step : {tokens / step / 1e6:7.2f} M tokens/s  ({step:.2f} s = job {whole:.2f} s - read/write {base:.2f} s)")
    print(f"bare tokenizers loop : {tokens / loop / 1e6:7.2f} M tokens/s  ({loop:.2f} s)  framework overhead {100 * (step / loop - 1):+.1f}%")
    print(f"python encode_batch  : {n / py / 1e6:7.2f} M tokens/s  ({py:.2f} s)  dsproc step is {py / step:.2f}x")


if __name__ == "__main__":
    main()
