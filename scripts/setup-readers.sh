#!/usr/bin/env bash
# Creates the venv of the torch-based shard readers used by the compat tests
# (tests/it/tokenize.rs via DSPROC_READERS_PYTHON, and tests/compat/read_shards.py):
# megatron-core 0.16.1 (IndexedDataset) and mosaicml-streaming 0.13 (StreamingDataset).
# The PyPI torch wheel is the CUDA build: about 6 GB installed. transformers (pulled
# by streaming) pins tokenizers <= 0.23.0 and huggingface-hub < 1.0.
set -euo pipefail
VENV="${1:-${DSPROC_READERS_VENV:-$HOME/.cache/dsproc-readers}}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q megatron-core==0.16.1 "mosaicml-streaming==0.13.*" pyarrow "tokenizers==0.22.2" "huggingface-hub>=0.34,<1.0"
"$VENV/bin/python" -c "from megatron.core.datasets.indexed_dataset import IndexedDataset; from streaming import StreamingDataset" 2>/dev/null
echo "readers venv ready: $VENV (export DSPROC_READERS_PYTHON=$VENV/bin/python)"
