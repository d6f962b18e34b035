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
# The NEON kernels, cross-built and run under qemu-user where that toolchain is
# installed (.ci/run installs it; the script says what it needs).
if command -v qemu-aarch64 >/dev/null && [ -d "$(/usr/bin/rustc --print sysroot 2>/dev/null)/lib/rustlib/aarch64-unknown-linux-gnu" ]; then
    bash scripts/test_aarch64.sh
else
    echo "test.sh: no aarch64 cross toolchain here: the NEON kernels were not tested (see scripts/test_aarch64.sh)" >&2
fi
