#!/usr/bin/env python3
"""Tokens/s of dsproc's tokenize step vs a bare Rust loop over the tokenizers crate
(the framework's overhead) and vs the Python tokenizers package's encode_batch, on
the same documents and cores.

usage: tokenize_peers.py TOKENIZER_JSON DOCS.jsonl [RUNS]
  (run with a Python that has `tokenizers`; build first:
   cargo build --release -p dsproc-cli && cargo build --release -p dsproc-functions --example tokenize_loop)

dsproc's step time is (read → tokenize → Parquet) minus (read → Parquet) of the
same input, best of RUNS each; the bare loop and Python time only the encoding of
texts already in memory. All use every core (os.cpu_count()).
"""
import json
import os
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
    with tempfile.TemporaryDirectory() as tmp:
        base = min(dsproc_job(tok, docs, False, tmp)[0] for _ in range(runs))
        full = [dsproc_job(tok, docs, True, tmp) for _ in range(runs)]
        whole, tokens = min(full)
    step = whole - base
    loop = min(
        json.loads(subprocess.run([os.path.join(TARGET, "release", "examples", "tokenize_loop"), tok, docs, str(cores)],
                                  check=True, capture_output=True, text=True).stdout)["seconds"]
        for _ in range(runs))
    texts = [json.loads(l)["text"] for l in open(docs)]
    t = Tokenizer.from_file(tok)
    t.no_padding()
    t.no_truncation()
    py = []
    for _ in range(runs):
        s = time.perf_counter()
        n = sum(len(e.ids) for e in t.encode_batch(texts, add_special_tokens=False))
        py.append(time.perf_counter() - s)
    py = min(py)
    mb = os.path.getsize(docs) / 1e6
    print(f"{len(texts)} documents, {mb:.1f} MB, {tokens} tokens, {cores} cores, best of {runs}")
    print(f"dsproc tokenize step : {tokens / step / 1e6:7.2f} M tokens/s  ({step:.2f} s = job {whole:.2f} s - read/write {base:.2f} s)")
    print(f"bare tokenizers loop : {tokens / loop / 1e6:7.2f} M tokens/s  ({loop:.2f} s)  framework overhead {100 * (step / loop - 1):+.1f}%")
    print(f"python encode_batch  : {n / py / 1e6:7.2f} M tokens/s  ({py:.2f} s)  dsproc step is {py / step:.2f}x")


if __name__ == "__main__":
    main()
