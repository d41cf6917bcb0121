#!/usr/bin/env bash
# Regenerates the README's spec reference (between the spec-reference markers)
# from the option structs' docs: `dsproc ops --markdown`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dsproc-target}"
ref="$(cargo run -q -- ops --markdown)"
REF="$ref" python3 - <<'PY'
import os, re
p = "README.md"
s = open(p).read()
begin, end = "<!-- spec-reference:begin -->", "<!-- spec-reference:end -->"
i, j = s.index(begin) + len(begin), s.index(end)
open(p, "w").write(s[:i] + "\n" + os.environ["REF"].strip() + "\n" + s[j:])
PY
echo "README.md: spec reference regenerated"
