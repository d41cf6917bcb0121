#!/usr/bin/env bash
# Bounded memory on huge documents (issue 15): a 300 MB single-line document as
# the FIRST line of a JSONL file, and a 3 GB JSONL of 256 documents of ~12 MB,
# and a 2.4 GB "mixed" JSONL (2,000 small documents, then 200 of ~12 MB: the
# batch size sampled at the start is far too many rows for the later ones, so
# the read stops and the job reruns with smaller batches), each run under
# --memory-limit 2GiB, with peak RSS from /usr/bin/time.
#
#   bash benches/big_documents.sh [WORKDIR]      (needs ~7 GB of free disk)
#
# Prints, per case: exit code, rows in/out/quarantined, wall time, peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-$(mktemp -d /tmp/dsproc-big.XXXXXX)}
mkdir -p "$WORK"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/dsproc-target}
# DSPROC_BIN=path runs another build (e.g. target/debug/dsproc) instead of release.
if [ -z "${DSPROC_BIN:-}" ]; then
  cargo build --release -q --bin dsproc
fi
BIN=${DSPROC_BIN:-$CARGO_TARGET_DIR/release/dsproc}
CASES=${CASES:-first300 docs3g mixed}

python3 - "$WORK" <<'EOF'
import os, random, sys
work = sys.argv[1]
rnd = random.Random(7)
words = [''.join(rnd.choice('abcdefghijklmnopqrstuvwxyz') for _ in range(rnd.randint(2, 9))) for _ in range(5000)]
def doc(nbytes):
    out, n = [], 0
    while n < nbytes:
        w = rnd.choice(words); out.append(w); n += len(w) + 1
    return ' '.join(out)
block = doc(1 << 20)  # reuse 1 MB of text so generating 3 GB stays quick
def big(nbytes, salt):
    reps = nbytes // len(block)
    return f"{salt} " + (block + ' ') * reps
p = os.path.join(work, 'first300.jsonl')
if not os.path.exists(p):
    with open(p, 'w') as f:
        f.write('{"text": "%s", "kind": "huge"}\n' % big(300 << 20, 'first'))
        for i in range(1000):
            f.write('{"text": "%s", "kind": "small"}\n' % doc(2000))
p = os.path.join(work, 'docs3g.jsonl')
if not os.path.exists(p):
    with open(p, 'w') as f:
        for i in range(256):
            f.write('{"text": "%s", "n": %d}\n' % (big(12 << 20, f'doc{i}'), i))
p = os.path.join(work, 'mixed.jsonl')
if not os.path.exists(p):
    with open(p, 'w') as f:
        for i in range(2000):
            f.write('{"text": "%s", "n": %d}\n' % (doc(2000), i))
        for i in range(200):
            f.write('{"text": "%s", "n": %d}\n' % (big(12 << 20, f'late{i}'), 2000 + i))
EOF

for case in $CASES; do
  cat > "$WORK/$case.toml" <<EOF
name = "$case"
[input]
uri = "$WORK/$case.jsonl"
[[steps]]
op = "normalize"
[[steps]]
op = "dedup_exact"
[output]
uri = "$WORK/out-$case"
format = "parquet"
mode = "overwrite"
EOF
  rm -rf "$WORK/out-$case"
  set +e
  /usr/bin/time -f "%e s wall, peak RSS %M KiB" -o "$WORK/$case.time" \
    "$BIN" run "$WORK/$case.toml" --memory-limit 2GiB > "$WORK/$case.log" 2>&1
  rc=$?
  set -e
  rows=$(python3 -c "import json,sys; m=json.load(open('$WORK/out-$case/manifest.json')); print(m['rows'])" 2>/dev/null || echo "no manifest")
  echo "$case: exit $rc; rows $rows; $(cat "$WORK/$case.time" | tail -1)"
  if [ $rc -ne 0 ]; then tail -5 "$WORK/$case.log"; fi
done
