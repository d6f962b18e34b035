#!/usr/bin/env bash
# The test command: fetch the real models, re-quantise SmolLM2 into every quant type
# (llama.cpp's quantize tool, built once; cached in $WEFT_HOME), then run every test.
# The GPU tests need a Vulkan driver: on a machine without a GPU, Mesa's software one
# (Debian mesa-vulkan-drivers), which .ci/run installs.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 scripts/fetch_model.py smollm2-135m >/dev/null
python3 scripts/fetch_model.py gemma3-270m >/dev/null
bash scripts/quant_models/make_models.sh
cargo test --release --workspace "$@"
