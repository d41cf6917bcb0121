#!/usr/bin/env python3
"""Compare dsproc-quality's decisions with datatrove's (outputs of quality_jsonl.rs and
datatrove_quality.py on the same input).

usage: compare_quality.py DATATROVE.jsonl DSPROC.jsonl [--corpus IN.jsonl] [--min 99.5]
Prints per preset: keep/drop agreement, reason agreement, and for c4 the agreement of the
rewritten text of documents both keep; with "words" in both files, the share of documents
whose word lists are identical. --corpus adds the document kind to the examples.
Exits 1 when a preset's keep/drop agreement is below --min percent.
"""
import collections
import json
import sys


def load(p):
    return {r["id"]: r for r in map(json.loads, open(p))}


def main():
    args = [a for a in sys.argv[1:]]
    minimum = 99.5
    if "--min" in args:
        i = args.index("--min")
        minimum = float(args[i + 1])
        del args[i : i + 2]
    kinds = {}
    if "--corpus" in args:
        i = args.index("--corpus")
        for line in open(args[i + 1]):
            d = json.loads(line)
            kinds[d["id"]] = d.get("kind", "?")
        del args[i : i + 2]
    a, b = load(args[0]), load(args[1])
    ids = [i for i in a if i in b]
    print(f"{len(ids)} documents in both ({len(a)} datatrove, {len(b)} dsproc)")
    ok = True
    for preset in ("gopher_quality", "gopher_repetition", "c4", "fineweb"):
        keep_same = reason_same = 0
        kept_both = text_same = 0
        kept_py = kept_rs = 0
        diffs = collections.Counter()
        examples = collections.defaultdict(list)
        for i in ids:
            x, y = a[i][preset], b[i][preset]
            kept_py += x[0]
            kept_rs += y[0]
            if x[0] == y[0]:
                keep_same += 1
            if x[0] == y[0] and x[1] == y[1]:
                reason_same += 1
            else:
                key = (x[1] or "keep", y[1] or "keep")
                diffs[key] += 1
                if len(examples[key]) < 4:
                    examples[key].append(f"{i}({kinds.get(i, '')})")
            if preset == "c4" and x[0] and y[0]:
                kept_both += 1
                if x[2] == y[2]:
                    text_same += 1
                else:
                    key = ("c4 text", "differs")
                    diffs[key] += 1
                    if len(examples[key]) < 6:
                        examples[key].append(f"{i}({kinds.get(i, '')})")
        n = len(ids)
        kp = 100.0 * keep_same / n
        line = (f"{preset:18s} keep/drop {kp:7.3f}% ({n - keep_same} differ)  reason {100.0 * reason_same / n:7.3f}%"
                f"  kept: datatrove {kept_py}, dsproc {kept_rs}")
        if preset == "c4":
            line += f"  text of kept {100.0 * text_same / max(kept_both, 1):7.3f}% ({kept_both - text_same} differ)"
        print(line)
        for (px, py), c in diffs.most_common(12):
            print(f"    datatrove {px!s:28s} dsproc {py!s:28s} {c:5d}  e.g. {' '.join(examples[(px, py)])}")
        if kp < minimum:
            ok = False
    if all("words" in a[i] and "words" in b[i] for i in ids[:1]):
        same = sum(a[i]["words"] == b[i]["words"] for i in ids)
        na = sum(a[i]["words"][0] for i in ids)
        nb = sum(b[i]["words"][0] for i in ids)
        bad = [i for i in ids if a[i]["words"] != b[i]["words"]]
        print(f"words: identical word lists in {100.0 * same / len(ids):.3f}% of documents ({len(bad)} differ); "
              f"{na} words datatrove, {nb} dsproc")
        if bad:
            print("    differing: " + " ".join(f"{i}({kinds.get(i, '')})" for i in bad[:12]))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
