#!/bin/sh
# remote-run on a real GPU, as a user meets it: `cargo-gpu remote-run --remote local` with the
# kernels-example package on the GPU machine itself (no ssh there), checking what the hostile-host
# hardening changed end to end: a run that passes with its logs and results back, the remote
# environment redacted, a blob replaced in the store refused and uploaded again, the fetch cap,
# Ctrl-C (SIGTERM here) stopping the runner on the GPU, and two runs at once. No cargo needed.
#
#   sh h200-remote.sh DIR      DIR holds cargo-gpu and example/ (see scripts/h200-pack.sh)
#
# Prints a table last; exit status 1 if any check failed.
set -u

dir=$(cd "${1:?usage: h200-remote.sh DIR (with cargo-gpu and example/)}" && pwd)
gpu="$dir/cargo-gpu"
pkg="$dir/example"
width=52
. "$(dirname "$0")/h200-common.sh"

nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader || { echo "no GPU" >&2; exit 1; }
config

echo "== 1. a run, with a token in the environment"
secret=hf_h200_secret_0123456789
HF_TOKEN=$secret "$gpu" gpu remote-run --remote local --package "$pkg" -- 1000003 16Mi >"$work/1.out" 2>"$work/1.err"
code=$?
cat "$work/1.out" "$work/1.err"
id=$(last)
pass=$(grep -c '^check .*: PASS' "$work/1.out")
leaks=$(grep -rl "$secret" "$runs" "$work/1.out" "$work/1.err" | wc -l)
redacted=$(grep -c '^HF_TOKEN=<redacted>$' "$runs/$id/env.txt")
[ "$code" = 0 ] && [ "$pass" = 2 ] && [ -f "$runs/$id/out/vector_add-1000003.json" ] && [ -s "$runs/$id/nvidia-smi.txt" ]
verdict "run: exit $code, $pass of 2 checks, results back" $? "(state $(field "$id" state))"
[ "$leaks" = 0 ] && [ "$redacted" = 1 ]
verdict "token in no file and no output; env.txt redacted" $? "($leaks files with it)"

echo "== 2. a blob replaced in the store"
cubin=$(grep -A 3 'kernels/vector_add.sm_90a.cubin' "$pkg/manifest.toml" | sed -n 's/^sha256 = "\(.*\)"/\1/p')
printf 'planted' >"$work/remote/blobs/$cubin"
"$gpu" gpu remote-run --remote local --package "$pkg" -- 1000003 >"$work/2.out" 2>"$work/2.err"
code=$?
cat "$work/2.err"
id=$(last)
named=$(grep -c "stored blob $cubin (kernels/vector_add.sm_90a.cubin) on local did not match its sha256" "$work/2.err")
[ "$code" = 0 ] && [ "$named" = 1 ] && [ "$(field "$id" blobs-uploaded)" = 1 ] && grep -q '^check .*: PASS' "$work/2.out"
verdict "planted blob named, uploaded again, run passes" $? "(exit $code, uploaded $(field "$id" blobs-uploaded))"

echo "== 3. the fetch cap"
config 'max-fetch = "4KiB"'
"$gpu" gpu remote-run --remote local --package "$pkg" -- 1000003 >"$work/3.out" 2>"$work/3.err"
code=$?
cat "$work/3.err"
id=$(last)
grep -q "sent more than the 4.0 KiB that remote local may send back" "$work/3.err"
capped=$?
[ "$code" = 0 ] && [ "$capped" = 0 ] && [ -f "$runs/$id/exit-status" ] && [ ! -e "$runs/$id/nvidia-smi.txt" ]
verdict "4 KiB cap: logs kept, nvidia-smi.txt refused" $? "(exit $code)"
config

echo "== 4. SIGTERM during a long run stops the runner on the GPU"
"$gpu" gpu remote-run --remote local --package "$pkg" -- 268435456 268435456 268435456 >"$work/4.out" 2>"$work/4.err" &
pid=$!
i=0
while ! grep -q '^check' "$work/4.out" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
kill -TERM $pid
wait $pid
code=$?
cat "$work/4.err"
id=$(last)
sleep 1
left=$(pgrep -f "$work/remote/runs/$id/bin" | wc -l)
[ "$code" = 130 ] && [ "$(field "$id" state)" = '"interrupted"' ] && [ "$left" = 0 ]
verdict "SIGTERM: exit 130, record interrupted, runner gone" $? "(exit $code, state $(field "$id" state), $left left)"

echo "== 5. two runs at once on one GPU"
"$gpu" gpu remote-run --remote local --package "$pkg" -- 16Mi >"$work/5a.out" 2>"$work/5a.err" &
a=$!
"$gpu" gpu remote-run --remote local --package "$pkg" -- hgemm 2048x2048x2048 >"$work/5b.out" 2>"$work/5b.err" &
b=$!
wait $a
ca=$?
wait $b
cb=$?
cat "$work/5a.err" "$work/5b.err"
n=$(cat "$work/5a.out" "$work/5b.out" | grep -c '^check .*: PASS')
[ "$ca" = 0 ] && [ "$cb" = 0 ] && [ "$n" = 2 ]
verdict "two runs at once: both pass" $? "(exits $ca $cb)"

echo "== runs"
"$gpu" gpu runs
echo
echo "== table"
cat "$rows"
rm -rf "$work"
exit $failed
