#!/usr/bin/env python3
"""Re-encodes every document of a committed dsproc dataset with the Python
`tokenizers` package and compares ids with the dataset's `tokens` column.

usage: check_tokens.py OUTPUT_DIR

The tokenizer file, BOS/EOS ids, add_special_tokens and max_tokens come from the
manifest's tokenize step (`info`). Parquet and JSONL.zst shards are read with
pyarrow. Prints "tokens equal: N documents, M tokens" or the first mismatch
(document id, position, ids) and exits 1.
"""
import glob
import json
import os
import sys

import pyarrow.parquet as pq
from tokenizers import Tokenizer


def rows(out, manifest):
    for shard in manifest["shards"]:
        path = os.path.join(out, shard["path"])
        if path.endswith(".parquet"):
            t = pq.read_table(path, columns=["id", "text", "tokens"])
            yield from zip(t.column("id").to_pylist(), t.column("text").to_pylist(), t.column("tokens").to_pylist())
        elif path.endswith(".jsonl.zst"):
            import pyarrow as pa
            import pyarrow.json as pj

            with pa.input_stream(path, compression="zstd") as f:
                t = pj.read_json(f)
            yield from zip(t.column("id").to_pylist(), t.column("text").to_pylist(), t.column("tokens").to_pylist())
        else:
            sys.exit(f"check_tokens.py: unsupported shard {path}")


def main():
    out = sys.argv[1]
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    steps = [s for s in manifest["steps"] if s["op"] == "tokenize"]
    if not steps:
        sys.exit("check_tokens.py: the dataset has no tokenize step")
    info = steps[-1]["info"]
    tok = Tokenizer.from_file(info["tokenizer"])
    tok.no_padding()
    tok.no_truncation()
    docs = tokens = 0
    batch = []

    def check(batch):
        nonlocal docs, tokens
        encs = tok.encode_batch([b[1] for b in batch], add_special_tokens=info["add_special_tokens"])
        for (id_, _text, got), enc in zip(batch, encs):
            want = list(enc.ids)
            if info["bos_id"] is not None:
                want = [info["bos_id"]] + want
            mt = info["max_tokens"]
            if mt is not None:
                want = want[: mt - (1 if info["eos_id"] is not None else 0)]
            if info["eos_id"] is not None:
                want.append(info["eos_id"])
            if got != want:
                i = next((k for k, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
                print(f"MISMATCH in document {id_!r} at token {i}: dsproc {got[i:i+8]} python {want[i:i+8]} "
                      f"(lengths {len(got)} / {len(want)})")
                sys.exit(1)
            docs += 1
            tokens += len(got)

    for r in rows(out, manifest):
        batch.append(r)
        if len(batch) == 512:
            check(batch)
            batch = []
    if batch:
        check(batch)
    if docs != manifest["rows"]["out"]:
        sys.exit(f"check_tokens.py: read {docs} documents, the manifest says {manifest['rows']['out']}")
    print(f"tokens equal: {docs} documents, {tokens} tokens ({os.path.basename(info['tokenizer'])}, "
          f"sha256 {info['tokenizer_sha256'][:12]})")


if __name__ == "__main__":
    main()
