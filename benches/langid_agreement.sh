#!/usr/bin/env bash
# Agreement and single-thread throughput of dsproc-langid vs the C++ fastText
# (fasttext-predict 0.9.2.4) with lid.176.ftz on the multilingual corpus.
# usage: benches/langid_agreement.sh [CORPUS.jsonl] [K]
#   CORPUS default ~/.cache/dsproc-ground/corpora/multilingual.jsonl
#   (benches/build_multilingual.py); K default 5 (0: all labels, -1 for Python).
#   PY: a Python with fasttext-predict==0.9.2.4 (default ~/.cache/dsproc-langid-venv/bin/python).
# Both sides run pinned to one core (taskset -c 0); prints docs/s, MB/s and the comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dsproc-target}"
CORPUS="${1:-$HOME/.cache/dsproc-ground/corpora/multilingual.jsonl}"
K="${2:-5}"
PY="${PY:-$HOME/.cache/dsproc-langid-venv/bin/python}"
MODEL="$(bash scripts/fetch-models.sh)/lid.176.ftz"
cargo build -q --release -p dsproc-langid --example predict_jsonl
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
PYK="$K"; [ "$K" = 0 ] && PYK=-1
taskset -c 0 "$PY" tests/compat/langid_reference.py "$MODEL" "$CORPUS" "$tmp/ref.jsonl" "$PYK"
taskset -c 0 "$CARGO_TARGET_DIR/release/examples/predict_jsonl" "$MODEL" "$CORPUS" "$tmp/ours.jsonl" "$K"
python3 tests/compat/langid_compare.py "$CORPUS" "$tmp/ref.jsonl" "$tmp/ours.jsonl"
