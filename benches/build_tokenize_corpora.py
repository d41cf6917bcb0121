#!/usr/bin/env python3
"""The two 100 MB inputs of benches/tokenize_fast.py (issue 21): code and prose.

usage: build_tokenize_corpora.py CORPORA_DIR [MB]

Reads, from CORPORA_DIR (built by ../shared/ground/build-corpora.py and
benches/build_quality_corpus.py):
  linux_src.jsonl        -> linux_100m.jsonl: its documents in order until MB
                            (default 100) megabytes of text
  quality_mix.jsonl      -> prose_100m.jsonl: the prose kinds of quality_mix (man
  debian_changelog.jsonl    pages, /usr/share/doc, kernel Documentation, licence
  debian_copyright.jsonl    paragraphs, changelog entries, Debian changelogs and
                            copyright files; no source code), then the Debian
                            changelog and copyright corpora, in that order, until
                            MB megabytes of text; ids prose-000000...
Text is counted in UTF-8 bytes; the last document that passes the limit is left out.
"""
import json
import os
import sys

PROSE_KINDS = {"man_page", "usr_share_doc", "kernel_doc", "licence_paragraph", "changelog_entry",
               "debian_changelog", "debian_copyright"}


def take(rows, limit, out_path, ids=None):
    n, total = 0, 0
    with open(out_path, "w", encoding="utf-8") as out:
        for r in rows:
            t = r["text"]
            size = len(t.encode("utf-8"))
            if total + size > limit:
                break
            total += size
            rid = r["id"] if ids is None else f"{ids}-{n:06d}"
            out.write(json.dumps({"id": rid, "text": t}, ensure_ascii=False) + "\n")
            n += 1
    print(f"{out_path}: {n} documents, {total / 1e6:.1f} MB of text")


def rows(path, keep=lambda r: True):
    with open(path, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if isinstance(r.get("text"), str) and r["text"].strip() and keep(r):
                yield r


def main():
    d = sys.argv[1]
    limit = int(float(sys.argv[2]) * 1e6) if len(sys.argv) > 2 else 100_000_000
    take(rows(os.path.join(d, "linux_src.jsonl")), limit, os.path.join(d, "linux_100m.jsonl"))

    def prose():
        yield from rows(os.path.join(d, "quality_mix.jsonl"), lambda r: r.get("kind") in PROSE_KINDS)
        yield from rows(os.path.join(d, "debian_changelog.jsonl"))
        yield from rows(os.path.join(d, "debian_copyright.jsonl"))

    take(prose(), limit, os.path.join(d, "prose_100m.jsonl"), ids="prose")


if __name__ == "__main__":
    main()
