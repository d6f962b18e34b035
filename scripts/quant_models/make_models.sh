#!/usr/bin/env bash
# Requantise the SmolLM2-135M GGUF into every quant type weft decodes.
#
#   bash scripts/quant_models/make_models.sh            # all types
#   bash scripts/quant_models/make_models.sh Q4_0 Q6_K  # a subset
#
# Idempotent; everything is cached under $WEFT_HOME/quant-models (WEFT_HOME
# defaults to ~/.cache/weft).  Needs: python3 (with pip and venv), a C/C++
# compiler, make.  No torch.  Used by CI.
#
# 1. llama-quantize is built from the llama.cpp vendored in the pinned
#    llama-cpp-python==0.3.36 sdist (the same llama.cpp that made the committed
#    references).  Portable flags: GGML_NATIVE=OFF, AVX2/FMA/F16C on,
#    AVX-512/AMX off; only the llama-quantize target is built.
#    cmake comes from the system if it has one (>= 3.14), else from the pinned
#    cmake wheel in a small venv ($WEFT_HOME/quant-models/tools-venv).
# 2. smollm2-135m.gguf (Q4_1, fetched by scripts/fetch_model.py) is requantised
#    (--allow-requantize) into $WEFT_HOME/quant-models/smollm2-135m-<TYPE>.gguf
#    for each TYPE in TYPES below.  A file is rebuilt only when missing or when
#    its recipe (source hash + quantize arguments, kept in <file>.recipe) changed.
# 3. census.py (gguf==0.19.0 reader, in the tools venv) compares each file's
#    tensor types and sha256 with tests/fixtures/quant_models/references.json.
#    A mismatch means the committed references do not describe this file; it
#    fails the script when WEFT_QUANT_STRICT=1 (else a warning).
#
# Environment: WEFT_HOME, JOBS (build parallelism, default nproc),
# PYTHON (default python3), WEFT_QUANT_STRICT.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
WEFT_HOME="${WEFT_HOME:-$HOME/.cache/weft}"
QM="$WEFT_HOME/quant-models"
BUILD="$QM/build"
TOOLS="$QM/tools-venv"
JOBS="${JOBS:-$(nproc 2>/dev/null || echo 2)}"
PY="${PYTHON:-python3}"
LCP_VERSION=0.3.36
CMAKE_VERSION=4.4.5
GGUF_VERSION=0.19.0

# Default set.  The name is both the file suffix and llama-quantize's type
# argument (Q3_K, Q4_K, Q5_K are llama-quantize's aliases of the _M mixes).
DEFAULT_TYPES="Q4_0 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_NL IQ4_XS TQ1_0 TQ2_0"
if [ $# -gt 0 ]; then TYPES="$*"; else TYPES="$DEFAULT_TYPES"; fi

# Extra llama-quantize arguments per type.  k-quant, IQ4_XS and TQ blocks are
# 256 wide and SmolLM2's rows are 576 wide, so only ffn_down (rows of 1536)
# can hold them; every other weight falls back (Q4_0/Q5_0/Q5_1/Q8_0/IQ4_NL).
# The Q2_K and Q3_K(_M) mixes put Q3_K resp. Q4_K/Q5_K on ffn_down, which would
# leave no Q2_K resp. Q3_K tensor at all: force ffn_down to the named type.
extra_args() {
    case "$1" in
        Q2_K) echo "--tensor-type ffn_down=q2_k" ;;
        Q3_K) echo "--tensor-type ffn_down=q3_k" ;;
        *) echo "" ;;
    esac
}

log() { echo "== [$(date +%H:%M:%S)] $*" >&2; }
T0=$(date +%s)
mkdir -p "$QM" "$BUILD"

# --- tools venv: gguf (census) and, if needed, cmake -------------------------
if [ ! -x "$TOOLS/bin/python" ]; then
    log "creating tools venv $TOOLS"
    "$PY" -m venv "$TOOLS"
fi
TPY="$TOOLS/bin/python"
if ! "$TPY" -c "import importlib.metadata as m, sys; sys.exit(m.version('gguf') != '$GGUF_VERSION')" 2>/dev/null; then
    log "installing gguf==$GGUF_VERSION into the tools venv"
    "$TPY" -m pip install --disable-pip-version-check -q "gguf==$GGUF_VERSION"
fi

CMAKE=""
if command -v cmake >/dev/null 2>&1; then
    v="$(cmake --version | head -1 | sed 's/[^0-9.]*//')"
    if [ "$(printf '%s\n' 3.14 "$v" | sort -V | head -1)" = 3.14 ]; then CMAKE="$(command -v cmake)"; fi
fi
if [ -z "$CMAKE" ]; then
    if [ ! -x "$TOOLS/bin/cmake" ]; then
        log "no usable system cmake: installing cmake==$CMAKE_VERSION into the tools venv"
        "$TPY" -m pip install --disable-pip-version-check -q "cmake==$CMAKE_VERSION"
    fi
    CMAKE="$TOOLS/bin/cmake"
fi
log "cmake: $CMAKE ($("$CMAKE" --version | head -1))"

# --- llama-quantize ----------------------------------------------------------
SRC="$BUILD/llama_cpp_python-$LCP_VERSION/vendor/llama.cpp"
BIN_DIR="$BUILD/llama.cpp-build"
QUANTIZE="$BIN_DIR/bin/llama-quantize"
CMAKE_FLAGS=(
    -DCMAKE_BUILD_TYPE=Release
    -DBUILD_SHARED_LIBS=OFF
    -DLLAMA_BUILD_COMMON=ON -DLLAMA_BUILD_TOOLS=ON
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF
    -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_BUILD_MTMD=OFF
    -DLLAMA_OPENSSL=OFF -DLLAMA_LLGUIDANCE=OFF
    -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
    -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF -DGGML_OPENMP=OFF
    -DGGML_BACKEND_DL=OFF -DGGML_CPU_ALL_VARIANTS=OFF
)
STAMP="$BIN_DIR/weft-build-flags"
WANT_STAMP="$LCP_VERSION ${CMAKE_FLAGS[*]}"

if [ -x "$QUANTIZE" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT_STAMP" ]; then
    log "llama-quantize already built: $QUANTIZE"
    BUILD_S=0
else
    TB=$(date +%s)
    SDIST="$BUILD/llama_cpp_python-$LCP_VERSION.tar.gz"
    if [ ! -f "$SDIST" ]; then
        log "downloading llama-cpp-python==$LCP_VERSION sdist"
        "$TPY" -m pip download --disable-pip-version-check -q --no-deps --no-binary llama-cpp-python \
            "llama-cpp-python==$LCP_VERSION" -d "$BUILD"
    fi
    if [ ! -f "$SRC/tools/quantize/main.cpp" ]; then
        log "unpacking $(basename "$SDIST")"
        tar -xzf "$SDIST" -C "$BUILD"
    fi
    rm -rf "$BIN_DIR"
    mkdir -p "$BIN_DIR"
    log "configuring llama.cpp (log: $BIN_DIR/configure.log)"
    "$CMAKE" -S "$SRC" -B "$BIN_DIR" "${CMAKE_FLAGS[@]}" > "$BIN_DIR/configure.log" 2>&1 \
        || { tail -40 "$BIN_DIR/configure.log" >&2; exit 1; }
    log "building llama-quantize with -j$JOBS (log: $BIN_DIR/build.log)"
    "$CMAKE" --build "$BIN_DIR" --target llama-quantize -j "$JOBS" > "$BIN_DIR/build.log" 2>&1 \
        || { tail -40 "$BIN_DIR/build.log" >&2; exit 1; }
    [ -x "$QUANTIZE" ] || { echo "build finished but $QUANTIZE is missing" >&2; exit 1; }
    echo "$WANT_STAMP" > "$STAMP"
    BUILD_S=$(( $(date +%s) - TB ))
    log "built llama-quantize in ${BUILD_S}s"
fi

# --- source model --------------------------------------------------------------
log "fetching smollm2-135m"
MODEL="$("$PY" "$REPO/scripts/fetch_model.py" smollm2-135m)"
SRC_SHA="$(sha256sum "$MODEL" | cut -d' ' -f1)"

# --- quantise -------------------------------------------------------------------
TQ=$(date +%s)
THREADS="$JOBS"
for T in $TYPES; do
    OUTF="$QM/smollm2-135m-$T.gguf"
    EXTRA="$(extra_args "$T")"
    RECIPE="llama-cpp-python==$LCP_VERSION src=$SRC_SHA args=--allow-requantize $EXTRA $T"
    if [ -f "$OUTF" ] && [ -f "$OUTF.recipe" ] && [ "$(cat "$OUTF.recipe")" = "$RECIPE" ]; then
        log "$T: up to date ($(basename "$OUTF"))"
        continue
    fi
    log "$T: quantising (log: $OUTF.log)"
    t1=$(date +%s)
    # shellcheck disable=SC2086
    "$QUANTIZE" --allow-requantize $EXTRA "$MODEL" "$OUTF.tmp" "$T" "$THREADS" > "$OUTF.log" 2>&1 \
        || { tail -30 "$OUTF.log" >&2; rm -f "$OUTF.tmp"; exit 1; }
    mv -f "$OUTF.tmp" "$OUTF"
    echo "$RECIPE" > "$OUTF.recipe"
    fb="$(grep -o '[0-9]* of [0-9]* tensor(s) required fallback' "$OUTF.log" || true)"
    log "$T: done in $(( $(date +%s) - t1 ))s, $(stat -c %s "$OUTF") bytes${fb:+, $fb}"
done
QUANT_S=$(( $(date +%s) - TQ ))

# --- census / check against the committed references ---------------------------
log "checking tensor types and hashes against tests/fixtures/quant_models/references.json"
CHECK_RC=0
# shellcheck disable=SC2086
"$TPY" "$HERE/census.py" --dir "$QM" --check "$REPO/tests/fixtures/quant_models/references.json" $TYPES \
    || CHECK_RC=$?
if [ "$CHECK_RC" -ne 0 ]; then
    if [ "${WEFT_QUANT_STRICT:-0}" = 1 ]; then
        echo "quantised files differ from the committed references (WEFT_QUANT_STRICT=1)" >&2
        exit 1
    fi
    echo "WARNING: quantised files differ from the committed references (see above)" >&2
fi

log "done: build ${BUILD_S}s, quantise ${QUANT_S}s, total $(( $(date +%s) - T0 ))s; files in $QM"
