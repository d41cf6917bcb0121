#!/usr/bin/env python3
"""Compares two langid prediction files ({"id", "labels", "scores"} JSONL, e.g. from
langid_reference.py and the dsproc-langid example predict_jsonl) over a corpus.

usage: langid_compare.py CORPUS.jsonl REFERENCE.jsonl OURS.jsonl [MIN_TOP1 [MAX_DIFF]]
Reports docs and languages (by source_lang), top-1 agreement, max |score diff| of the
top-1 label, top-k label-list agreement and max |score diff| over matching top-k lists.
Exits 1 when top-1 agreement < MIN_TOP1 (default 0.999) or the top-1 score diff exceeds
MAX_DIFF (default 1e-4).
"""
import collections
import json
import sys


def load(path):
    return {d["id"]: d for d in map(json.loads, open(path, encoding="utf-8"))}


def main():
    corpus, ref, ours = (load(p) for p in sys.argv[1:4])
    min_top1 = float(sys.argv[4]) if len(sys.argv) > 4 else 0.999
    max_diff = float(sys.argv[5]) if len(sys.argv) > 5 else 1e-4
    assert ref.keys() == ours.keys() == corpus.keys(), "the files cover different ids"
    langs = collections.Counter(d["source_lang"] for d in corpus.values())
    predicted = collections.Counter()
    top1 = topk = exact = 0
    d1 = dk = 0.0
    bad = []
    for i, r in ref.items():
        o = ours[i]
        if r["labels"][:1] == o["labels"][:1]:
            top1 += 1
            if r["scores"]:
                d1 = max(d1, abs(r["scores"][0] - o["scores"][0]))
        else:
            bad.append((i, r["labels"][:1], o["labels"][:1]))
        if r["labels"] == o["labels"]:
            topk += 1
            dk = max([dk] + [abs(a - b) for a, b in zip(r["scores"], o["scores"])])
        if r == o:
            exact += 1
        predicted[(r["labels"] or ["-"])[0]] += 1
    n = len(ref)
    print(f"docs {n}, source languages {len(langs)}: {dict(sorted(langs.items()))}")
    print(f"reference top-1 labels: {len(predicted)} distinct, most common {predicted.most_common(12)}")
    print(f"top-1 agreement {top1}/{n} = {top1 / n:.6f}, max |top-1 score diff| {d1:.3g}")
    print(f"top-k label lists equal {topk}/{n}, max |score diff| over them {dk:.3g}; identical records {exact}/{n}")
    for b in bad[:10]:
        print("  differs:", b)
    ok = top1 / n >= min_top1 and d1 <= max_diff
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
