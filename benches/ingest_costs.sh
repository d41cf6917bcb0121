#!/usr/bin/env bash
# What the ingest checks of issue 15 cost, measured side by side in one run on the
# same data (release binary): read → Parquet of N JSONL documents with
#   base      no id column, schema inferred (the full-file key scan)
#   declared  [input.schema] declared (no scan; every value type-checked per row)
#   id        input.id named: the duplicate-id check (a window sorted by id)
#   both      declared schema and the id check
# Prints wall time per case (best of RUNS) and the ratio to base.
#
#   bash benches/ingest_costs.sh [N_DOCS] [RUNS]     (default 400000 docs, 3 runs)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-400000}
RUNS=${2:-3}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/dsproc-target}
cargo build --release -q --bin dsproc
BIN=$CARGO_TARGET_DIR/release/dsproc
WORK=$(mktemp -d /tmp/dsproc-ingest.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
python3 - "$WORK/in.jsonl" "$N" <<'PY'
import json, random, sys
path, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(11)
words = [''.join(rnd.choice('abcdefghijklmnopqrstuvwxyz') for _ in range(rnd.randint(2, 9))) for _ in range(20000)]
with open(path, 'w') as f:
    for i in range(n):
        text = ' '.join(rnd.choice(words) for _ in range(rnd.randint(20, 120)))
        f.write(json.dumps({"doc_id": f"d{i:08d}", "text": text, "score": rnd.random(), "n": i}) + "\n")
PY
echo "input: $N documents, $(du -h "$WORK/in.jsonl" | cut -f1)"
write_job() { # name extra
  cat > "$WORK/$1.toml" <<TOML
name = "$1"
[input]
uri = "$WORK/in.jsonl"
$2
[output]
uri = "$WORK/out-$1"
format = "parquet"
mode = "overwrite"
TOML
}
SCHEMA='[input.schema]
doc_id = "string"
text = "string"
score = "float64"
n = "int64"'
write_job base ""
write_job declared "$SCHEMA"
write_job id 'id = "doc_id"'
write_job both "id = \"doc_id\"
$SCHEMA"
best() {
  local b=""
  for _ in $(seq "$RUNS"); do
    local s e
    s=$(date +%s.%N)
    "$BIN" run "$WORK/$1.toml" -q
    e=$(date +%s.%N)
    b=$(python3 -c "t=$e-$s; b='$b'; print(t if not b or t < float(b) else b)")
  done
  echo "$b"
}
base=$(best base)
printf "%-9s %7.2f s\n" base "$base"
for c in declared id both; do
  t=$(best $c)
  printf "%-9s %7.2f s  (%.2fx base)\n" "$c" "$t" "$(python3 -c "print($t/$base)")"
done
