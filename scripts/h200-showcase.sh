#!/bin/sh
# The showcase kernels against their baselines, measured by the runner kit itself in the same
# process, on a Hopper GPU (an H200): kernels-example's runner with `--vs-copy` (vector_add
# against the driver's device-to-device copy of the same bytes) and `--vs-cublas` (hgemm against
# cuBLASLt with the same C type, on the same inputs). Every size is checked against the CPU with
# fresh seeds each round. It needs the NVIDIA driver, libcublasLt and python3; no cargo.
#
#   sh h200-showcase.sh DIR [ROUNDS]   DIR holds example/ (kernels-example's release package for
#                                      sm_90a, as scripts/h200-pack.sh makes it); ROUNDS: 3
#
# Rounds run one after another (each runs every row once); the table printed last gives each
# figure's median over the rounds, and the goal each ratio has. Results (JSON, logs) go to
# DIR/showcase/. Exit status 1 if a check failed or a baseline was missing.
set -u

dir=${1:?usage: h200-showcase.sh DIR [ROUNDS] (DIR/example: the release package of kernels-example)}
rounds=${2:-3}
dir=$(cd "$dir" && pwd)
res="$dir/showcase"
rm -rf "$res"
mkdir -p "$res"
bin=$(ls "$dir"/example/bin/* | head -n 1)
gib=268435456 # floats in 1 GiB
gemms="8192x8192x8192 12288x12288x12288 8191x8193x8200 3000x5000x1000 33x4097x4096"
failed=0

nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || { echo "no GPU" >&2; exit 1; }
r=1
while [ "$r" -le "$rounds" ]; do
    out="$res/round-$r"
    mkdir -p "$out"
    echo "== round $r of $rounds"
    # shellcheck disable=SC2086
    for run in "vector-add $gib --vs-copy" "hgemm $gemms --vs-cublas" "hgemm $gemms --vs-cublas --bf16-c"; do
        log="$out/$(echo "$run" | tr ' ' '_' | cut -c1-40).log"
        timeout 300 env CARGO_GPU_OUT="$out" "$bin" $run >"$log" 2>&1
        code=$?
        grep -E '^(check|time|  vs|  check)' "$log"
        if [ "$code" != 0 ]; then
            echo "FAILED (exit $code): $bin $run" >&2
            tail -n 5 "$log" >&2
            failed=1
        fi
    done
    r=$((r + 1))
done

python3 - "$res" "$rounds" "$gemms" "$gib" <<'EOF' || failed=1
import json, os, statistics, sys

res, rounds, gemms, gib = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4]
rows = [("vector_add, 2^28 floats per vector", "vector_add-%s" % gib, "GB/s", "copy", 0.95)]
for g in gemms:
    goal = 1.00 if g in ("8192x8192x8192", "12288x12288x12288") else 0.90
    rows.append(("hgemm %s, fp32 C" % g, "hgemm-%s" % g, "TFLOP/s", "cuBLASLt fp32 C", goal))
    rows.append(("hgemm %s, bf16 C" % g, "hgemm-bf16c-%s" % g, "TFLOP/s", "cuBLASLt bf16 C", goal))

def rate(t):
    return t.get("tflops", t.get("gbps"))

missing = False
print()
print("| kernel | ours | baseline | ours/baseline | goal | passes check |")
print("| --- | --- | --- | --- | --- | --- |")
for label, stem, unit, base, goal in rows:
    ours, theirs, ratio, checks = [], [], [], []
    for r in range(1, rounds + 1):
        path = os.path.join(res, "round-%d" % r, stem + ".json")
        try:
            d = json.load(open(path))
        except (OSError, ValueError):
            continue
        checks.append(d.get("check", {}).get("passed", False))
        if "timing" in d:
            ours.append((d["timing"]["median_ms"], rate(d["timing"])))
        b = d.get("baseline")
        if b:
            theirs.append((b["median_ms"], rate(b)))
            ratio.append(b["ours_over_baseline"])
    if not ours or not theirs:
        missing = True
        print("| %s | %s | missing | ? | %.2f | %d of %d |" % (label, "?" if not ours else "", goal, sum(checks), len(checks)))
        continue
    med = lambda xs, i: statistics.median(x[i] for x in xs)
    q = statistics.median(ratio)
    print("| %s | %.4f ms, %.1f %s | %s %.4f ms, %.1f %s | **%.2f** %s | %.2f | %d of %d |" % (
        label, med(ours, 0), med(ours, 1), unit, base, med(theirs, 0), med(theirs, 1), unit,
        q, "met" if q >= goal else "not met", goal, sum(checks), rounds))
print()
print("medians over %d rounds; ratios are the medians of each round's ratio" % rounds)
sys.exit(1 if missing else 0)
EOF
exit $failed
