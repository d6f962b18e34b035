#!/usr/bin/env bash
# The GPU runs on a machine with a real GPU and no Rust: the parity suite on the family
# fixtures, then speed (weft bench --backend gpu) on random-weight llama-shaped models
# made there by random_gguf.py. Usage: scripts/gpu/device_run.sh WEFT_BINARY [SHAPES...]
# where SHAPES are smollm2 llama1b llama8b (default: all three). Bench repetitions:
# $REPS (default 3). Prints everything (tee it to keep a log).
# With LLAMA_SRC (a tree from scripts/gpu/llama_cuda_src.sh), llama.cpp's CUDA llama-bench is
# built there (into $LLAMA_BUILD, default .lbuild, while the parity suite runs) and run on the
# same files after weft (-ngl 99 -fa 1). With WEFT_B, a second weft binary is benched right
# after the first on each file (an A/B of two builds). SKIP_PARITY=1 skips the fixtures.
# INT8=1 adds a bench (and, but for 8B, a parity run) with --activations int8 (on adapters
# with cooperative matrices, the tensor-core prefill GEMM); NO_COOP=1 with it adds the
# same on the integer-dot GEMM (WEFT_GPU_NO_COOP=1).
set -uo pipefail
cd "$(dirname "$0")/../.."
weft=$1
shift
shapes=${*:-smollm2 llama1b llama8b}
reps=${REPS:-3}
py=${PYTHON:-python3}

"$weft" inspect --gpu || exit 1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,clocks.max.memory --format=csv

llama_bench=
if [ -n "${LLAMA_SRC:-}" ]; then
    lb=${LLAMA_BUILD:-.lbuild}
    llama_bench=$lb/bin/llama-bench
    if [ ! -x "$llama_bench" ]; then
        echo "== building llama.cpp (CUDA, sm_90) in the background: $lb/build.log"
        mkdir -p "$lb"
        (cmake -S "$LLAMA_SRC" -B "$lb" -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON \
            -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
            -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF &&
            cmake --build "$lb" --target llama-bench -j "$(nproc)") > "$lb/build.log" 2>&1 &
        build_pid=$!
    fi
fi

[ "${SKIP_PARITY:-0}" = 1 ] || echo "== parity: gpu graph vs curated decoder, family fixtures"
for dir in tests/fixtures/families/*/; do
    [ "${SKIP_PARITY:-0}" = 1 ] && break
    for src in "" model-f16.gguf; do
        [ -e "$dir$src" ] || continue
        printf '%s: ' "$dir$src"
        "$weft" parity "$dir$src" --backend gpu --tokens 1,5,7,3,9,2 --steps 6 2>&1 |
            grep -E 'max \||PASS|FAIL|error' | tr '\n' ' '
        echo
    done
done

for shape in $shapes; do
    case $shape in
        smollm2) type=Q4_1 ;;
        *) type=Q4_K_M ;;
    esac
    model=/tmp/weft-$shape-$type.gguf
    [ -e "$model" ] || "$py" scripts/gpu/random_gguf.py --shape "$shape" --type "$type" -o "$model" || exit 1
    echo "== $shape $type: parity (gpu graph vs curated; not for 8B, whose CPU side is slow), then bench"
    # 48 prompt tokens: the prefill takes the GEMM kernel (32 rows or more).
    [ "$shape" = llama8b ] || "$weft" parity "$model" --backend gpu --tokens "$(seq -s, 1 48)" --steps 4 --tolerance 2e-3 2>&1 |
        grep -E 'max \||PASS|FAIL|error'
    # Every bench runs on an idle machine: after llama.cpp's build.
    if [ -n "${build_pid:-}" ]; then
        wait "$build_pid" || { tail -30 "$lb/build.log"; llama_bench=; }
        build_pid=
    fi
    "$weft" bench "$model" --backend gpu -p 512 -n 128 -r "$reps" 2>&1 | grep -v XDG_RUNTIME_DIR
    # Where a decode step's time goes: the host recording and submitting every dispatch,
    # then the wait for the GPU and the readback.
    WEFT_GPU_TIMING=1 "$weft" bench "$model" --backend gpu -p 16 -n 8 -r 1 2>&1 |
        grep '1 position' | tail -1
    if [ "${INT8:-0}" = 1 ]; then
        echo "-- activations int8"
        "$weft" bench "$model" --backend gpu --activations int8 -p 512 -n 128 -r "$reps" 2>&1 |
            grep -v XDG_RUNTIME_DIR
        [ "$shape" = llama8b ] || "$weft" parity "$model" --backend gpu --activations int8 \
            --tokens "$(seq -s, 1 48)" --steps 4 --tolerance 2e-3 2>&1 | grep -E 'max \||PASS|FAIL|error'
        if [ "${NO_COOP:-0}" = 1 ]; then
            echo "-- activations int8, integer-dot prefill GEMM"
            WEFT_GPU_NO_COOP=1 "$weft" bench "$model" --backend gpu --activations int8 -p 512 -n 16 -r "$reps" 2>&1 |
                grep -v XDG_RUNTIME_DIR
            [ "$shape" = llama8b ] || WEFT_GPU_NO_COOP=1 "$weft" parity "$model" --backend gpu --activations int8 \
                --tokens "$(seq -s, 1 48)" --steps 4 --tolerance 2e-3 2>&1 | grep -E 'max \||PASS|FAIL|error'
        fi
    fi
    if [ -n "${WEFT_B:-}" ]; then
        echo "-- $WEFT_B"
        "$WEFT_B" bench "$model" --backend gpu -p 512 -n 128 -r "$reps" 2>&1 | grep -v XDG_RUNTIME_DIR
    fi
    if [ -n "$llama_bench" ]; then
        echo "-- llama.cpp CUDA"
        "$llama_bench" -m "$model" -ngl 99 -fa 1 -p 512 -n 128 -r "$reps" 2>&1 | grep -E '^\||error'
    fi
done
