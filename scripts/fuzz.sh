#!/usr/bin/env bash
# Runs one fuzz target for a while: scripts/fuzz.sh TARGET SECONDS [libFuzzer args...]
# (scripts/fuzz.sh all SECONDS runs each in turn). Targets: fuzz/fuzz_targets/*.rs.
# SECONDS 0 replays the committed corpus once, no mutation (what CI runs: every seed
# and every crash found so far, as regression inputs).
#
# Builds with plain cargo and libFuzzer's coverage flags (what cargo-fuzz passes, less
# the address sanitizer, which needs a nightly compiler): stable Rust suffices. Seeds
# are fuzz/corpus/TARGET (committed); what the run finds goes to fuzz/corpus-run/TARGET
# and crashes to fuzz/artifacts/TARGET (neither committed). Exits non-zero on a crash.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: scripts/fuzz.sh TARGET|all SECONDS [libFuzzer args...]}
seconds=${2:?usage: scripts/fuzz.sh TARGET|all SECONDS [libFuzzer args...]}
shift 2
if [ "$target" = all ]; then
  for t in fuzz/fuzz_targets/*.rs; do
    "$0" "$(basename "$t" .rs)" "$seconds" "$@"
  done
  exit 0
fi
[ -f "fuzz/fuzz_targets/$target.rs" ] || { echo "no fuzz target '$target'" >&2; exit 2; }
[ -f fuzz/seeds/tiny.gguf ] || python3 fuzz/seeds/make_seeds.py
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# An explicit --target keeps the flags off build scripts and proc macros.
host=$(rustc -vV | sed -n 's/^host: //p')
cargo build --release --manifest-path fuzz/Cargo.toml --target "$host" --bin "$target"
bin="${CARGO_TARGET_DIR:-fuzz/target}/$host/release/$target"
mkdir -p "fuzz/corpus-run/$target" "fuzz/artifacts/$target"
# A 2 GB allocation is a finding (sizes from inputs must be bounded), as is a 10 s input.
if [ "$seconds" = 0 ]; then
  exec "$bin" "fuzz/corpus/$target" -runs=0 -timeout=10 \
    -rss_limit_mb=2048 "$@"
fi
exec "$bin" "fuzz/corpus-run/$target" "fuzz/corpus/$target" \
  -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
  -artifact_prefix="fuzz/artifacts/$target/" -print_final_stats=1 "$@"
