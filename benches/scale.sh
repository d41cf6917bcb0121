#!/usr/bin/env bash
# Scaling benchmark: the same job (read JSONL -> normalize -> dedup_exact -> Parquet)
# on a local Ballista cluster of 1, 2, 4 and 8 executors (one task slot each), and
# in local mode; prints wall time, MB/s and speedup over 1 executor, and checks that
# every run wrote the same shards.
#
# usage: benches/scale.sh [CORPUS.jsonl] [EXECUTOR COUNTS...]
#   CORPUS  default: $DSPROC_CORPUS or /tmp/corpora/linux_src.jsonl
# env: DSPROC_BIN (default target/release/dsproc), SLOTS (task slots per executor, default 1)
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS="${1:-${DSPROC_CORPUS:-/tmp/corpora/linux_src.jsonl}}"
shift || true
COUNTS=("$@"); [ ${#COUNTS[@]} -gt 0 ] || COUNTS=(1 2 4 8)
BIN="${DSPROC_BIN:-target/release/dsproc}"
SLOTS="${SLOTS:-1}"
[ -f "$CORPUS" ] || { echo "corpus $CORPUS not found" >&2; exit 2; }
SCRATCH="$(mktemp -d)"
trap 'bash cluster/local-down.sh "$SCRATCH/cluster" >/dev/null 2>&1 || true' EXIT
MB=$(python3 -c "import os; print(os.path.getsize('$CORPUS')/1e6)")
cat > "$SCRATCH/job.toml" <<TOML
name = "bench_scale"
[input]
uri = "$CORPUS"
format = "jsonl"
[[steps]]
op = "normalize"
[[steps]]
op = "dedup_exact"
[output]
uri = "$SCRATCH/out"
format = "parquet"
mode = "overwrite"
TOML
echo "corpus $CORPUS ($MB MB) on $(nproc) cores; $SLOTS task slot(s) per executor"
now() { date +%s.%N; }
t0=$(now); "$BIN" run "$SCRATCH/job.toml" -q --json > "$SCRATCH/local.json"; t1=$(now)
printf "%-12s %8.2f s %8.1f MB/s\n" "local" "$(echo "$t1 - $t0" | bc)" "$(echo "$MB / ($t1 - $t0)" | bc -l)"
base=""
for n in "${COUNTS[@]}"; do
  rm -rf "$SCRATCH/cluster"
  URL=$(CLUSTER_DIR="$SCRATCH/cluster" TASK_SLOTS="$SLOTS" DSPROC_BIN="$BIN" bash cluster/local-up.sh "$n" | tail -n1)
  t0=$(now)
  "$BIN" submit "$SCRATCH/job.toml" --cluster "$URL" --partitions $((n * SLOTS * 2)) -q --json > "$SCRATCH/c$n.json"
  t1=$(now)
  bash cluster/local-down.sh "$SCRATCH/cluster" > /dev/null
  secs=$(echo "$t1 - $t0" | bc)
  [ -n "$base" ] || base=$secs
  same=$(python3 -c "import json; a=json.load(open('$SCRATCH/local.json'))['manifest']['shards']; b=json.load(open('$SCRATCH/c$n.json'))['manifest']['shards']; print('same shards' if a==b else 'DIFFERENT SHARDS')")
  printf "%-12s %8.2f s %8.1f MB/s  speedup %5.2fx  %s\n" "$n executors" "$secs" "$(echo "$MB / $secs" | bc -l)" "$(echo "$base / $secs" | bc -l)" "$same"
done
