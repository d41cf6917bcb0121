#!/usr/bin/env python3
"""Reference decisions of datatrove 0.10.1's quality filters, for comparison with
dsproc-quality (crates/dsproc-quality/examples/quality_jsonl.rs writes the same format).

usage: datatrove_quality.py IN.jsonl OUT.jsonl [--jobs N] [--tokens]

IN: JSONL with "id" and "text". Each filter runs separately on every document, with its
default arguments, called directly (`Filter().filter(Document(...))`, no executor):
GopherQualityFilter, GopherRepetitionFilter, C4QualityFilter, FineWebQualityFilter.
OUT: one JSON object per document:
  {"id", "gopher_quality": [keep, reason], "gopher_repetition": [keep, reason],
   "c4": [keep, reason, sha256 of the rewritten text when kept], "fineweb": [keep, reason],
   "words": [n, sha256 of the words joined by "\\x00"]}            (words with --tokens)
Timings per filter go to stderr (the word-tokenization cache is cleared before every
filter call so each filter pays for its own tokenization, as when run alone).
Needs: pip install "datatrove[processing]==0.10.1" spacy
"""
import hashlib
import json
import sys
import time
from multiprocessing import Pool

from datatrove.data import Document
from datatrove.pipeline.filters import (
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
)
from datatrove.utils.text import split_into_parts, split_into_words

FILTERS = None


def init():
    global FILTERS
    FILTERS = [
        ("gopher_quality", GopherQualityFilter()),
        ("gopher_repetition", GopherRepetitionFilter()),
        ("c4", C4QualityFilter()),
        ("fineweb", FineWebQualityFilter()),
    ]


def sha(s):
    return hashlib.sha256(s.encode("utf-8", "surrogatepass")).hexdigest()


def run(args):
    line, tokens = args
    d = json.loads(line)
    text, did = d["text"], d["id"]
    rec = {"id": did}
    times = {}
    for name, f in FILTERS:
        doc = Document(text=text, id=str(did))
        split_into_parts.cache_clear()
        t0 = time.perf_counter()
        try:
            res = f.filter(doc)
        except ZeroDivisionError:
            res = (False, "ZeroDivisionError")
        times[name] = time.perf_counter() - t0
        keep, reason = (res, None) if not isinstance(res, tuple) else res
        keep = bool(keep)
        if name == "c4":
            rec[name] = [keep, reason, sha(doc.text) if keep else None]
        else:
            rec[name] = [keep, reason]
    if tokens:
        split_into_parts.cache_clear()
        words = split_into_words(text)
        rec["words"] = [len(words), sha("\x00".join(words))]
    return json.dumps(rec), times, len(text.encode("utf-8", "surrogatepass"))


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    jobs = 1
    if "--jobs" in sys.argv:
        jobs = int(sys.argv[sys.argv.index("--jobs") + 1])
        args = [a for a in args if a != str(jobs)]
    tokens = "--tokens" in sys.argv
    inp, outp = args[0], args[1]
    totals = {}
    nbytes = 0
    n = 0
    t0 = time.perf_counter()
    with open(inp) as fi, open(outp, "w") as fo:
        items = ((line, tokens) for line in fi if line.strip())
        if jobs > 1:
            pool = Pool(jobs, initializer=init)
            it = pool.imap(run, items, chunksize=8)
        else:
            init()
            it = map(run, items)
        for rec, times, b in it:
            fo.write(rec + "\n")
            n += 1
            nbytes += b
            for k, v in times.items():
                totals[k] = totals.get(k, 0.0) + v
            if n % 2000 == 0:
                print(f"... {n} docs {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    print(f"{n} docs, {nbytes / 1e6:.1f} MB, wall {time.perf_counter() - t0:.1f}s with {jobs} job(s)", file=sys.stderr)
    for k, v in totals.items():
        print(f"  {k}: {v:.1f}s filter time, {n / v:.0f} docs/s, {nbytes / 1e6 / v:.2f} MB/s (one core)", file=sys.stderr)


if __name__ == "__main__":
    main()
