#!/usr/bin/env bash
# The cpu backend's NEON kernels: weft-cpu's kernel tests cross-built for aarch64 and
# run under qemu-user, so an x86 machine checks them against the oracle too.
# Needs Debian's rustc-web and its arm64 standard library (libstd-rust-web-dev:arm64),
# gcc-aarch64-linux-gnu and qemu-user (.ci/run installs them).
# Usage: scripts/test_aarch64.sh [test filter…]
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTC="${WEFT_AARCH64_RUSTC:-/usr/bin/rustc}"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
# The arm64 C library is the multiarch one (libc6:arm64, which the arm64 std pulls
# in): the cross toolchain's own copy is another build, and mixing the two hangs
# thread creation.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64
"$RUSTC" --print target-libdir --target aarch64-unknown-linux-gnu >/dev/null
cargo test -p weft-cpu --release --target aarch64-unknown-linux-gnu \
    --target-dir target/aarch64 --test simd_kernels -- "$@"
