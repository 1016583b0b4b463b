#!/bin/sh
# Builds what scripts/h200-check.sh runs, here (no GPU needed), into one folder and one tarball:
#   basic/     release package of a project generated from the `basic` template (sm_90a)
#   hopper/    release package of a project generated from the `hopper-wgmma` template (sm_90a)
#   example/   release package of kernels-example (sm_90a: vector_add, hgemm; tcgen05 is a stub there)
#   fault/, fault-release/, race/   debug and release packages of tests/fixtures/fault-oob and the
#              debug package of tests/fixtures/race-shared, with their kernel sources beside them
#   sanitizer/ compute-sanitizer from PyPI (nvidia-cuda-sanitizer-api 13.5.25, its wheel unpacked)
#   toolchain-12.9/, toolchain-13.0/   release packages of kernels-example (sm_90a) built with the
#              CUDA 12.9 (NVRTC) and 13.0 (nvcc) toolchains of `cargo gpu toolchain install`, each
#              with a runner whose glibc floor is 2.28 (h200-toolchains.sh runs them)
#   tests/     kernels-example's GPU test binary (`cargo test --release --no-run`), and
#   example-broken/ its package with a vector_add kernel that subtracts (h200-exec.sh runs both)
#   cargo-gpu  the cargo-gpu binary; h200-check.sh, h200-remote.sh and h200-tools.sh the checks
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
(cd "$repo/tests/fixtures/fault-oob" && "$gpu" build --target sm_90a && "$gpu" build --release --target sm_90a)
(cd "$repo/tests/fixtures/race-shared" && "$gpu" build --target sm_90a)
cp -R "$work/target/gpu/release/h200-basic" "$out/basic"
cp -R "$work/target/gpu/release/h200-hgemm" "$out/hopper"
# The same GEMM for plain sm_90, where wgmma does not exist: the build warns that it only traps.
(cd "$work/h200-hgemm" && "$gpu" build --release --target sm_90 2>"$work/sm90.err"; cat "$work/sm90.err")
grep -q "only trap" "$work/sm90.err"
cp -R "$work/target/gpu/release/h200-hgemm" "$out/hopper-sm90"
cp -R "$work/target/gpu/release/kernels-example" "$out/example"
cp "$gpu" "$out/cargo-gpu"
cp -R "$work/target/gpu/debug/fault-oob" "$out/fault"
cp -R "$work/target/gpu/release/fault-oob" "$out/fault-release"
cp -R "$work/target/gpu/debug/race-shared" "$out/race"
# kernels-example with each CUDA toolchain and a runner for glibc 2.28 (a copy: its kernels and
# runner come from templates/ by relative path).
export CARGO_GPU_HOME="$repo/target/test-toolchains"
"$gpu" toolchain install 12.9 13.0
cp -R "$repo/kernels-example" "$repo/templates" "$work/"
sed -i 's/^\[package.metadata.gpu\]$/[package.metadata.gpu]\nrunner-glibc = "2.28"/' "$work/kernels-example/Cargo.toml"
for cuda in 12.9 13.0; do
    (cd "$work/kernels-example" && CARGO_GPU_CUDA=$cuda "$gpu" build --release --target sm_90a)
    cp -R "$work/target/gpu/release/kernels-example" "$out/toolchain-$cuda"
done
# kernels-example's GPU tests, and its package with a broken vector_add kernel.
(cd "$work/kernels-example" && cargo test --release --no-run --message-format=json 2>/dev/null) \
    | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["executable"])' >"$work/testbins"
mkdir -p "$out/tests"
xargs -I{} cp {} "$out/tests/" <"$work/testbins"
# Every path of the kernel subtracts in one place: the scalar loop, the float4 steps.
sed -i 's/a\[i\] + b\[i\]/a[i] - b[i]/; s/x\[u\]\.x + y\[u\]\.x/x[u].x - y[u].x/' "$work/templates/basic/kernels/vector_add.cu"
grep -q 'a\[i\] - b\[i\]' "$work/templates/basic/kernels/vector_add.cu"
grep -q 'x\[u\]\.x - y\[u\]\.x' "$work/templates/basic/kernels/vector_add.cu"
(cd "$work/kernels-example" && "$gpu" build --release --target sm_90a)
cp -R "$work/target/gpu/release/kernels-example" "$out/example-broken"
cp "$repo/tests/fixtures/fault-oob/kernels/scale_rows.cu" "$repo/tests/fixtures/race-shared/kernels/block_sum.cu" "$out/"
# The sanitizer wheel, unpacked as pip lays it out (h200-tools.sh ships it with CARGO_GPU_SANITIZER).
python3 -m pip download --quiet --no-deps --dest "$work/wheel" "$CUDA_SANITIZER_PACKAGE"
python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$work"/wheel/*.whl "$out/sanitizer"
chmod 755 "$out"/sanitizer/nvidia/cu13/bin/* "$out"/sanitizer/nvidia/cu13/compute-sanitizer/*
cp "$repo/scripts/h200-check.sh" "$repo/scripts/h200-common.sh" "$repo/scripts/h200-remote.sh" "$repo/scripts/h200-tools.sh" \
    "$repo/scripts/h200-toolchains.sh" "$repo/scripts/h200-exec.sh" "$repo/scripts/h200-showcase.sh" "$out/"
tar -C "$(dirname "$out")" -czf "$out.tar.gz" "$(basename "$out")"
echo "packed $out ($(du -sh "$out" | cut -f1)) and $out.tar.gz"
echo "on the H200: tar xzf $(basename "$out").tar.gz && sh $(basename "$out")/h200-check.sh $(basename "$out")"
echo "             sh $(basename "$out")/h200-tools.sh $(basename "$out")   (sanitizer, profiler, debugger)"
echo "             sh $(basename "$out")/h200-toolchains.sh $(basename "$out")   (CUDA 12.9 and 13.0, glibc 2.28 runners)"
echo "             sh $(basename "$out")/h200-exec.sh $(basename "$out")   (GPU tests through cargo-gpu exec)"
echo "             sh $(basename "$out")/h200-showcase.sh $(basename "$out") 3   (the kernels against cuBLASLt and the copy)"
