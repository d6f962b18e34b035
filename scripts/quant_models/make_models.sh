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
#    AVX-512/AMX off; only the llama-quantize target is built.  The build
#    (llama_cpp.sh) is shared with scripts/bench/, which adds llama-bench.
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
# WEFT_HOME, QM, BUILD, TOOLS, JOBS, PY, LCP_VERSION; llama_cpp_tools, llama_cpp_target
# shellcheck source=llama_cpp.sh
source "$HERE/llama_cpp.sh"
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

# --- tools venv: cmake (llama_cpp.sh) and gguf (census) ------------------------
llama_cpp_tools
if ! "$TPY" -c "import importlib.metadata as m, sys; sys.exit(m.version('gguf') != '$GGUF_VERSION')" 2>/dev/null; then
    log "installing gguf==$GGUF_VERSION into the tools venv"
    "$TPY" -m pip install --disable-pip-version-check -q "gguf==$GGUF_VERSION"
fi

# --- llama-quantize ----------------------------------------------------------
QUANTIZE="$LLAMA_BIN_DIR/bin/llama-quantize"
TB=$(date +%s)
llama_cpp_target llama-quantize || exit 1
BUILD_S=$(( $(date +%s) - TB ))

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
