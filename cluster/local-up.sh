#!/usr/bin/env bash
# Start a dsproc scheduler and N executors on 127.0.0.1.
#
# usage: cluster/local-up.sh [N] [-- extra executor flags]
# env:   DSPROC_BIN (default: target/release/dsproc, else target/debug/dsproc)
#        CLUSTER_DIR (default: a new temp dir)   where logs, pid files and work dirs go
#        SCHEDULER_PORT (default: a free port)   EXECUTOR_TIMEOUT (seconds, default 30)
#        TASK_SLOTS (per executor, default: cores / N, at least 1)
#        PLAINTEXT=1: no TLS and no token (loopback only; to measure what TLS costs)
# The cluster runs with TLS and a token: a throwaway CA, certificate and token are
# made in CLUSTER_DIR/tls (`dsproc cluster certs`). Executors get --allow-any-path
# unless the extra flags give --allow-read/--allow-write.
# Prints the cluster directory and the environment a client needs as
# `export NAME=VALUE` lines (also in CLUSTER_DIR/env: `source` it), then the
# df:// URL on its last line.
# Stop it with: cluster/local-down.sh [CLUSTER_DIR]
set -euo pipefail
N="${1:-2}"; shift || true
[ "${1:-}" = "--" ] && shift
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${DSPROC_BIN:-}"
if [ -z "$BIN" ]; then
  if [ -x "$ROOT/target/release/dsproc" ]; then BIN="$ROOT/target/release/dsproc"; else BIN="$ROOT/target/debug/dsproc"; fi
fi
[ -x "$BIN" ] || { echo "no dsproc binary at $BIN: cargo build --release" >&2; exit 2; }
DIR="${CLUSTER_DIR:-$(mktemp -d /tmp/dsproc-cluster.XXXXXX)}"
mkdir -p "$DIR"
echo "$DIR" > "${TMPDIR:-/tmp}/dsproc-cluster.last"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() {  # PORT PIDFILE
  for _ in $(seq 1 400); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    kill -0 "$(cat "$2")" 2>/dev/null || { echo "process $(cat "$2") exited; see $DIR:" >&2; tail -n 5 "$DIR"/*.log >&2; exit 1; }
    sleep 0.05
  done
  echo "port $1 did not open within 20s (see $DIR)" >&2; exit 1
}
"$BIN" cluster certs "$DIR/tls" -q
TLS=(--tls-ca "$DIR/tls/ca.pem" --tls-cert "$DIR/tls/cluster.pem" --tls-key "$DIR/tls/cluster.key")
export DSPROC_CLUSTER_TOKEN_FILE="$DIR/tls/token"
if [ -n "${PLAINTEXT:-}" ]; then  # loopback only: for measuring what TLS costs
  TLS=(); unset DSPROC_CLUSTER_TOKEN_FILE
fi
POLICY=(--allow-any-path)
for a in "$@"; do case "$a" in --allow-read|--allow-write|--allow-any-path) POLICY=();; esac; done
SPORT="${SCHEDULER_PORT:-$(free_port)}"
SLOTS="${TASK_SLOTS:-$(( $(nproc) / N > 0 ? $(nproc) / N : 1 ))}"
"$BIN" scheduler --bind 127.0.0.1 --port "$SPORT" --executor-timeout "${EXECUTOR_TIMEOUT:-30}" "${TLS[@]}" \
  >"$DIR/scheduler.log" 2>&1 &
echo $! > "$DIR/scheduler.pid"
wait_port "$SPORT" "$DIR/scheduler.pid"
for i in $(seq 1 "$N"); do
  FP=$(free_port); GP=$(free_port)
  mkdir -p "$DIR/work-$i"
  "$BIN" executor --scheduler "df://127.0.0.1:$SPORT" --bind 127.0.0.1 --port "$FP" --grpc-port "$GP" \
    --work-dir "$DIR/work-$i" --task-slots "$SLOTS" --heartbeat "${HEARTBEAT:-5}" "${TLS[@]}" ${POLICY[@]+"${POLICY[@]}"} "$@" \
    >"$DIR/executor-$i.log" 2>&1 &
  echo $! > "$DIR/executor-$i.pid"
  wait_port "$FP" "$DIR/executor-$i.pid"
done
sleep 1  # let executors register
{
  if [ -z "${PLAINTEXT:-}" ]; then
    echo "export DSPROC_CLUSTER_TOKEN_FILE=$DIR/tls/token"
    echo "export DSPROC_TLS_CA=$DIR/tls/ca.pem"
  fi
  echo "export DSPROC_CLUSTER=df://127.0.0.1:$SPORT"
} > "$DIR/env"
echo "cluster dir: $DIR (scheduler + $N executors, $SLOTS task slots each; TLS and a token: source $DIR/env)"
cat "$DIR/env"
echo "df://127.0.0.1:$SPORT"
