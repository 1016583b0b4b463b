#!/usr/bin/env bash
# One command from a fresh clone to a built package: installs cargo-gpu, then, when this machine
# has no CUDA compiler, CUDA 13.0 from PyPI with `cargo gpu toolchain install 13.0` (no root; with
# the compute-sanitizer that remote-run ships), builds kernels-example for sm_90a and sm_100a, and
# runs it when this machine has a GPU that can, or says which remote it needs. Nothing needs
# exporting afterwards: cargo gpu finds the toolchains it installed.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)

# Print the command that runs, word for word: it is the line to repeat after a change.
install=(cargo install --quiet --locked --force --path "$repo")
printf 'install:'; printf ' %q' "${install[@]}"; printf '\n'
"${install[@]}"
bin_dir="${CARGO_INSTALL_ROOT:-${CARGO_HOME:-$HOME/.cargo}}/bin"
export PATH="$bin_dir:$PATH"

if [ -n "${CARGO_GPU_NVCC:-}" ] || [ -x "${CUDA_HOME:-/nonexistent}/bin/nvcc" ] || [ -x /usr/local/cuda/bin/nvcc ] \
    || command -v nvcc >/dev/null; then
    echo "cuda: using this machine's CUDA compiler"
else
    # The toolchain installer makes a venv: Debian and Ubuntu ship python3's venv module apart.
    if ! command -v uv >/dev/null && ! python3 -c 'import ensurepip' 2>/dev/null; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
        else
            echo "error: installing CUDA from PyPI needs python3's venv module: apt install python3-venv (or install uv)" >&2
            exit 1
        fi
    fi
    cargo gpu toolchain install 13.0
fi

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
echo
echo "The CUDA compilers cargo gpu knows, and the one it uses here: cargo gpu toolchain list"
