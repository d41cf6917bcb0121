#!/usr/bin/env bash
# Shards of two dsproc builds compared byte for byte (issue #21's "shards
# byte-identical to before the change"): every job of OLD_JOBS (default: this
# checkout's jobs/*.toml that the old build knows) and tokenize.toml with each
# tokenizer file of $DSPROC_TOKENIZERS, run by OLD_BIN and NEW_BIN; prints per job
# the shard count, whether every shard's sha256 is equal, rows out and the new
# build's tokenize encoder.
#
#   OLD_BIN=/path/old/dsproc NEW_BIN=/path/new/dsproc bash benches/before_after.sh [JOB.toml...]
#
# e.g. OLD_BIN built from a842868 (before the fast BPE encoder and shared subplans).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
: "${OLD_BIN:?set OLD_BIN}" "${NEW_BIN:?set NEW_BIN}"
TOK="${DSPROC_TOKENIZERS:-$HOME/.cache/dsproc-ground/tokenizers}"
WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT
ln -s "$ROOT/datasets" "$WORK/datasets"
ln -s "$TOK" "$WORK/tokenizers"
JOBS=("$@"); [ ${#JOBS[@]} -gt 0 ] || JOBS=(jobs/*.toml)
for j in "${JOBS[@]}"; do cp "$j" "$WORK/"; done
cd "$WORK"
mkdir -p o
run() { # tag bin spec variant extra...
  local tag=$1 bin=$2 spec=$3 var=$4; shift 4
  local name; name="$(basename "$spec" .toml)$var"
  "$bin" run -q --json "$spec" --set "output.uri=$WORK/o/$tag/$name" "$@" > "o/$tag.$name.json" 2> "o/$tag.$name.err" \
    || echo "$tag $name: exit $? ($(tail -1 "o/$tag.$name.err"))"
}
for spec in *.toml; do
  # Jobs the old build cannot validate (ops added since) are left out.
  if ! why="$("$OLD_BIN" validate "$spec" 2>&1)"; then
    echo "$spec: left out, the old build refuses it: $(printf '%s\n' "$why" | tail -1)"
    continue
  fi
  run old "$OLD_BIN" "$spec" ""; run new "$NEW_BIN" "$spec" ""
done
if [ -f tokenize.toml ]; then
  for t in "$TOK"/*/; do
    t="$(basename "$t")"
    run old "$OLD_BIN" tokenize.toml "-$t" --set "steps.1.tokenizer=tokenizers/$t/tokenizer.json"
    run new "$NEW_BIN" tokenize.toml "-$t" --set "steps.1.tokenizer=tokenizers/$t/tokenizer.json"
  done
fi
python3 - "$WORK/o" <<'PY'
import glob, json, os, sys
bad = 0
for f in sorted(glob.glob(os.path.join(sys.argv[1], "old.*.json"))):
    n = f.replace("/old.", "/new.")
    name = os.path.basename(f)[4:-5]
    try:
        a, b = json.load(open(f))["manifest"], json.load(open(n))["manifest"]
    except Exception as e:
        print(f"{name:<24} no manifest ({e})"); bad += 1; continue
    sa = [(s["path"].split("/")[-1], s.get("sha256")) for s in a["shards"]]
    sb = [(s["path"].split("/")[-1], s.get("sha256")) for s in b["shards"]]
    enc = [st.get("info", {}).get("encoder") for st in b["steps"] if st["op"] == "tokenize"]
    bad += sa != sb
    print(f"{name:<24} shards {len(sa):>3}  identical={sa == sb}  rows out {a['rows']['out']}/{b['rows']['out']}  encoder {enc}")
sys.exit(1 if bad else 0)
PY
