#!/usr/bin/env python3
"""Build the real-document test set for the quality filters (dsproc-quality vs datatrove).

usage: build_quality_corpus.py [OUT] [--corpora DIR]
  OUT       default ~/.cache/dsproc-ground/corpora/quality_mix.jsonl
  --corpora default ~/.cache/dsproc-ground/corpora (made by shared/ground/build-corpora.py:
            debian_copyright.jsonl, debian_changelog.jsonl, linux_src.jsonl)

Writes JSONL {"id", "text", "kind", "source", "lang"} with, deterministically sampled
(md5 of the path decides): Linux kernel Documentation (*.rst, *.txt, no extension), kernel
C sources and headers, other kernel files (Kconfig, Makefiles, device trees, scripts),
whole Debian copyright files and their licence paragraphs, whole Debian changelogs and
single changelog entries, text files from this machine's /usr/share/doc (README, NEWS,
*.txt, *.md, ...), and manual pages from /usr/share/man rendered to text with
`man -l` | `col -bx` (English and a few translations, `lang` set from the directory).
Standard library only; `man` and `col` (man-db, bsdextrautils) for the manual pages.
"""
import glob
import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

MAX_CHARS = 200_000  # keep the Python reference run within minutes


def h(s):
    return int(hashlib.md5(s.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def pick(path, share):
    return h(path) < share


def jsonl(path):
    with open(path) as f:
        for line in f:
            yield json.loads(line)


def read_text(path):
    try:
        data = gzip.open(path).read() if path.endswith(".gz") else open(path, "rb").read()
    except OSError:
        return None
    if b"\x00" in data[:8192]:
        return None
    return data.decode("utf-8", "replace")


def linux(corpora):
    shares = {"doc": 1.0, "c": 0.05, "h": 0.05, "other": 0.12}
    for d in jsonl(os.path.join(corpora, "linux_src.jsonl")):
        src = d["source"]
        name = src.rsplit("/", 1)[-1]
        ext = name.rsplit(".", 1)[-1] if "." in name else ""
        if src.startswith("Documentation/"):
            if ext in ("rst", "txt", ""):
                kind = "kernel_doc"
                share = shares["doc"]
            else:
                continue
        elif ext == "c":
            kind, share = "kernel_c", shares["c"]
        elif ext == "h":
            kind, share = "kernel_h", shares["h"]
        elif ext in ("", "dts", "dtsi", "S", "sh", "py", "pl", "rst", "txt") or name.startswith(("Kconfig", "Makefile")):
            kind, share = "kernel_other", shares["other"]
        else:
            continue
        if pick(src, share):
            yield kind, "linux:" + src, d["text"], "en"


def copyright_docs(corpora):
    for d in jsonl(os.path.join(corpora, "debian_copyright.jsonl")):
        src = d["source"]
        yield "debian_copyright", src, d["text"], "en"
        # licence paragraphs: "License: X" stanzas with their full text
        for i, para in enumerate(re.split(r"\n\s*\n", d["text"])):
            if para.startswith("License:") and para.count("\n") >= 3:
                yield "licence_paragraph", f"{src}#license{i}", para, "en"


def changelog_docs(corpora):
    for d in jsonl(os.path.join(corpora, "debian_changelog.jsonl")):
        src = d["source"]
        yield "debian_changelog", src, d["text"], "en"
        entries = re.split(r"\n(?=\S[^\n]*\(\S+\) [^\n]*; urgency=)", d["text"])
        for i, e in enumerate(entries):
            if pick(f"{src}#{i}", 0.3):
                yield "changelog_entry", f"{src}#entry{i}", e, "en"


def usr_share_doc():
    pats = ("README*", "NEWS*", "*.txt", "*.md", "AUTHORS*", "THANKS*", "TODO*", "*.rst", "FAQ*", "CONTRIBUTING*")
    seen = set()
    for pat in pats:
        for p in sorted(glob.glob(f"/usr/share/doc/**/{pat}", recursive=True)):
            if p in seen or not os.path.isfile(p) or os.path.islink(p) or "changelog" in p.lower():
                continue
            seen.add(p)
            t = read_text(p)
            if t and t.strip():
                yield "usr_share_doc", p, t, "en"


def render_man(p):
    env = dict(os.environ, MANWIDTH="80", LANG="C.UTF-8", LC_ALL="C.UTF-8")
    try:
        r = subprocess.run(f"man -l {sh_quote(p)} 2>/dev/null | col -bx", shell=True, env=env,
                           capture_output=True, timeout=30)
    except subprocess.TimeoutExpired:
        return None
    t = r.stdout.decode("utf-8", "replace")
    return t if t.strip() else None


def sh_quote(s):
    return "'" + s.replace("'", "'\\''") + "'"


def man_pages():
    chosen = []
    for p in sorted(glob.glob("/usr/share/man/man[1-8]/*")):
        base = os.path.basename(p)
        share = 0.02 if base.startswith("gcloud") else 0.55
        if pick(p, share):
            chosen.append((p, "en"))
    for lang in ("de", "fr", "es", "ru", "ja", "zh_CN", "pl", "pt_BR", "it", "uk"):
        for p in sorted(glob.glob(f"/usr/share/man/{lang}/man[1-8]/*")):
            if pick(p, 0.5):
                chosen.append((p, lang.split("_")[0]))
    with ThreadPoolExecutor(max_workers=2) as ex:
        for (p, lang), t in zip(chosen, ex.map(lambda x: render_man(x[0]), chosen)):
            if t:
                yield "man_page", p, t, lang


def main():
    args = sys.argv[1:]
    corpora = os.path.expanduser("~/.cache/dsproc-ground/corpora")
    if "--corpora" in args:
        i = args.index("--corpora")
        corpora = args[i + 1]
        del args[i : i + 2]
    out = args[0] if args else os.path.join(corpora, "quality_mix.jsonl")
    n = 0
    kinds = {}
    seen = set()
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        for gen in (linux(corpora), copyright_docs(corpora), changelog_docs(corpora), usr_share_doc(), man_pages()):
            for kind, src, text, lang in gen:
                if not text.strip() or len(text) > MAX_CHARS:
                    continue
                key = hashlib.md5(text.encode("utf-8", "surrogatepass")).digest()
                if key in seen:
                    continue
                seen.add(key)
                f.write(json.dumps({"id": f"q{n}", "text": text, "kind": kind, "source": src, "lang": lang}, ensure_ascii=False) + "\n")
                n += 1
                kinds[kind] = kinds.get(kind, 0) + 1
            print(f"... {n} docs", file=sys.stderr)
    os.replace(tmp, out)
    print(f"{out}: {n} docs, {os.path.getsize(out) / 1e6:.1f} MB")
    for k, v in sorted(kinds.items()):
        print(f"  {k}: {v}")


if __name__ == "__main__":
    main()
