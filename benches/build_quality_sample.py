#!/usr/bin/env python3
"""Choose the committed CI fixture datasets/quality/sample.jsonl from the test set.

usage: build_quality_sample.py CORPUS.jsonl DATATROVE.jsonl OUT.jsonl [--max-bytes 690000] [--docs 1500]
  CORPUS     quality_mix.jsonl (benches/build_quality_corpus.py)
  DATATROVE  its decisions by tests/compat/datatrove_quality.py

Takes small real documents so that every (preset, datatrove reason) occurs a few
times (smallest first, round-robin over document kinds), then documents every preset
keeps, then a spread over kinds, within the size budget. Each line is the document with
`"datatrove": {...}` holding datatrove's decisions (the c4 text hash cut to 16 hex digits), which the crate's test
`tests/datatrove_sample.rs` compares with dsproc-quality's.
"""
import collections
import json
import sys

PRESETS = ("gopher_quality", "gopher_repetition", "c4", "fineweb")


def main():
    args = sys.argv[1:]
    max_bytes, n_docs = 690_000, 1500
    if "--max-bytes" in args:
        i = args.index("--max-bytes")
        max_bytes = int(args[i + 1])
        del args[i : i + 2]
    if "--docs" in args:
        i = args.index("--docs")
        n_docs = int(args[i + 1])
        del args[i : i + 2]
    corpus, ref, out = args
    dt = {r["id"]: r for r in map(json.loads, open(ref))}
    docs = [d for d in map(json.loads, open(corpus)) if d["id"] in dt]
    for d in docs:
        d["datatrove"] = {p: list(dt[d["id"]][p]) for p in PRESETS}
        c4 = d["datatrove"]["c4"]
        if c4[2]:
            c4[2] = c4[2][:16]  # the first 16 hex digits of the sha256 are enough here
        d["_line"] = json.dumps({k: v for k, v in d.items() if not k.startswith("_")}, ensure_ascii=False,
                                separators=(",", ":"))
        d["_size"] = len(d["_line"].encode()) + 1
    docs.sort(key=lambda d: (d["_size"], d["id"]))
    chosen, total = {}, 0

    def take(d):
        nonlocal total
        if d["id"] in chosen or total + d["_size"] > max_bytes or len(chosen) >= n_docs:
            return False
        chosen[d["id"]] = d
        total += d["_size"]
        return True

    def fill(bucket_docs, k, max_size):
        by_kind = collections.defaultdict(list)
        for d in bucket_docs:
            if d["_size"] <= max_size:
                by_kind[d["kind"]].append(d)
        got = 0
        while got < k and any(by_kind.values()):
            for kind in sorted(by_kind):
                if by_kind[kind] and got < k:
                    got += take(by_kind[kind].pop(0))
        return got

    buckets = collections.defaultdict(list)
    for d in docs:
        for p in PRESETS:
            keep, reason = d["datatrove"][p][:2]
            buckets[(p, "keep" if keep else reason)].append(d)
    # 1. every drop reason a few times (up to 4 small ones; larger documents when rare)
    for key in sorted(buckets):
        if key[1] != "keep":
            got = fill(buckets[key], 3, 1_800)
            if got < 2:
                fill(buckets[key], 1, 40_000)
    # 2. kept documents of every preset
    for p in PRESETS:
        fill(buckets[(p, "keep")], 80, 800)
    # 3. documents kept by all four
    all_keep = [d for d in docs if all(d["datatrove"][p][0] for p in PRESETS)]
    fill(all_keep, 30, 3_000)
    # 4. a spread over kinds
    fill(docs, n_docs, 450)
    fill(docs, n_docs, 1_200)
    with open(out, "w") as f:
        for d in sorted(chosen.values(), key=lambda d: int(d["id"].lstrip("q"))):
            f.write(d["_line"] + "\n")
    counts = collections.Counter()
    for d in chosen.values():
        for p in PRESETS:
            keep, reason = d["datatrove"][p][:2]
            counts[(p, "keep" if keep else reason)] += 1
    print(f"{out}: {len(chosen)} docs, {total} bytes")
    for key in sorted(buckets):
        print(f"  {key[0]:18s} {key[1]:28s} corpus {len(buckets[key]):6d}  sample {counts[key]:5d}")
    kinds = collections.Counter(d["kind"] for d in chosen.values())
    print("  kinds:", dict(sorted(kinds.items())))


if __name__ == "__main__":
    main()
