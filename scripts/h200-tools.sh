#!/bin/sh
# remote-run's sanitizer, profiler and debugger on a real GPU: `cargo-gpu remote-run --remote
# local` on the GPU machine itself (no ssh there), with the fault fixtures and the Hopper GEMM:
#   1. a planted out-of-bounds write (debug, -G): the run fails with the kit's kernel-fault
#      status 4, and the memcheck rerun in the same command names the marked .cu line;
#   2. the same in a release build (-lineinfo);
#   3. a planted shared-memory race under --sanitize=racecheck: the race and its line named;
#   4. --profile on the Hopper GEMM: the report back, and ncu's kernel duration within 10% of the
#      kit's own median;
#   5. --debug on the planted fault: cuda-gdb's backtrace with the line;
#   6. the PyPI compute-sanitizer shipped as blobs (forced, since this machine has its own):
#      assembled, run from another folder, naming the line; reused with nothing uploaded;
#   7. the Hopper GEMM built for plain sm_90, which `cargo gpu build` warned only traps: it does
#      trap, and the kit says so with its kernel-fault status.
# Needs the NVIDIA driver and /usr/local/cuda/bin (compute-sanitizer, ncu, cuda-gdb); no cargo.
#
#   sh h200-tools.sh DIR      DIR holds cargo-gpu, fault/, fault-release/, race/, hopper/,
#                             the fixtures' kernel sources and sanitizer/ (see scripts/h200-pack.sh)
#
# Prints a table last; exit status 1 if any check failed.
set -u

dir=$(cd "${1:?usage: h200-tools.sh DIR (see scripts/h200-pack.sh)}" && pwd)
gpu="$dir/cargo-gpu"
width=60
. "$(dirname "$0")/h200-common.sh"
config
run() { # NAME PACKAGE ARGS...: remote-run, its stdout and stderr in $work/NAME.{out,err}, its status in $code
    name=$1 pkg=$2
    shift 2
    start=$(date +%s)
    "$gpu" gpu remote-run --remote local --package "$dir/$pkg" "$@" >"$work/$name.out" 2>"$work/$name.err"
    code=$?
    secs=$(($(date +%s) - start))
    cat "$work/$name.out" "$work/$name.err"
}
fault_line=$(grep -n '// FAULT HERE' "$dir/scale_rows.cu" | cut -d: -f1)
race_line=$(grep -n '// RACE HERE' "$dir/block_sum.cu" | cut -d: -f1)
PATH="$PATH:/usr/local/cuda/bin" compute-sanitizer --version | tail -n 1
nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader || { echo "no GPU" >&2; exit 1; }

echo "== 1. a planted out-of-bounds write (debug build): fault, then memcheck in the same command"
run fault fault
id=$(last)
grep -q "^    Memcheck ERROR SUMMARY: .*; the first: Invalid __global__ write of size 4 bytes at .*scale_rows.cu:$fault_line in scale_rows" "$work/fault.err"
named=$?
[ "$code" = 4 ] && [ "$named" = 0 ] && grep -q '^    by thread (' "$work/fault.err" && [ -s "$runs/$id/autosanitize.txt" ]
verdict "fault -G: exit 4, memcheck names scale_rows.cu:$fault_line" $? "(exit $code, ${secs}s, one command)"

echo "== 2. the same, release build (-lineinfo)"
run fault-release fault-release
grep -q "^    Memcheck .* at .*scale_rows.cu:$fault_line in scale_rows" "$work/fault-release.err"
named=$?
[ "$code" = 4 ] && [ "$named" = 0 ]
verdict "fault -lineinfo: exit 4, memcheck names the line" $? "(exit $code, ${secs}s)"

echo "== 3. a planted shared-memory race under --sanitize=racecheck"
run race race --sanitize=racecheck
grep -q "^   Sanitizer .*Race reported between .*block_sum.cu:$race_line" "$work/race.err"
verdict "racecheck names the race at block_sum.cu:$race_line" $? "(exit $code, ${secs}s)"

echo "== 4. --profile on the Hopper GEMM against the kit's median"
# The kit's own median from a plain run: under ncu every launch is replayed, so the kit's timing
# of the profiled run measures ncu, not the kernel.
run plain hopper -- 4096x4096x4096 --samples 20
kit_ms=$(sed -n 's/^time .*: median \([0-9.]*\) ms.*/\1/p' "$work/plain.out" | head -n 1)
run profile hopper --profile -- 4096x4096x4096 --samples 20
id=$(last)
ncu_ms=$(python3 - "$work/profile.err" <<'PY'
import re, sys
best = None
for line in open(sys.argv[1]):
    m = re.match(r"^    (.+) \((\d+) launch(?:es)?\): ([0-9.]+) (us|ms)", line)
    if m:
        ms = float(m.group(3)) / (1000.0 if m.group(4) == "us" else 1.0)
        best = ms if best is None or ms > best else best
print(best if best is not None else "?")
PY
)
diff=$(python3 -c "k=float('$kit_ms'); n=float('$ncu_ms'); print('%+.1f%%' % (100*(n-k)/k))" 2>/dev/null || echo "?")
python3 -c "import sys; k=float('$kit_ms'); n=float('$ncu_ms'); sys.exit(0 if abs(n-k) <= 0.10*k else 1)" 2>/dev/null &&
    [ "$code" = 0 ] && [ -s "$runs/$id/profile.ncu-rep" ] && [ -s "$runs/$id/profile.csv" ] && [ -s "$runs/$id/profile.txt" ] &&
    grep -q 'clocks not locked (--clock-control none' "$work/profile.err"
verdict "profile: report back; ncu duration / kit median (ms)" $? "$ncu_ms / $kit_ms ($diff, ${secs}s)"

echo "== 5. --debug on the planted fault"
run debug fault --debug
id=$(last)
grep -q "^    Debugger cuda-gdb: CUDA Exception: .* at .*scale_rows.cu:$fault_line" "$work/debug.err"
named=$?
[ "$code" = 4 ] && [ "$named" = 0 ] && grep -q '^    #0 ' "$work/debug.err" && [ -s "$runs/$id/cuda-gdb.txt" ]
verdict "debug: cuda-gdb backtrace at scale_rows.cu:$fault_line" $? "(exit $code, ${secs}s)"

echo "== 6. the PyPI compute-sanitizer shipped as blobs (forced)"
export CARGO_GPU_SANITIZER="$dir/sanitizer/nvidia/cu13/bin/compute-sanitizer" CARGO_GPU_SHIP_SANITIZER=always
(cd / && "$CARGO_GPU_SANITIZER" --version | tail -n 1)
run ship fault
id=$(last)
up1=$(field "$id" blobs-uploaded)
grep -q "shipped from here" "$work/ship.err" && grep -q "^    Memcheck .* at .*scale_rows.cu:$fault_line in scale_rows" "$work/ship.err"
named=$?
[ "$code" = 4 ] && [ "$named" = 0 ] && [ -x "$work/remote/tools/"compute-sanitizer-*/bin/compute-sanitizer ]
verdict "shipped sanitizer assembled, names the line" $? "(exit $code, uploaded $up1 blobs, ${secs}s)"
run ship2 fault
id=$(last)
up2=$(field "$id" blobs-uploaded)
[ "$code" = 4 ] && [ "$up2" = 0 ] && grep -q "^    Memcheck .*scale_rows.cu:$fault_line" "$work/ship2.err"
verdict "shipped sanitizer reused: nothing uploaded" $? "(exit $code, uploaded $up2, ${secs}s)"
unset CARGO_GPU_SANITIZER CARGO_GPU_SHIP_SANITIZER

echo "== 7. the GEMM built for plain sm_90 (the build warned: only traps)"
run trap hopper-sm90 --no-autosanitize -- 1024x1024x1024
[ "$code" = 4 ]
verdict "sm_90 stub traps on the GPU: kernel-fault status 4" $? "(exit $code, $(grep -o 'CUDA_ERROR_[A-Z_]*' "$work/trap.err" | head -n 1))"

echo "== runs"
"$gpu" gpu runs
"$gpu" gpu logs "$(ls "$runs" | sort | head -n 1)" >/dev/null 2>"$work/logs.err"
grep -q "Memcheck" "$work/logs.err"
verdict "logs prints the first run's memcheck summary again" $? ""
echo
echo "== table"
cat "$rows"
# KEEP_WORK=1 keeps the runs (their reports and tool sessions) for a look afterwards.
if [ -n "${KEEP_WORK:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
exit $failed
