#!/usr/bin/env bash
# Copies the pinned llama.cpp source (vendored in the llama-cpp-python==0.3.36 sdist, fetched
# and unpacked by scripts/quant_models/llama_cpp.sh) into DIR, trimmed to what a CUDA build
# of llama-bench needs (about 22 MB, under the device machine's 64 MiB), for
# `LLAMA_SRC=DIR scripts/gpu/device_run.sh`. Usage: scripts/gpu/llama_cuda_src.sh DIR
set -euo pipefail
out=${1:?usage: scripts/gpu/llama_cuda_src.sh DIR}
here=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../quant_models/llama_cpp.sh
. "$here/scripts/quant_models/llama_cpp.sh"
if [ ! -f "$LLAMA_SRC/CMakeLists.txt" ]; then
    llama_cpp_tools
    llama_cpp_target llama-bench
fi
rm -rf "$out" && mkdir -p "$out/ggml/src" "$out/tools"
out=$(cd "$out" && pwd)
cd "$LLAMA_SRC"
cp -r CMakeLists.txt cmake include src common vendor "$out/"
cp -r ggml/CMakeLists.txt ggml/cmake ggml/include "$out/ggml/"
# The CPU and CUDA backends only (the CPU one is always built).
for f in ggml/src/*; do
    case $(basename "$f") in
        ggml-*) [ -d "$f" ] && ! [[ $(basename "$f") =~ ^ggml-(cpu|cuda)$ ]] && continue ;;
    esac
    cp -r "$f" "$out/ggml/src/"
done
cp -r tools/llama-bench "$out/tools/"
printf 'find_package(Threads REQUIRED)\nllama_add_compile_flags()\nadd_subdirectory(llama-bench)\n' \
    > "$out/tools/CMakeLists.txt"
du -sh "$out"
