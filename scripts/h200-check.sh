#!/bin/sh
# The acceptance check of the runner kit and templates on an H200 (compute capability 9.0). It
# needs the NVIDIA driver, ncu and python3 with PyTorch; no cargo. scripts/h200-pack.sh makes
# the folder it takes:
#
#   sh h200-check.sh DIR      DIR holds basic/, hopper/ (release packages), optionally example/
#
# It runs, each with fresh random inputs (the seed is printed):
#   1. vector_add (basic template) at sizes that are and are not multiples of its block, up to
#      1 GiB per vector, checked against the CPU;
#   2. the TMA + wgmma GEMM (hopper-wgmma template) at sizes that are and are not multiples of its
#      128 x 256 tile, and 8192 x 8192 x 8192, checked against a CPU f64 reference; then the same
#      with --bf16-c (C in bf16);
#   3. kernels-example's runner on the same two kernels, if DIR/example exists;
#   4. cuBLAS through PyTorch on the same 8192^3 bf16 GEMM (A @ B^T), timed the same way (CUDA
#      events, L2 flushed before each sample, median);
#   5. ncu's gpu__time_duration of vector_add over 1 GiB (its launches of that size), against the
#      kit's median;
# and prints a table last. Results (JSON, logs) go to DIR/results/. Exit status 1 if any check
# failed.
set -u

dir=${1:?usage: h200-check.sh DIR (with basic/ and hopper/ packages; see scripts/h200-pack.sh)}
dir=$(cd "$dir" && pwd)
res="$dir/results"
rm -rf "$res"
mkdir -p "$res"
rows="$res/table.txt"
: >"$rows"
failed=0
row() { printf '%-46s %s\n' "$1" "$2" >>"$rows"; }
runner_of() { ls "$1"/bin/* | head -n 1; }

nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader || { echo "no GPU" >&2; exit 1; }
for tool in ncu python3; do command -v "$tool" >/dev/null || echo "warning: $tool not found: its part is skipped" >&2; done

basic=$(runner_of "$dir/basic")
hopper=$(runner_of "$dir/hopper")
gib=268435456 # floats in 1 GiB

echo "== 1. vector_add (basic template)"
CARGO_GPU_OUT="$res/basic" "$basic" 1 1000 1000003 16Mi $gib 2>&1 | tee "$res/basic.log"
if [ "$(grep -c '^check .*: PASS' "$res/basic.log")" = 5 ]; then row "vector_add check, 5 sizes (1 .. 1 GiB)" PASS; else row "vector_add check, 5 sizes (1 .. 1 GiB)" FAIL; failed=1; fi

echo "== 2. hgemm (hopper-wgmma template)"
shapes="128x256x64 1x1x8 1000x1000x520 129x257x72 4097x4095x4104 4096x4096x4096 8192x8192x8192"
# shellcheck disable=SC2086
CARGO_GPU_OUT="$res/hopper" "$hopper" $shapes 2>&1 | tee "$res/hopper.log"
n=$(grep -c '^check .*: PASS' "$res/hopper.log")
if [ "$n" = 7 ]; then row "hgemm check, 7 sizes (4 not tile multiples)" PASS; else row "hgemm check, 7 sizes" "FAIL ($n of 7 passed)"; failed=1; fi

echo "== 2b. hgemm --bf16-c (C in bf16), the same sizes"
# shellcheck disable=SC2086
timeout 150 env CARGO_GPU_OUT="$res/hopper" "$hopper" --bf16-c $shapes >"$res/hopper-bf16c.log" 2>&1
code=$?
cat "$res/hopper-bf16c.log"
n=$(grep -c '^check .*: PASS' "$res/hopper-bf16c.log")
if [ "$n" = 7 ]; then
    row "hgemm --bf16-c check, 7 sizes" PASS
else
    row "hgemm --bf16-c check, 7 sizes" "FAIL ($n of 7 passed, exit $code)"
    failed=1
fi

echo "== 2c. hgemm --no-pair (one block per tile) and --tile-n 240 (a width that is not whole TMA-store slices), checks only"
# shellcheck disable=SC2086
timeout 150 env CARGO_GPU_OUT="$res/hopper-more" "$hopper" --no-pair --no-time $shapes >"$res/hopper-more.log" 2>&1
odd="1000x1000x520 129x257x72 4097x4095x4104"
for opts in "--tile-n 240" "--tile-n 240 --bf16-c" "--tile-n 240 --no-pair" "--tile-n 240 --no-pair --bf16-c"; do
    # shellcheck disable=SC2086
    timeout 100 env CARGO_GPU_OUT="$res/hopper-more" "$hopper" --no-time $opts $odd >>"$res/hopper-more.log" 2>&1
done
grep -E '^(check|error)' "$res/hopper-more.log"
n=$(grep -c '^check .*: PASS' "$res/hopper-more.log")
if [ "$n" = 19 ]; then row "hgemm --no-pair (7 sizes) and --tile-n 240 (3 x 4)" PASS; else row "hgemm --no-pair and --tile-n 240" "FAIL ($n of 19 passed)"; failed=1; fi

if [ -d "$dir/example" ]; then
    echo "== 3. kernels-example (the same kit and runners, one binary)"
    ex=$(runner_of "$dir/example")
    CARGO_GPU_OUT="$res/example" "$ex" 1000003 --no-time 2>&1 | tee "$res/example.log"
    CARGO_GPU_OUT="$res/example" "$ex" hgemm 1000x1000x520 2048x2048x2048 --no-time 2>&1 | tee -a "$res/example.log"
    "$ex" tcgen05-gemm 256x256x64 >>"$res/example.log" 2>&1
    code=$?
    n=$(grep -c '^check .*: PASS' "$res/example.log")
    if [ "$n" = 3 ] && [ "$code" = 3 ]; then row "kernels-example: 3 checks, tcgen05 refused" PASS; else row "kernels-example" "FAIL ($n of 3 passed, tcgen05 exit $code)"; failed=1; fi
fi

json() { # FILE EXPRESSION: prints a field of a result file
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1" 2>/dev/null || echo "?"
}
ours=$(json "$res/hopper/hgemm-8192x8192x8192.json" "'%.1f' % d['timing']['tflops']")
ours_ms=$(json "$res/hopper/hgemm-8192x8192x8192.json" "'%.3f' % d['timing']['median_ms']")

echo "== 4. cuBLAS (PyTorch) bf16 8192^3"
cublas=$(python3 - <<'EOF' 2>"$res/cublas.err"
import torch
m = n = k = 8192
torch.manual_seed(0)
a = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
b = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
l2 = torch.cuda.get_device_properties(0).L2_cache_size
flush = torch.empty(2 * l2, dtype=torch.uint8, device="cuda")
for _ in range(5):
    torch.matmul(a, b.t())
torch.cuda.synchronize()
times = []
while len(times) < 20 or (sum(times) < 500 and len(times) < 500):
    flush.zero_()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    torch.matmul(a, b.t())
    e.record()
    torch.cuda.synchronize()
    times.append(s.elapsed_time(e))
times.sort()
med = times[len(times) // 2]
print("%.1f %.3f" % (2 * m * n * k / (med * 1e-3) / 1e12, med))
EOF
)
echo "cuBLAS: ${cublas:-unavailable} (TFLOP/s, median ms)"
row "hgemm 8192^3 TFLOP/s (median ms)" "$ours ($ours_ms ms)"
b16=$(json "$res/hopper/hgemm-bf16c-8192x8192x8192.json" "'%.1f (%.3f ms)' % (d['timing']['tflops'], d['timing']['median_ms'])")
row "hgemm --bf16-c 8192^3 TFLOP/s (median ms)" "$b16"
row "cuBLAS via torch.matmul bf16 8192^3 TFLOP/s" "$(echo "${cublas:-? ?}" | awk '{print $1 " (" $2 " ms)"}')"
echo "$cublas" | awk -v o="$ours" 'NF==2 && o+0>0 {printf "%.0f%%\n", 100*o/$1}' >"$res/ratio.txt"
row "hgemm / cuBLAS" "$(cat "$res/ratio.txt") (ours writes fp32 C, cuBLAS bf16 C)"

echo "== 5. ncu vs the kit: vector_add over 1 GiB"
kit_ms=$(json "$res/basic/vector_add-$gib.json" "'%.4f' % d['timing']['median_ms']")
if command -v ncu >/dev/null; then
    # The runner first checks small edge sizes (launches of the same kernel), then the 1 GiB
    # vectors: every launch is profiled and only those of the 1 GiB size are kept below.
    ncu --clock-control none --metrics gpu__time_duration.sum --print-units base --csv -k vector_add \
        --launch-count 300 "$basic" $gib --samples 20 >"$res/ncu.csv" 2>"$res/ncu.err"
    ncu_ms=$(python3 - "$res/ncu.csv" <<'EOF'
import csv, sys
# The runner's own output is mixed in: keep the rows shaped like ncu's header.
rows = list(csv.reader(open(sys.argv[1])))
heads = [i for i, r in enumerate(rows) if "Metric Name" in r and "Metric Value" in r]
if not heads:
    print("?")
    sys.exit()
head = rows[heads[0]]
name, unit, value = head.index("Metric Name"), head.index("Metric Unit"), head.index("Metric Value")
scale = {"nsecond": 1e-6, "usecond": 1e-3, "msecond": 1.0, "second": 1e3}
vals = sorted(
    float(r[value].replace(",", "")) * scale.get(r[unit], 1e-6)
    for r in rows[heads[0] + 1:]
    if len(r) == len(head) and r[name].startswith("gpu__time_duration")
)
# The 1 GiB launches take hundreds of microseconds, the edge sizes a few.
vals = [v for v in vals if vals and v >= 0.5 * vals[-1]]
print("%.4f" % vals[len(vals) // 2] if vals else "?")
EOF
)
else
    ncu_ms="?"
fi
diff=$(python3 -c "k=float('$kit_ms'); n=float('$ncu_ms'); print('%+.1f%%' % (100*(k-n)/n))" 2>/dev/null || echo "?")
row "vector_add 1 GiB median: kit / ncu (ms)" "$kit_ms / $ncu_ms ($diff)"
if python3 -c "import sys; k=float('$kit_ms'); n=float('$ncu_ms'); sys.exit(0 if abs(k-n) <= 0.05*n else 1)" 2>/dev/null; then
    row "kit within 5% of ncu" PASS
else
    row "kit within 5% of ncu" FAIL
    failed=1
fi

echo
echo "== summary ($(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1); results in $res)"
cat "$rows"
exit $failed
