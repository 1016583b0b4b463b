#!/bin/sh
# Builds what scripts/h200-check.sh runs, here (no GPU needed), into one folder and one tarball:
#   basic/     release package of a project generated from the `basic` template (sm_90a)
#   hopper/    release package of a project generated from the `hopper-wgmma` template (sm_90a)
#   example/   release package of kernels-example (sm_90a: vector_add, hgemm; tcgen05 is a stub there)
#   cargo-gpu  the cargo-gpu binary, h200-check.sh the check itself
#
# usage: scripts/h200-pack.sh [OUT_DIR]   (default target/h200-check; also writes OUT_DIR.tar.gz)
# Then, on the H200 machine: tar xzf h200-check.tar.gz && sh h200-check/h200-check.sh h200-check
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$repo/target/h200-check}
. "$repo/scripts/cuda-env.sh"
ensure_cuda "$repo"

cargo build --quiet --release --manifest-path "$repo/Cargo.toml"
gpu="$repo/target/release/cargo-gpu"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export CARGO_TARGET_DIR="$work/target"

rm -rf "$out"
mkdir -p "$out"
(cd "$work" && "$gpu" new h200-basic --template basic && "$gpu" new h200-hgemm --template hopper-wgmma)
(cd "$work/h200-basic" && "$gpu" build --release --target sm_90a)
(cd "$work/h200-hgemm" && "$gpu" build --release --target sm_90a)
(cd "$repo/kernels-example" && "$gpu" build --release --target sm_90a)
cp -R "$work/target/gpu/release/h200-basic" "$out/basic"
cp -R "$work/target/gpu/release/h200-hgemm" "$out/hopper"
cp -R "$work/target/gpu/release/kernels-example" "$out/example"
cp "$gpu" "$out/cargo-gpu"
cp "$repo/scripts/h200-check.sh" "$repo/scripts/h200-remote.sh" "$out/"
tar -C "$(dirname "$out")" -czf "$out.tar.gz" "$(basename "$out")"
echo "packed $out ($(du -sh "$out" | cut -f1)) and $out.tar.gz"
echo "on the H200: tar xzf $(basename "$out").tar.gz && sh $(basename "$out")/h200-check.sh $(basename "$out")"
