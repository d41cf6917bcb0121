#!/usr/bin/env bash
# Token ids of dsproc's tokenize step against the Python `tokenizers` package on a
# large mixed real corpus, for each tokenizer file (issue #21's "ids identical on
# >= 50,000 documents"): code (linux_src), prose (Debian changelogs and copyright
# files), CJK and other scripts (benches/build_multilingual.py's translated manual
# pages and kernel docs), plus generated edge cases (emoji and ZWJ sequences, long
# whitespace runs, control characters, mixed scripts, very long words).
#
# usage: DSPROC_BIN=... bash benches/token_agreement.sh [N_DOCS] [TOKENIZER_NAMES...]
#   N_DOCS default 60000; names are directories of $DSPROC_TOKENIZERS
#   (default: bpe cl100k o200k llama3 qwen3 wordpiece).
# Needs ~/.cache/dsproc-ground/corpora/{linux_src,debian_changelog,debian_copyright,multilingual}.jsonl
# (shared/ground/build-corpora.py, benches/build_multilingual.py) and $DSPROC_PYTHON with tokenizers.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-60000}"; shift || true
NAMES=("$@"); [ ${#NAMES[@]} -gt 0 ] || NAMES=(bpe cl100k o200k llama3 qwen3 wordpiece)
BIN="${DSPROC_BIN:-$HOME/.cache/dsproc-target/release/dsproc}"
PY="${DSPROC_PYTHON:-$HOME/.cache/dsproc-venv/bin/python}"
TOK="${DSPROC_TOKENIZERS:-$HOME/.cache/dsproc-ground/tokenizers}"
CORPORA="${DSPROC_CORPORA:-$HOME/.cache/dsproc-ground/corpora}"
WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT

"$PY" - "$CORPORA" "$N" "$WORK/mix.jsonl" <<'PY'
import json, random, sys
corpora, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rng = random.Random(21)
# (file, share of the documents, max chars per document)
parts = [("linux_src.jsonl", 0.35, 20000), ("debian_changelog.jsonl", 0.2, 20000),
         ("debian_copyright.jsonl", 0.15, 20000), ("multilingual.jsonl", 0.25, 20000)]
docs = []
for name, share, cap in parts:
    want = int(n * share)
    with open(f"{corpora}/{name}", encoding="utf-8") as f:
        pool = []
        for i, line in enumerate(f):
            if len(pool) < want:
                pool.append(line)
            else:  # reservoir sample over the whole file
                j = rng.randrange(i + 1)
                if j < want:
                    pool[j] = line
    for line in pool:
        d = json.loads(line)
        docs.append({"id": f"{name}:{d['id']}", "text": d["text"][:cap]})
pieces = ["👩‍👩‍👧‍👦", "🎉🇺🇸🏳️‍🌈", "日本語のテキスト", "中文文本。", "한국어", "Ελληνικά", "русский", "עברית", "العربية",
          "हिन्दी", "\t", "\r\n", "\u0000", "\u0007", "\u001b[0m", "\u200b", "\u00a0", "   ", "\n\n\n", "x" * 300,
          "don't", "I'M", "1234567890", "3.14159", "$1,000", "café", "naïve", "ﬁ", "Å", "e\u0301", "<|endoftext|>", "</s>"]
edge = n - len(docs)
for k in range(max(edge, int(n * 0.05))):
    words = [rng.choice(pieces) if rng.random() < 0.5 else "".join(rng.choice("abcdefghij ") for _ in range(rng.randrange(1, 12)))
             for _ in range(rng.randrange(1, 80))]
    sep = rng.choice(["", " ", "  ", "\n", "\t", " " * rng.randrange(2, 200)])
    docs.append({"id": f"edge:{k}", "text": sep.join(words)})
rng.shuffle(docs)
with open(out, "w", encoding="utf-8") as f:
    for d in docs:
        f.write(json.dumps(d, ensure_ascii=False) + "\n")
print(f"{len(docs)} documents", file=sys.stderr)
PY

for name in "${NAMES[@]}"; do
  cat > "$WORK/job.toml" <<TOML
name = "token-agreement"
[input]
uri = "$WORK/mix.jsonl"
id = "id"
[[steps]]
op = "tokenize"
tokenizer = "$TOK/$name/tokenizer.json"
[output]
uri = "$WORK/out-$name"
format = "parquet"
mode = "overwrite"
TOML
  "$BIN" run "$WORK/job.toml" >/dev/null
  encoder="$("$PY" -c "import json,sys; m=json.load(open(sys.argv[1])); s=[s for s in m['steps'] if s['op']=='tokenize'][-1]['info']; print(s.get('encoder'), s.get('encoder_fallback_reason') or '')" "$WORK/out-$name/manifest.json")"
  printf '%-10s encoder %-40s ' "$name" "$encoder"
  "$PY" tests/compat/check_tokens.py "$WORK/out-$name"
done
