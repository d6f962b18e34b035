# shellcheck shell=bash
# The pinned llama.cpp build, shared by make_models.sh (llama-quantize) and
# scripts/bench/bench_vs_llamacpp.sh (llama-bench).  Source it; it defines:
#
#   llama_cpp_tools        the tools venv ($QM/tools-venv) and a cmake >= 3.14
#                          (the system's, else the pinned wheel in that venv):
#                          sets TPY and CMAKE
#   llama_cpp_target NAME  builds one llama.cpp target (llama-quantize,
#                          llama-bench, ...) into $LLAMA_BIN_DIR/bin/NAME
#
# One build tree, $WEFT_HOME/quant-models/build/llama.cpp-build, configured once
# from the llama.cpp vendored in the llama-cpp-python==0.3.36 sdist with portable
# flags (GGML_NATIVE=OFF, AVX2/FMA/F16C on, AVX-512/AMX off, no OpenMP); each
# caller adds only the targets it needs.  The tree is reconfigured from scratch
# only when the flags below change (the stamp file weft-build-flags records them).
#
# Reads: WEFT_HOME (default ~/.cache/weft), JOBS (default nproc), PYTHON
# (default python3).  Needs: python3 (pip, venv), a C/C++ compiler, make.

WEFT_HOME="${WEFT_HOME:-$HOME/.cache/weft}"
QM="$WEFT_HOME/quant-models"
BUILD="$QM/build"
TOOLS="$QM/tools-venv"
JOBS="${JOBS:-$(nproc 2>/dev/null || echo 2)}"
PY="${PYTHON:-python3}"
LCP_VERSION=0.3.36
CMAKE_VERSION=4.4.5

LLAMA_SRC="$BUILD/llama_cpp_python-$LCP_VERSION/vendor/llama.cpp"
LLAMA_BIN_DIR="$BUILD/llama.cpp-build"
LLAMA_CMAKE_FLAGS=(
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
LLAMA_STAMP="$LLAMA_BIN_DIR/weft-build-flags"
LLAMA_WANT_STAMP="$LCP_VERSION ${LLAMA_CMAKE_FLAGS[*]}"

if ! declare -F log >/dev/null; then
    log() { echo "== [$(date +%H:%M:%S)] $*" >&2; }
fi

llama_cpp_tools() {
    mkdir -p "$QM" "$BUILD"
    if [ ! -x "$TOOLS/bin/python" ]; then
        log "creating tools venv $TOOLS"
        "$PY" -m venv "$TOOLS"
    fi
    TPY="$TOOLS/bin/python"
    CMAKE=""
    if command -v cmake >/dev/null 2>&1; then
        local v
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
}

# Builds target $1 (configuring the tree first when its flags changed); returns
# non-zero with the tail of the log on stderr when a step fails.
llama_cpp_target() {
    local target="$1" bin="$LLAMA_BIN_DIR/bin/$1" configured=0 tb
    if [ -f "$LLAMA_STAMP" ] && [ "$(cat "$LLAMA_STAMP")" = "$LLAMA_WANT_STAMP" ]; then
        configured=1
    fi
    if [ "$configured" = 1 ] && [ -x "$bin" ]; then
        log "$target already built: $bin"
        return 0
    fi
    tb=$(date +%s)
    if [ "$configured" = 0 ]; then
        local sdist="$BUILD/llama_cpp_python-$LCP_VERSION.tar.gz"
        if [ ! -f "$sdist" ]; then
            log "downloading llama-cpp-python==$LCP_VERSION sdist"
            "$TPY" -m pip download --disable-pip-version-check -q --no-deps --no-binary llama-cpp-python \
                "llama-cpp-python==$LCP_VERSION" -d "$BUILD" || return 1
        fi
        if [ ! -f "$LLAMA_SRC/CMakeLists.txt" ]; then
            log "unpacking $(basename "$sdist")"
            tar -xzf "$sdist" -C "$BUILD" || return 1
        fi
        rm -rf "$LLAMA_BIN_DIR" && mkdir -p "$LLAMA_BIN_DIR" || return 1
        log "configuring llama.cpp (log: $LLAMA_BIN_DIR/configure.log)"
        "$CMAKE" -S "$LLAMA_SRC" -B "$LLAMA_BIN_DIR" "${LLAMA_CMAKE_FLAGS[@]}" > "$LLAMA_BIN_DIR/configure.log" 2>&1 \
            || { tail -40 "$LLAMA_BIN_DIR/configure.log" >&2; return 1; }
        echo "$LLAMA_WANT_STAMP" > "$LLAMA_STAMP" || return 1
    fi
    log "building $target with -j$JOBS (log: $LLAMA_BIN_DIR/build-$target.log)"
    "$CMAKE" --build "$LLAMA_BIN_DIR" --target "$target" -j "$JOBS" > "$LLAMA_BIN_DIR/build-$target.log" 2>&1 \
        || { tail -40 "$LLAMA_BIN_DIR/build-$target.log" >&2; return 1; }
    [ -x "$bin" ] || { echo "build finished but $bin is missing" >&2; return 1; }
    log "built $target in $(( $(date +%s) - tb ))s"
}
