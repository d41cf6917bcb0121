#!/usr/bin/env bash
# Stop exactly the processes cluster/local-up.sh started (by their pid files).
# usage: cluster/local-down.sh [CLUSTER_DIR]   (default: the last one started)
set -euo pipefail
DIR="${1:-$(cat "${TMPDIR:-/tmp}/dsproc-cluster.last" 2>/dev/null || true)}"
[ -n "$DIR" ] && [ -d "$DIR" ] || { echo "no cluster dir (pass the one local-up.sh printed)" >&2; exit 2; }
for f in "$DIR"/executor-*.pid "$DIR"/scheduler.pid; do
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
done
echo "stopped cluster in $DIR"
