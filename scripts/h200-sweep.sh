#!/bin/sh
# A sweep on the GPU machine itself: `cargo-gpu remote-run --remote local --sweep` over the
# hopper GEMM's sizes (M and N of 4096 and 8192, K 4096: four runs), one upload and one session,
# one run per GPU at a time. Each run's record, its GPU (CUDA_VISIBLE_DEVICES in env.txt) and the
# sweep's table, best first.
#
#   sh h200-sweep.sh DIR      DIR holds cargo-gpu and hopper/ (see scripts/h200-pack.sh)
#
# Prints a table last; exit status 1 if any check failed.
set -u

dir=$(cd "${1:?usage: h200-sweep.sh DIR (with cargo-gpu and hopper/)}" && pwd)
gpu="$dir/cargo-gpu"
width=52
. "$(dirname "$0")/h200-common.sh"

nvidia-smi --query-gpu=index,name,compute_cap,driver_version --format=csv,noheader || { echo "no GPU" >&2; exit 1; }
gpus=$(nvidia-smi --query-gpu=index --format=csv,noheader | wc -l)
config
start=$(date +%s.%N)
"$gpu" gpu remote-run --remote local --package "$dir/hopper" --sweep M=4096,8192 --sweep N=4096,8192 \
    -- '{M}x{N}x4096' --samples 30 >"$work/sweep.out" 2>"$work/sweep.err"
code=$?
end=$(date +%s.%N)
cat "$work/sweep.out" "$work/sweep.err"
echo "== each run's GPU"
n=0
for id in $(ls "$runs"); do
    [ -f "$runs/$id/record.toml" ] || continue
    grep -q '^\[sweep\]' "$runs/$id/record.toml" || continue
    n=$((n + 1))
    printf '%s %s %s\n' "$id" "$(grep '^CUDA_VISIBLE_DEVICES=' "$runs/$id/env.txt")" "$(grep -h '^check' "$runs/$id/stdout.log" | cut -c1-60)"
done
pass=$(grep -c '^check .*: PASS' "$work/sweep.out")
wall=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
[ "$code" = 0 ] && [ "$n" = 4 ] && [ "$pass" = 4 ]
verdict "2x2 sweep on $gpus GPU(s): 4 runs, 4 checks PASS" $? "(exit $code, $n records, wall ${wall}s)"
grep -q 'TFLOP/s' "$work/sweep.out"
verdict "the sweep's table, best first" $? ""
echo
echo "== table"
cat "$rows"
rm -rf "$work"
exit $failed
