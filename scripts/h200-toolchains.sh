#!/bin/sh
# The packages of kernels-example built with each CUDA toolchain (scripts/h200-pack.sh makes
# toolchain-12.9/ and toolchain-13.0/, each with a runner whose glibc floor is 2.28), run through
# `cargo-gpu remote-run --remote local` on the GPU machine: each manifest's compiler, minimum
# driver, runner triple and glibc, then vector_add and the hopper GEMM, checked on the CPU.
#
#   sh h200-toolchains.sh DIR      DIR holds cargo-gpu and toolchain-*/ (see scripts/h200-pack.sh)
#
# Prints a table last; exit status 1 if any check failed.
set -u

dir=$(cd "${1:?usage: h200-toolchains.sh DIR (with cargo-gpu and toolchain-*/)}" && pwd)
gpu="$dir/cargo-gpu"
width=40
. "$(dirname "$0")/h200-common.sh"

nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader || { echo "no GPU" >&2; exit 1; }
config
for cuda in 12.9 13.0; do
    pkg="$dir/toolchain-$cuda"
    echo "== CUDA $cuda: $(grep -E '^(nvcc-version|min-driver-cuda|runner-triple|runner-glibc|runner-glibc-floor) ' "$pkg/manifest.toml" | tr '\n' ' ')"
    grep -E '^\[\[runner\]\]' -A 4 "$pkg/manifest.toml" || true
    "$gpu" gpu remote-run --remote local --package "$pkg" -- 1000003 16Mi >"$work/$cuda.out" 2>"$work/$cuda.err"
    code=$?
    cat "$work/$cuda.out" "$work/$cuda.err"
    pass=$(grep -c '^check .*: PASS' "$work/$cuda.out")
    [ "$code" = 0 ] && [ "$pass" = 2 ]
    verdict "CUDA $cuda: vector_add" $? "(exit $code, $pass of 2 checks)"
    "$gpu" gpu remote-run --remote local --package "$pkg" -- hgemm 4096x4096x4096 >"$work/$cuda.g.out" 2>"$work/$cuda.g.err"
    code=$?
    cat "$work/$cuda.g.out" "$work/$cuda.g.err"
    line=$(grep -m1 'TFLOP/s' "$work/$cuda.g.out" | tr -s ' ')
    grep -q '^check .*: PASS' "$work/$cuda.g.out" && [ "$code" = 0 ]
    verdict "CUDA $cuda: hgemm 4096^3" $? "(exit $code; $line)"
done
echo
echo "== table"
cat "$rows"
rm -rf "$work"
exit $failed
