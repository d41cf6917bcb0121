#!/usr/bin/env python3
"""Reads a dsproc dataset back with the real training-side reader of its format
and compares every document and token with a reference Parquet dataset of the
same job (documents in the same global order: shards in manifest order).

usage: read_shards.py REFERENCE_PARQUET_DIR DATASET_DIR

  megatron  megatron-core IndexedDataset(prefix) per .bin/.idx pair
  mds       mosaicml-streaming StreamingDataset(local=DIR, remote=None, shuffle=False)
  parquet   HF datasets load_dataset("parquet") (and pyarrow for the reference)

Prints "<format>: N documents, M tokens equal (<reader>)" or the first mismatch and
exits 1. Exits 3 with a reason when the reader's package is not installed.
"""
import json
import os
import sys

import pyarrow.parquet as pq


def manifest(d):
    return json.load(open(os.path.join(d, "manifest.json")))


def reference(d):
    m = manifest(d)
    for s in m["shards"]:
        t = pq.read_table(os.path.join(d, s["path"]), columns=["id", "text", "tokens"])
        yield from zip(t.column("id").to_pylist(), t.column("text").to_pylist(), t.column("tokens").to_pylist())


def fail(msg):
    print("MISMATCH " + msg)
    sys.exit(1)


def main():
    ref_dir, out = sys.argv[1], sys.argv[2]
    m = manifest(out)
    fmt = m["format"]
    ref = list(reference(ref_dir))
    got = []  # (id or None, text or None, tokens)
    if fmt == "bin":
        try:
            from megatron.core.datasets.indexed_dataset import IndexedDataset
        except ImportError as e:
            print(f"SKIP megatron: {e}")
            sys.exit(3)
        reader = "megatron-core IndexedDataset"
        for s in m["shards"]:
            if not s["path"].endswith(".bin"):
                continue
            ds = IndexedDataset(os.path.join(out, s["path"][: -len(".bin")]))
            if len(ds) != s["rows"]:
                fail(f"{s['path']}: {len(ds)} sequences, manifest says {s['rows']}")
            for i in range(len(ds)):
                got.append((None, None, [int(x) for x in ds[i]]))
    elif fmt == "mds":
        try:
            from streaming import StreamingDataset
        except ImportError as e:
            print(f"SKIP mds: {e}")
            sys.exit(3)
        reader = "mosaicml-streaming StreamingDataset"
        # index.json lies beside the shards, in the version's prefix
        index = next(s["path"] for s in m["shards"] if s["path"].endswith("index.json"))
        local = os.path.join(out, os.path.dirname(index))
        ds = StreamingDataset(local=local, remote=None, shuffle=False, batch_size=1)
        for i in range(ds.num_samples):
            x = ds[i]
            got.append((x["id"], x["text"], [int(t) for t in x["tokens"]]))
    elif fmt == "parquet":
        try:
            import datasets
        except ImportError as e:
            # HF datasets is in the tests' venv (scripts/test.sh installs it): not optional
            fail(f"HF datasets is not importable: {e}")
        reader = "HF datasets"
        files = [os.path.join(out, s["path"]) for s in m["shards"]]
        ds = datasets.load_dataset("parquet", data_files=files, split="train")
        for x in ds:
            got.append((x["id"], x["text"], x["tokens"]))
    else:
        sys.exit(f"read_shards.py: format {fmt} is not a token format")
    if len(got) != len(ref):
        fail(f"{len(got)} documents read, reference has {len(ref)}")
    tokens = 0
    for k, ((gid, gtext, gtok), (rid, rtext, rtok)) in enumerate(zip(got, ref)):
        if gid is not None and gid != rid:
            fail(f"document {k}: id {gid!r} != {rid!r}")
        if gtext is not None and gtext != rtext:
            fail(f"document {k} ({rid}): text differs")
        if gtok != rtok:
            fail(f"document {k} ({rid}): tokens differ ({len(gtok)} vs {len(rtok)})")
        tokens += len(gtok)
    print(f"{fmt}: {len(got)} documents, {tokens} tokens equal ({reader})")


if __name__ == "__main__":
    main()
