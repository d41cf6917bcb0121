#!/usr/bin/env python3
"""Differential test of the spaCy English tokenizer port on synthetic tricky strings.

usage: tokenizer_fuzz.py gen OUT.jsonl [N]      # write N random documents (default 5000)
       tokenizer_fuzz.py check IN.jsonl RUST_WORDS.jsonl
RUST_WORDS: `quality_jsonl IN.jsonl RUST_WORDS.jsonl --dump-words`. `check` tokenizes with
datatrove's English word tokenizer (spacy.blank("en")) and with `split_into_sentences`
and reports documents whose word lists or sentences differ.
"""
import json
import random
import sys

PIECES = [
    "a", "The", "dog", "U.S.", "e.g.", "i.e.", "Mr.", "don't", "can't", "y'all", "'s", "’s", "'S", "o'clock", "ma'am",
    " ", "  ", "\n", "\t", "\u00a0", "\u3000", "\r\n", "\x1c", ".", "..", "...", "…", ",", ";", ":", "!", "?", "?!", "'",
    '"', "“", "”", "‘", "’", "(", ")", "[", "]", "{", "}", "<", ">", "-", "--", "—", "–", "~", "/", "\\", "+", "*", "^",
    "=", "#", "@", "&", "%", "$", "£", "€", "US$", "C$", "5", "10", "3.14", "1,000", "5km", "10kg", "20°C.", "100%",
    "1+2", "3-4", "a-b", "A.B", "a.B", "x/y", "a:b", "a=b", "a<b", ":)", ":-)", ";)", ":(", "<3", "(:", "xD", "o_O",
    "http://example.com", "https://a.b.org/x?y=1#z", "www.test.org", "foo@bar.com", "192.168.0.1", "8.8.8.8",
    "file.c", "v1.2.3", "C++", "a.m.", "p.m.", "10a.m.", "Jan.", "Calif.", "vs.", "Dr.", "ABC.", "abc.", "ß", "é",
    "Über", "naïve", "中文", "日本語。", "русский", "ελληνικά", "👍", "🏽", "ﷺ", "\u200b", "İ", "𝔘", "x²", "½", "³",
    "§", "©", "®", "°", "¬", "ಠ_ಠ", "(╯°□°)╯︵", "¯\\_(ツ)_/¯", "''", "``", "IS_ALPHA", "'em", "'cause", "gonna", "Nothin'",
]


def gen(out, n):
    rnd = random.Random(42)
    with open(out, "w") as f:
        for i in range(n):
            k = rnd.randint(1, 40)
            parts = []
            for _ in range(k):
                p = rnd.choice(PIECES)
                parts.append(p)
                if rnd.random() < 0.6:
                    parts.append(" ")
            f.write(json.dumps({"id": f"f{i}", "text": "".join(parts)}, ensure_ascii=False) + "\n")


def check(inp, rust):
    from datatrove.utils.text import split_into_sentences, split_into_words

    docs = [json.loads(l) for l in open(inp)]
    rs = {r["id"]: r for r in map(json.loads, open(rust))}
    bad = bad_s = 0
    for d in docs:
        py = split_into_words(d["text"])
        if py != rs[d["id"]]["words"]:
            bad += 1
            if bad <= 10:
                print(f"{d['id']}: {d['text']!r}\n  spacy {py}\n  rust  {rs[d['id']]['words']}")
        ps = split_into_sentences(d["text"])
        if ps != rs[d["id"]]["sents"]:
            bad_s += 1
            if bad_s <= 10:
                print(f"{d['id']} sentences: {d['text']!r}\n  spacy {ps}\n  rust  {rs[d['id']]['sents']}")
    print(f"{len(docs) - bad}/{len(docs)} documents tokenize identically, "
          f"{len(docs) - bad_s}/{len(docs)} split into the same sentences")
    sys.exit(1 if bad or bad_s else 0)


if __name__ == "__main__":
    if sys.argv[1] == "gen":
        gen(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 5000)
    else:
        check(sys.argv[2], sys.argv[3])
