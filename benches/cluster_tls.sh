#!/usr/bin/env bash
# What TLS and the token cost on a 2-executor cluster on 127.0.0.1: the same
# dedup job (normalize -> dedup_exact, shuffles between executors) submitted to a
# TLS+token cluster and to a plaintext one, interleaved rounds, medians.
# usage: benches/cluster_tls.sh [ROWS_PER_FILE (default 200000)] [ROUNDS (default 3)]
# env: DSPROC_BIN (default target/release/dsproc)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${DSPROC_BIN:-$ROOT/target/release/dsproc}"
ROWS="${1:-200000}"; ROUNDS="${2:-3}"
W="$(mktemp -d /tmp/dsproc-tls-bench.XXXXXX)"
trap 'for c in "$W"/c-*; do [ -d "$c" ] && bash "$ROOT/cluster/local-down.sh" "$c" >/dev/null 2>&1 || true; done; rm -rf "$W"' EXIT
mkdir -p "$W/in"
python3 - "$W/in" "$ROWS" <<'PY'
import json, random, sys
d, n = sys.argv[1], int(sys.argv[2])
r = random.Random(7)
words = [''.join(r.choice('abcdefghij') for _ in range(r.randint(2, 9))) for _ in range(5000)]
recent = []
for f in range(4):
    with open(f"{d}/p{f}.jsonl", "w") as out:
        for i in range(n):
            if recent and r.random() < 0.3:  # about a third are exact copies of earlier rows
                text = r.choice(recent)
            else:
                text = " ".join(r.choice(words) for _ in range(60))
                recent = (recent + [text])[-1000:]
            out.write(json.dumps({"id": f"{f}-{i}", "text": text}) + "\n")
PY
cat > "$W/job.toml" <<TOML
name = "tls-bench"
[input]
uri = "$W/in/*.jsonl"
[[steps]]
op = "normalize"
[[steps]]
op = "dedup_exact"
[output]
uri = "$W/out"
format = "parquet"
mode = "overwrite"
TOML
CLUSTER_DIR="$W/c-tls" DSPROC_BIN="$BIN" TASK_SLOTS=1 bash "$ROOT/cluster/local-up.sh" 2 >/dev/null
PLAINTEXT=1 CLUSTER_DIR="$W/c-plain" DSPROC_BIN="$BIN" TASK_SLOTS=1 bash "$ROOT/cluster/local-up.sh" 2 >/dev/null
run() {  # CLUSTER_DIR -> seconds
  ( set +u; unset DSPROC_CLUSTER_TOKEN_FILE DSPROC_TLS_CA; source "$1/env"
    s=$(date +%s.%N); "$BIN" submit "$W/job.toml" -q; e=$(date +%s.%N); echo "$e - $s" | bc )
}
tls=(); plain=()
for r in $(seq 1 "$ROUNDS"); do
  tls+=("$(run "$W/c-tls")"); plain+=("$(run "$W/c-plain")")
  echo "round $r: tls ${tls[-1]} s, plaintext ${plain[-1]} s"
done
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mt=$(med "${tls[@]}"); mp=$(med "${plain[@]}")
echo "input: $(du -sh "$W/in" | cut -f1), 2 executors x 1 slot"
echo "median: tls+token ${mt} s, plaintext ${mp} s, ratio $(echo "scale=3; $mt / $mp" | bc)"
