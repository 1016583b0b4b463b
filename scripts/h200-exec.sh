#!/bin/sh
# kernels-example's GPU tests (`cargo test --release --no-run`, built by scripts/h200-pack.sh) run
# through `cargo-gpu exec --remote local`, as cargo's target runner runs them: with the package's
# kernels they pass; with a package whose vector_add kernel is broken, exactly that test fails.
#
#   sh h200-exec.sh DIR      DIR holds cargo-gpu, example/, example-broken/ and tests/
#
# Prints a table last; exit status 1 if any check failed.
set -u

dir=$(cd "${1:?usage: h200-exec.sh DIR (with cargo-gpu, example/, example-broken/, tests/)}" && pwd)
gpu="$dir/cargo-gpu"
width=52
. "$(dirname "$0")/h200-common.sh"

nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader || { echo "no GPU" >&2; exit 1; }
config
testbin=$(ls "$dir"/tests/vector_add-* | head -n 1)
for pkg in example example-broken; do
    "$gpu" gpu exec --remote local --package "$dir/$pkg" -- "$testbin" --test-threads 1 --nocapture >"$work/$pkg.out" 2>"$work/$pkg.err"
    code=$?
    cat "$work/$pkg.out" "$work/$pkg.err"
    result=$(grep '^test result:' "$work/$pkg.out" | sed 's/; 0 ignored.*//')
    # The binary holds the kit's own unit tests too; the GPU ones print their checks.
    gemm=$(grep -c '^check hgemm .*: PASS' "$work/$pkg.out")
    if [ "$pkg" = example ]; then
        # vector_add: 2 sizes, and 1 more timed against the copy; hgemm: 2 sizes, 2 more against cuBLASLt.
        [ "$code" = 0 ] && grep -q '^test result: ok\. [0-9]* passed; 0 failed' "$work/$pkg.out" \
            && [ "$(grep -c '^check vector_add .*: PASS' "$work/$pkg.out")" = 3 ] && [ "$gemm" = 4 ]
        verdict "exec: GPU tests with the package's kernels pass" $? "(exit $code; $result; hgemm checks $gemm)"
    else
        # Exactly the two tests that run vector_add fail.
        [ "$code" = 101 ] && grep -q '^    gpu_tests::vector_add_matches_the_cpu$' "$work/$pkg.out" \
            && grep -q '^    gpu_tests::vector_add_is_timed_against_the_drivers_copy$' "$work/$pkg.out" \
            && grep -q '^test result: FAILED\. [0-9]* passed; 2 failed' "$work/$pkg.out" && [ "$gemm" = 4 ]
        verdict "exec: a broken vector_add fails exactly its tests" $? "(exit $code; $result; hgemm checks $gemm)"
    fi
done
echo
echo "== table"
cat "$rows"
rm -rf "$work"
exit $failed
