#!/usr/bin/env bash
# The longer fuzz run (issue 15): the proptest properties over the JSONL/CSV
# readers, the shard writers, the spec parser and --set, with many more cases
# than CI's 48. A failure is shrunk to a minimal input and saved under
# crates/*/proptest-regressions/ — commit that file and fix the bug: the case
# then reruns first in every test run.
#
#   bash benches/fuzz.sh [CASES]      (default 5000)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/dsproc-target}
export DSPROC_FUZZ_CASES=${1:-5000}
cargo test --release -p dsproc-io --lib fuzz:: -- --nocapture
cargo test --release -p dsproc-job --lib spec_fuzz:: -- --nocapture
