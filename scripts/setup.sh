#!/usr/bin/env bash
# One command from a fresh clone to a built package: finds or installs the CUDA compiler (and,
# in the project-local venv, the compute-sanitizer that remote-run ships), installs cargo-gpu, builds kernels-example for sm_90a and sm_100a, and runs it when this
# machine has a GPU that can, or says which remote it needs.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/scripts/cuda-env.sh"
ensure_cuda "$repo"
ensure_sanitizer "$repo"

# Print the command that runs, word for word: it is the line to repeat after a change.
install=(cargo install --quiet --locked --force --path "$repo")
printf 'install:'; printf ' %q' "${install[@]}"; printf '\n'
"${install[@]}"
bin_dir="${CARGO_INSTALL_ROOT:-${CARGO_HOME:-$HOME/.cargo}}/bin"
export PATH="$bin_dir:$PATH"

cd "$repo/kernels-example"
cargo gpu doctor
cargo gpu build --target sm_90a --target sm_100a

# Run it here when a local GPU can; otherwise say plainly what it needs.
cc=$( (nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null || true) | head -n 1 | tr -d ' ')
case "$cc" in
    9.0)
        cargo gpu remote-run --remote local --target sm_90a ;;
    10.0)
        cargo gpu remote-run --remote local --target sm_100a ;;
    *)
        echo
        echo "Built target/gpu/debug/kernels-example for sm_90a and sm_100a."
        if [ -n "$cc" ]; then echo "This machine's GPU is compute capability $cc: it runs neither."; else echo "This machine has no NVIDIA GPU."; fi
        echo "sm_90a needs a remote with compute capability 9.0 (H100, H200); sm_100a needs 10.0 (B200)."
        echo "Add one to ~/.config/cargo-gpu/config.toml (see README.md) and run: cargo gpu remote-run --target sm_90a"
        ;;
esac
if [ -n "${CUDA_HOME:-}" ]; then
    echo
    case "$CUDA_HOME" in
        "$repo"/.venv-cuda/*)
            # cargo-gpu looks here last by itself (it remembers the checkout it was built from).
            echo "The CUDA compiler used here is this checkout's: $CUDA_HOME"
            echo "cargo gpu finds it without CUDA_HOME; other tools need: export CUDA_HOME=$CUDA_HOME" ;;
        *)
            echo "The CUDA compiler used here: export CUDA_HOME=$CUDA_HOME" ;;
    esac
fi
