#!/usr/bin/env python3
"""Builds a real multilingual corpus for the langid agreement tests.

usage: build_multilingual.py [OUT.jsonl] [--sample SAMPLE.jsonl]
  OUT defaults to ~/.cache/dsproc-ground/corpora/multilingual.jsonl.
  --sample also writes a small deterministic subset (~1000 docs, < 600 KB), the one
  committed as datasets/multilingual/sample.jsonl.

Sources (downloaded/extracted into ~/.cache/dsproc-ground/multilingual-src):
  * Debian bookworm translated manual pages: `apt-get download manpages manpages-LL ...`,
    unpacked with `dpkg-deb -x`, rendered with `groff -k -K utf-8 -Tutf8 -mandoc` and
    `col -bx` (English from the `manpages` package).
  * The Linux kernel's Documentation/translations/{it_IT,ja_JP,ko_KR,zh_CN,zh_TW} and
    (English) Documentation/process from /usr/src/linux-source-6.1.tar.xz.

Each rendered page / document is split into paragraphs, and consecutive paragraphs are
joined into chunks of MIN_CHARS..MAX_CHARS characters; each chunk is one JSONL record
{"id", "text", "source_lang"} (source_lang: the language of the package or directory,
not a prediction). Output order and content are deterministic for the same inputs.
"""
import glob
import gzip
import hashlib
import json
import os
import re
import subprocess
import sys

HOME = os.path.expanduser("~")
SRC = os.path.join(HOME, ".cache", "dsproc-ground", "multilingual-src")
DEFAULT_OUT = os.path.join(HOME, ".cache", "dsproc-ground", "corpora", "multilingual.jsonl")
KERNEL_TARBALL = "/usr/src/linux-source-6.1.tar.xz"
# Debian package -> (man directory under usr/share/man, source_lang)
MANPAGES = {
    "manpages": ("", "en"),
    "manpages-cs": ("cs", "cs"),
    "manpages-da": ("da", "da"),
    "manpages-de": ("de", "de"),
    "manpages-el": ("el", "el"),
    "manpages-es": ("es", "es"),
    "manpages-fi": ("fi", "fi"),
    "manpages-fr": ("fr", "fr"),
    "manpages-hu": ("hu", "hu"),
    "manpages-id": ("id", "id"),
    "manpages-it": ("it", "it"),
    "manpages-ja": ("ja", "ja"),
    "manpages-mk": ("mk", "mk"),
    "manpages-nb": ("nb", "nb"),
    "manpages-nl": ("nl", "nl"),
    "manpages-pl": ("pl", "pl"),
    "manpages-pt-br": ("pt_BR", "pt"),
    "manpages-ro": ("ro", "ro"),
    "manpages-ru": ("ru", "ru"),
    "manpages-sr": ("sr", "sr"),
    "manpages-sv": ("sv", "sv"),
    "manpages-tr": ("tr", "tr"),
    "manpages-uk": ("uk", "uk"),
    "manpages-vi": ("vi", "vi"),
    "manpages-zh": ("zh_CN", "zh"),
}
KERNEL = {"it_IT": "it", "ja_JP": "ja", "ko_KR": "ko", "zh_CN": "zh", "zh_TW": "zh"}
PAGES_PER_LANG = 120  # man pages rendered per language (sorted by hash of the name)
CHUNKS_PER_LANG = 700  # cap so that no language dominates
MIN_CHARS, MAX_CHARS = 200, 3000
SAMPLE_PER_LANG, SAMPLE_BYTES = 38, 460


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def fetch_manpages():
    debs = os.path.join(SRC, "debs")
    root = os.path.join(SRC, "man")
    os.makedirs(debs, exist_ok=True)
    missing = [p for p in MANPAGES if not glob.glob(os.path.join(debs, p + "_*.deb"))]
    if missing:
        sh(["apt-get", "download", *missing], cwd=debs)
    if not os.path.isdir(os.path.join(root, "usr", "share", "man")):
        for deb in sorted(glob.glob(os.path.join(debs, "*.deb"))):
            sh(["dpkg-deb", "-x", deb, root])
    return os.path.join(root, "usr", "share", "man")


def fetch_kernel():
    root = os.path.join(SRC, "kernel")
    doc = os.path.join(root, "linux-source-6.1", "Documentation")
    if not os.path.isdir(os.path.join(doc, "translations")):
        os.makedirs(root, exist_ok=True)
        sh(["tar", "-xJf", KERNEL_TARBALL, "-C", root, "--wildcards",
            "linux-source-6.1/Documentation/translations/*", "linux-source-6.1/Documentation/process/*"])
    return doc


def stable_key(s):
    return hashlib.sha256(s.encode()).hexdigest()


def render_man(path):
    raw = open(path, "rb").read()
    if path.endswith(".gz"):
        raw = gzip.decompress(raw)
    if raw.lstrip().startswith(b".so ") or len(raw) < 500:
        return None
    env = dict(os.environ, GROFF_NO_SGR="1", LC_ALL="C.UTF-8")
    try:
        out = subprocess.run(["groff", "-k", "-K", "utf-8", "-Tutf8", "-mandoc", "-rLL=2000n", "-P-cbou"],
                             input=raw, capture_output=True, env=env, timeout=60).stdout
        out = subprocess.run(["col", "-bx"], input=out, capture_output=True, env=env, timeout=60).stdout
    except subprocess.TimeoutExpired:
        return None
    lines = out.decode("utf-8", "replace").splitlines()
    # drop the page header and footer lines, collapse the layout's runs of spaces
    lines = [re.sub(r"[ \t]{2,}", " ", ln).strip() for ln in lines[1:-1]]
    return "\n".join(lines)


def paragraphs(text):
    for para in re.split(r"\n\s*\n", text):
        lines = [ln.strip() for ln in para.splitlines()]
        # drop rst underlines / separators and empty lines
        lines = [ln for ln in lines if ln and not re.fullmatch(r"[=\-~^*#+.`:_]{3,}", ln)]
        if lines:
            yield "\n".join(lines)


def chunks(text):
    cur = []
    size = 0
    for p in paragraphs(text):
        if len(p) > MAX_CHARS:
            p = p[:MAX_CHARS]
        if size + len(p) > MAX_CHARS and cur:
            if size >= MIN_CHARS:
                yield "\n\n".join(cur)
            cur, size = [], 0
        cur.append(p)
        size += len(p) + 2
        if size >= MIN_CHARS * 3:
            yield "\n\n".join(cur)
            cur, size = [], 0
    if cur and size >= MIN_CHARS:
        yield "\n\n".join(cur)


def man_docs(mandir):
    for pkg, (sub, lang) in MANPAGES.items():
        base = os.path.join(mandir, sub) if sub else mandir
        pages = sorted(glob.glob(os.path.join(base, "man[1-8]", "*")), key=lambda p: stable_key(os.path.relpath(p, base)))
        n_chunks = 0
        used = 0
        for page in pages:
            if used >= PAGES_PER_LANG or n_chunks >= CHUNKS_PER_LANG:
                break
            text = render_man(page)
            if not text:
                continue
            used += 1
            name = os.path.relpath(page, base)
            for i, c in enumerate(chunks(text)):
                if n_chunks >= CHUNKS_PER_LANG:
                    break
                n_chunks += 1
                yield {"id": f"man/{pkg}/{name}#{i}", "text": c, "source_lang": lang}


def kernel_docs(doc):
    groups = [(os.path.join(doc, "translations", d), lang, f"kernel/translations/{d}") for d, lang in KERNEL.items()]
    groups.append((os.path.join(doc, "process"), "en", "kernel/process"))
    per_lang = {}
    for base, lang, prefix in groups:
        files = sorted(f for f in glob.glob(os.path.join(base, "**", "*"), recursive=True)
                       if os.path.isfile(f) and (f.endswith((".rst", ".txt")) or "." not in os.path.basename(f)))
        for f in files:
            try:
                text = open(f, encoding="utf-8").read()
            except UnicodeDecodeError:
                continue
            for i, c in enumerate(chunks(text)):
                if per_lang.get(lang, 0) >= CHUNKS_PER_LANG:
                    break
                per_lang[lang] = per_lang.get(lang, 0) + 1
                yield {"id": f"{prefix}/{os.path.relpath(f, base)}#{i}", "text": c, "source_lang": lang}


def main():
    args = sys.argv[1:]
    sample = None
    if "--sample" in args:
        i = args.index("--sample")
        sample = args[i + 1]
        del args[i:i + 2]
    out = args[0] if args else DEFAULT_OUT
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    docs = list(kernel_docs(fetch_kernel())) + list(man_docs(fetch_manpages()))
    with open(out, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    langs = {}
    for d in docs:
        langs[d["source_lang"]] = langs.get(d["source_lang"], 0) + 1
    print(f"{out}: {len(docs)} docs, {len(langs)} languages: {dict(sorted(langs.items()))}")
    if sample:
        # ~1000 docs: per language the SAMPLE_PER_LANG smallest-hash docs, each cut at the
        # last whitespace before SAMPLE_BYTES UTF-8 bytes (real text, shortened).
        picked = []
        for lang in sorted(langs):
            cand = [d for d in docs if d["source_lang"] == lang]
            cand.sort(key=lambda d: stable_key(d["id"]))
            for d in cand[:SAMPLE_PER_LANG]:
                text = d["text"]
                if len(text.encode()) > SAMPLE_BYTES:
                    cut = text.encode()[:SAMPLE_BYTES].decode("utf-8", "ignore")
                    sp = max(cut.rfind(" "), cut.rfind("\n"))
                    text = cut[:sp] if sp > SAMPLE_BYTES // 4 else cut
                picked.append(dict(d, text=text))
        picked.sort(key=lambda d: d["id"])
        with open(sample, "w", encoding="utf-8") as f:
            for d in picked:
                f.write(json.dumps(d, ensure_ascii=False) + "\n")
        print(f"{sample}: {len(picked)} docs, {os.path.getsize(sample)} bytes")


if __name__ == "__main__":
    main()
