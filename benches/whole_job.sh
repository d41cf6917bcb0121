#!/usr/bin/env bash
# Whole-job benchmark: read JSONL -> normalize -> dedup_exact -> write Parquet,
# dsproc vs DuckDB (read_json, keep the smallest id per md5(text), COPY to Parquet),
# on the same corpus and the same cores. Prints MB/s of each and the ratio.
#
# usage: benches/whole_job.sh [CORPUS.jsonl] [THREADS]
#   CORPUS   default: $DSPROC_CORPUS or /tmp/corpora/linux_src.jsonl
#            (build it: python3 ../shared/ground/build-corpora.py /tmp/corpora linux)
#   THREADS  default: all cores
# env: DSPROC_BIN (default target/release/dsproc), DSPROC_PYTHON (a python with duckdb;
#      default ~/.cache/dsproc-venv/bin/python), MEMORY_LIMIT (also run dsproc with
#      --memory-limit, default 1GiB), SCRATCH (default: a temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS="${1:-${DSPROC_CORPUS:-/tmp/corpora/linux_src.jsonl}}"
THREADS="${2:-$(nproc)}"
BIN="${DSPROC_BIN:-target/release/dsproc}"
PY="${DSPROC_PYTHON:-$HOME/.cache/dsproc-venv/bin/python}"
MEM="${MEMORY_LIMIT:-1GiB}"
SCRATCH="${SCRATCH:-$(mktemp -d)}"
[ -f "$CORPUS" ] || { echo "corpus $CORPUS not found" >&2; exit 2; }
[ -x "$BIN" ] || { echo "build first: cargo build --release ($BIN missing)" >&2; exit 2; }
"$PY" -c "import duckdb" 2>/dev/null || { echo "need duckdb: $PY -m pip install duckdb" >&2; exit 2; }
BYTES=$(stat -c %s "$CORPUS")
MB=$(python3 -c "print($BYTES/1e6)")
echo "corpus: $CORPUS ($MB MB), threads: $THREADS, machine: $(nproc) cores"

cat > "$SCRATCH/job.toml" <<TOML
name = "bench_dedup"
[input]
uri = "$CORPUS"
format = "jsonl"
id = "id"
[[steps]]
op = "normalize"
[[steps]]
op = "dedup_exact"
[output]
uri = "$SCRATCH/dsproc-out"
format = "parquet"
mode = "overwrite"
TOML

now() { date +%s.%N; }
t0=$(now)
"$BIN" run "$SCRATCH/job.toml" --partitions "$THREADS" -q --json > "$SCRATCH/dsproc.json"
t1=$(now)
"$BIN" run "$SCRATCH/job.toml" --partitions "$THREADS" --memory-limit "$MEM" -q --json > "$SCRATCH/dsproc-mem.json"
t2=$(now)
"$PY" - "$CORPUS" "$SCRATCH/duckdb.parquet" "$THREADS" <<'PY'
import duckdb, sys
corpus, out, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
con = duckdb.connect()
con.execute(f"SET threads={threads}")
con.execute(f"""
COPY (
  SELECT * FROM read_json('{corpus}', format='newline_delimited', maximum_object_size=67108864,
                          columns={{id: 'VARCHAR', text: 'VARCHAR', source: 'VARCHAR'}})
  QUALIFY row_number() OVER (PARTITION BY md5(text) ORDER BY id) = 1
) TO '{out}' (FORMAT parquet, COMPRESSION zstd)
""")
n = con.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()[0]
print(f"duckdb rows out: {n}")
PY
t3=$(now)
python3 - "$SCRATCH" "$MB" "$t0" "$t1" "$t2" "$t3" "$MEM" <<'PY'
import json, sys
scratch, mb = sys.argv[1], float(sys.argv[2])
t0, t1, t2, t3 = map(float, sys.argv[3:7])
m = json.load(open(f"{scratch}/dsproc.json"))["manifest"]
mm = json.load(open(f"{scratch}/dsproc-mem.json"))["manifest"]
assert m["shards"] == mm["shards"], "memory-limited run wrote different shards"
d, dm, k = t1 - t0, t2 - t1, t3 - t2
print(f"dsproc rows: in {m['rows']['in']} out {m['rows']['out']} quarantined {m['rows']['quarantined']} dropped {m['rows']['dropped']}")
print(f"dsproc                      {d:7.2f} s  {mb/d:8.1f} MB/s")
print(f"dsproc --memory-limit {sys.argv[7]:<6}{dm:7.2f} s  {mb/dm:8.1f} MB/s  (same shards: yes)")
print(f"duckdb                      {k:7.2f} s  {mb/k:8.1f} MB/s")
print(f"ratio dsproc/duckdb (MB/s): {k/d:.2f}x")
PY
