#!/usr/bin/env bash
# weft vs llama.cpp on the CPU: llama-bench and `weft bench` on the same files, with
# the same thread count, run alternately, then one table per model.
#
#   bash scripts/bench/bench_vs_llamacpp.sh [options] [MODEL ...]
#
# MODEL: a .gguf file, or a short name of scripts/fetch_model.py (fetched into
# $WEFT_HOME/models when missing).  Default: smollm2-135m gemma3-270m.
#
# Options:
#   --rounds R      rounds per model; each round runs both engines, the order
#                   swapped every round (default 3)
#   --threads T     threads of both engines (default 2)
#   -p LIST         prompt sizes (default 128,512)
#   -n LIST         generation lengths (default 128)
#   -r N            repetitions inside each run (default 5, llama-bench's default)
#   --activations A f32 (default, exact) or int8: what weft's quantised matmuls
#                   multiply with (llama.cpp's CPU path always uses int8 blocks)
#   --llama B       native (default): llama-bench built for this machine's CPU
#                   (GGML_NATIVE=ON: AVX-512, VNNI, AMX where present), in a
#                   build tree of its own; portable: the fixtures' AVX2 build
#   --no-jit        weft interprets the ops its cpu backend otherwise compiles (to
#                   measure what the JIT buys against the same llama.cpp runs)
#   --json-out FILE also write the summary as JSON (written whole or not at all)
#
# 1. llama-bench is built from the llama.cpp of the pinned llama-cpp-python sdist
#    (scripts/quant_models/llama_cpp.sh; cached): by default with GGML_NATIVE=ON
#    in $WEFT_HOME/quant-models/build/llama.cpp-native, since weft picks its
#    kernels for this CPU at run time too; with --llama portable in the build tree
#    make_models.sh uses, with only the llama-bench target added.
# 2. weft is built with `cargo build --release`.
# 3. For each model and round: `llama-bench -m FILE -t T -p P -n N -r REPS -o json`
#    and `weft bench FILE --threads T -p P -n N -r REPS --activations A --json`.
#    Weights read per token: `weft inspect FILE --budget --json` (weight_bytes).
# 4. summarize.py prints, per model, each test's tok/s for both engines (median
#    over rounds of each run's median), weft/llama.cpp, decode GB/s (weights read
#    per token x tg tok/s) and weft's peak RSS.
#
# The runs' outputs live in a temporary folder removed on exit; stdout gets only
# the tables, stderr the progress.  Any failure exits non-zero with a message.
# Environment: WEFT_HOME, JOBS, PYTHON (see llama_cpp.sh), CARGO (default cargo).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
log() { echo "== [$(date +%H:%M:%S)] $*" >&2; }
die() { echo "error: $*" >&2; exit 1; }
# shellcheck source=../quant_models/llama_cpp.sh
source "$REPO/scripts/quant_models/llama_cpp.sh"
CARGO="${CARGO:-cargo}"

ROUNDS=3
THREADS=2
PROMPTS=128,512
GENS=128
REPS=5
ACTIVATIONS=f32
LLAMA_FLAVOUR=native
NO_JIT=()
JSON_OUT=""
MODELS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS="${2:-}"; shift 2 || die "--rounds needs a value" ;;
        --threads) THREADS="${2:-}"; shift 2 || die "--threads needs a value" ;;
        -p) PROMPTS="${2:-}"; shift 2 || die "-p needs a value" ;;
        -n) GENS="${2:-}"; shift 2 || die "-n needs a value" ;;
        -r) REPS="${2:-}"; shift 2 || die "-r needs a value" ;;
        --activations) ACTIVATIONS="${2:-}"; shift 2 || die "--activations needs a value" ;;
        --llama) LLAMA_FLAVOUR="${2:-}"; shift 2 || die "--llama needs a value" ;;
        --no-jit) NO_JIT=(--no-jit); shift ;;
        --json-out) JSON_OUT="${2:-}"; shift 2 || die "--json-out needs a value" ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) MODELS+=("$1"); shift ;;
    esac
done
[ ${#MODELS[@]} -gt 0 ] || MODELS=(smollm2-135m gemma3-270m)
for v in "$ROUNDS" "$THREADS" "$REPS"; do
    [[ "$v" =~ ^[1-9][0-9]*$ ]] || die "--rounds, --threads and -r take a whole number >= 1 (got '$v')"
done
[[ "$ACTIVATIONS" =~ ^(f32|int8)$ ]] || die "--activations takes f32 or int8 (got '$ACTIVATIONS')"
[[ "$LLAMA_FLAVOUR" =~ ^(native|portable)$ ]] || die "--llama takes native or portable (got '$LLAMA_FLAVOUR')"
for v in "$PROMPTS" "$GENS"; do
    [[ "$v" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "-p and -n take sizes >= 1, comma-separated (got '$v')"
done
if [ -n "$JSON_OUT" ]; then
    [ -d "$(dirname "$JSON_OUT")" ] || die "--json-out: folder $(dirname "$JSON_OUT") does not exist"
fi
TESTS="$(tr ',' '\n' <<< "$PROMPTS" | sed 's/^/pp/'; tr ',' '\n' <<< "$GENS" | sed 's/^/tg/')"

# --- models (resolved first: a missing file fails before any build) -------------
FILES=()
for m in "${MODELS[@]}"; do
    if [ -f "$m" ]; then
        FILES+=("$m")
    elif [[ "$m" =~ ^[A-Za-z0-9_-]+$ ]]; then
        log "model $m: $PY scripts/fetch_model.py $m"
        f="$("$PY" "$REPO/scripts/fetch_model.py" "$m")" || die "could not fetch model $m"
        [ -f "$f" ] || die "fetch_model.py reported $f for $m, which is not a file"
        FILES+=("$f")
    else
        die "model $m: no such file (and not a short name of scripts/fetch_model.py)"
    fi
done

# --- builds ---------------------------------------------------------------------
llama_cpp_tools
if [ "$LLAMA_FLAVOUR" = native ]; then
    # The same flags but for the instruction sets: all of this CPU's.
    LLAMA_BIN_DIR="$BUILD/llama.cpp-native"
    flags=(-DGGML_NATIVE=ON)
    for f in "${LLAMA_CMAKE_FLAGS[@]}"; do
        [[ "$f" =~ ^-DGGML_(NATIVE|AVX|AVX2|FMA|F16C|BMI2|AVX512|AMX_INT8|AMX_TILE)= ]] || flags+=("$f")
    done
    LLAMA_CMAKE_FLAGS=("${flags[@]}")
    LLAMA_STAMP="$LLAMA_BIN_DIR/weft-build-flags"
    LLAMA_WANT_STAMP="$LCP_VERSION ${LLAMA_CMAKE_FLAGS[*]}"
fi
log "llama-bench: $LLAMA_FLAVOUR build"
llama_cpp_target llama-bench || die "building llama-bench failed"
LLAMA_BENCH="$LLAMA_BIN_DIR/bin/llama-bench"

log "building weft (cargo build --release)"
(cd "$REPO" && "$CARGO" build --release) || die "cargo build --release failed"
TARGET_DIR="$(cd "$REPO" && "$CARGO" metadata --format-version 1 --no-deps \
    | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')" \
    || die "cargo metadata failed"
WEFT="$TARGET_DIR/release/weft"
[ -x "$WEFT" ] || die "cargo built no $WEFT"

# --- runs -----------------------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/weft-bench.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# run NAME OUT LOG CMD...: stdout to OUT, stderr to LOG; on failure the log's tail.
run() {
    local name="$1" out="$2" errlog="$3" t0
    shift 3
    t0=$(date +%s)
    if ! "$@" > "$out" 2> "$errlog"; then
        tail -20 "$errlog" >&2
        die "$name failed: $*"
    fi
    log "  $name: $(( $(date +%s) - t0 ))s"
}

T0=$(date +%s)
i=0
for f in "${FILES[@]}"; do
    i=$((i + 1))
    d="$WORK/$i"
    mkdir -p "$d"
    basename "$f" > "$d/label"
    echo "$TESTS" > "$d/tests"
    run "weft inspect --budget" "$d/budget.json" "$d/budget.log" "$WEFT" inspect "$f" --budget --json
    for r in $(seq 1 "$ROUNDS"); do
        log "$(basename "$f"): round $r/$ROUNDS (-p $PROMPTS -n $GENS -r $REPS, $THREADS threads, weft activations $ACTIVATIONS${NO_JIT:+ ${NO_JIT[*]}})"
        llama=(run llama-bench "$d/llama-$r.json" "$d/llama-$r.log"
               "$LLAMA_BENCH" -m "$f" -t "$THREADS" -p "$PROMPTS" -n "$GENS" -r "$REPS" -o json)
        weft=(run "weft bench" "$d/weft-$r.json" "$d/weft-$r.log"
              "$WEFT" bench "$f" --threads "$THREADS" -p "$PROMPTS" -n "$GENS" -r "$REPS" \
              --activations "$ACTIVATIONS" "${NO_JIT[@]}" --json)
        if [ $((r % 2)) = 1 ]; then "${llama[@]}"; "${weft[@]}"; else "${weft[@]}"; "${llama[@]}"; fi
    done
done
log "all runs done in $(( $(date +%s) - T0 ))s"

"$PY" "$HERE/summarize.py" "$WORK" --threads "$THREADS" ${JSON_OUT:+--json-out "$JSON_OUT"} \
    || die "summarising the runs failed"
