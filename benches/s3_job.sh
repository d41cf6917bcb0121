#!/usr/bin/env bash
# Object-storage benchmark: the same job (read JSONL -> normalize -> dedup_exact ->
# write Parquet) from and to the local disk, and from and to a real S3 server
# (SeaweedFS on 127.0.0.1, scripts/s3-server.sh), plus pyarrow's C++ S3 client
# moving the same bytes (read the JSONL from S3, write one Parquet file to S3, no
# processing) as the transfer floor. Rounds are interleaved; prints medians and ratios.
#
# usage: benches/s3_job.sh [CORPUS.jsonl] [ROUNDS]
#   CORPUS  default: $DSPROC_CORPUS or /tmp/corpora/linux_src.jsonl
#           (python3 ../shared/ground/build-corpora.py /tmp/corpora linux)
#   ROUNDS  default 3
# env: DSPROC_BIN (default target/release/dsproc), DSPROC_PYTHON (a python with
#      pyarrow; default ~/.cache/dsproc-venv/bin/python), SCRATCH (default: a temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS="${1:-${DSPROC_CORPUS:-/tmp/corpora/linux_src.jsonl}}"
ROUNDS="${2:-3}"
BIN="${DSPROC_BIN:-target/release/dsproc}"
PY="${DSPROC_PYTHON:-$HOME/.cache/dsproc-venv/bin/python}"
SCRATCH="${SCRATCH:-$(mktemp -d)}"
[ -f "$CORPUS" ] || { echo "corpus $CORPUS not found" >&2; exit 2; }
[ -x "$BIN" ] || { echo "build first: cargo build --release ($BIN missing)" >&2; exit 2; }
"$PY" -c "import pyarrow" 2>/dev/null || { echo "need pyarrow: $PY -m pip install pyarrow" >&2; exit 2; }
BYTES=$(stat -c %s "$CORPUS")
MB=$(python3 -c "print($BYTES/1e6)")
echo "corpus: $CORPUS ($MB MB), machine: $(nproc) cores, $ROUNDS rounds"

S3_DIR="$SCRATCH/s3"
trap 'bash scripts/s3-server.sh stop "$S3_DIR"' EXIT
bash scripts/s3-server.sh start "$S3_DIR" >/dev/null
# shellcheck disable=SC1091
source "$S3_DIR/env"
BUCKET="$DSPROC_TEST_S3_BUCKET"

cat > "$SCRATCH/pa.py" <<'PY'
import os, sys, time
from urllib.parse import urlparse
import pyarrow.fs as pafs, pyarrow.json as pj, pyarrow.parquet as pq
e = urlparse(os.environ["DSPROC_TEST_S3_ENDPOINT"])
fs = pafs.S3FileSystem(access_key=os.environ["DSPROC_TEST_S3_KEY"], secret_key=os.environ["DSPROC_TEST_S3_SECRET"],
                       endpoint_override=e.netloc, scheme=e.scheme, region="us-east-1")
what, a, b = sys.argv[1:4]
if what == "upload":
    pafs.copy_files(a, b, destination_filesystem=fs, chunk_size=16 << 20)
else:  # transfer: JSONL from S3 -> one Parquet file on S3
    with fs.open_input_stream(a) as f:
        t = pj.read_json(f, read_options=pj.ReadOptions(block_size=64 << 20))
    pq.write_table(t, b, filesystem=fs, compression="zstd")
PY

t0=$(date +%s.%N)
"$PY" "$SCRATCH/pa.py" upload "$CORPUS" "$BUCKET/bench/in/corpus.jsonl"
t1=$(date +%s.%N)
echo "upload (pyarrow): $(python3 -c "print(f'{$MB/($t1-$t0):.1f} MB/s')")"

job() { # job URI_IN URI_OUT
  cat <<TOML
name = "bench_s3"
[input]
uri = "$1"
format = "jsonl"
id = "id"
[[steps]]
op = "normalize"
[[steps]]
op = "dedup_exact"
[output]
uri = "$2"
format = "parquet"
mode = "overwrite"
TOML
}
job "$CORPUS" "$SCRATCH/local-out" > "$SCRATCH/local.toml"
job "s3://$BUCKET/bench/in/corpus.jsonl" "s3://$BUCKET/bench/out" > "$SCRATCH/s3.toml"

now() { date +%s.%N; }
: > "$SCRATCH/times"
for r in $(seq 1 "$ROUNDS"); do
  a=$(now); "$BIN" run "$SCRATCH/local.toml" -q --json > "$SCRATCH/local.json"; b=$(now)
  "$BIN" run "$SCRATCH/s3.toml" -q --json > "$SCRATCH/s3.json"; c=$(now)
  "$PY" "$SCRATCH/pa.py" transfer "$BUCKET/bench/in/corpus.jsonl" "$BUCKET/bench/pa/out.parquet"; d=$(now)
  echo "$r $(python3 -c "print($b-$a, $c-$b, $d-$c)")" | tee -a "$SCRATCH/times"
done

"$PY" - "$SCRATCH" "$MB" <<'PY'
import json, statistics, sys
scratch, mb = sys.argv[1], float(sys.argv[2])
rows = [list(map(float, l.split()[1:])) for l in open(f"{scratch}/times")]
local, s3, pa = (statistics.median(c) for c in zip(*rows))
ml, ms = (json.load(open(f"{scratch}/{n}.json"))["manifest"] for n in ("local", "s3"))
same = [(s["path"], s["sha256"]) for s in ml["shards"]] == [(s["path"], s["sha256"]) for s in ms["shards"]]
print(f"dsproc local disk -> local disk : {local:7.2f} s  {mb/local:7.1f} MB/s")
print(f"dsproc s3 -> s3                 : {s3:7.2f} s  {mb/s3:7.1f} MB/s  ({s3/local:.2f}x the local time)")
print(f"pyarrow s3 -> s3 (transfer only): {pa:7.2f} s  {mb/pa:7.1f} MB/s  (dsproc s3 job / pyarrow transfer = {s3/pa:.2f}x)")
print(f"shards identical (local vs s3): {same}; rows out {ml['rows']['out']} / {ms['rows']['out']}")
PY
