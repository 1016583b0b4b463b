# Sourced by setup.sh and test.sh: finds a CUDA compiler, or installs the pinned one from PyPI
# into the project-local venv .venv-cuda, and exports CUDA_HOME for what follows.
#
# Pinned to CUDA 13.0 (the driver generation of the GPU machines this project targets):
# cuda-toolkit 13.0.3.0 brings nvcc 13.0.88; cuobjdump and nvdisasm exist on PyPI only from
# 13.2.51 and read 13.0 cubins.

# compute-sanitizer, which `cargo gpu remote-run` ships to a remote that has none, comes from
# nvidia-cuda-sanitizer-api 13.5.25: the first wheel with the whole tool (its launcher helper
# TreeLauncherSubreaper included; without it the sanitizer cannot start a program), and it runs
# on drivers from CUDA 13.0 on.
CUDA_SANITIZER_PACKAGE='nvidia-cuda-sanitizer-api==13.5.25'
CUDA_PIP_PACKAGES="cuda-toolkit[nvcc,cccl]==13.0.3.0 nvidia-cuda-cuobjdump==13.2.51 nvidia-cuda-nvdisasm==13.2.51 $CUDA_SANITIZER_PACKAGE"

cuda_venv_home() {
    for d in "$1"/.venv-cuda/lib/python3*/site-packages/nvidia/cu13; do
        if [ -x "$d/bin/nvcc" ]; then
            printf '%s\n' "$d"
            return 0
        fi
    done
    return 1
}

ensure_cuda() {
    repo=$1
    if [ -n "${CARGO_GPU_NVCC:-}" ] && [ -x "$CARGO_GPU_NVCC" ]; then
        echo "cuda: using CARGO_GPU_NVCC=$CARGO_GPU_NVCC"
        return 0
    fi
    if [ -n "${CUDA_HOME:-}" ] && [ -x "$CUDA_HOME/bin/nvcc" ]; then
        echo "cuda: using CUDA_HOME=$CUDA_HOME"
        return 0
    fi
    if [ -x /usr/local/cuda/bin/nvcc ]; then
        export CUDA_HOME=/usr/local/cuda
        echo "cuda: using /usr/local/cuda"
        return 0
    fi
    if home=$(cuda_venv_home "$repo"); then
        export CUDA_HOME="$home"
        echo "cuda: using the project-local toolkit in $CUDA_HOME"
        return 0
    fi
    echo "cuda: no nvcc found; installing the CUDA 13.0 compiler from PyPI into $repo/.venv-cuda (about 300 MB)"
    if ! python3 -m venv "$repo/.venv-cuda" 2>/dev/null; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
            python3 -m venv "$repo/.venv-cuda"
        else
            echo "error: python3 -m venv failed: install python3-venv, or install the CUDA toolkit and set CUDA_HOME" >&2
            return 1
        fi
    fi
    # shellcheck disable=SC2086
    "$repo/.venv-cuda/bin/python" -m pip install --quiet --disable-pip-version-check $CUDA_PIP_PACKAGES
    home=$(cuda_venv_home "$repo") || { echo "error: the CUDA packages installed no nvcc" >&2; return 1; }
    export CUDA_HOME="$home"
    echo "cuda: installed nvcc into $CUDA_HOME"
}

# Adds compute-sanitizer beside nvcc in the project-local venv when the compiler in use is that
# venv's and it lacks a whole one (a venv made before the sanitizer was part of it, or with an
# older wheel that has no launcher helper). Touches nothing else.
ensure_sanitizer() {
    repo=$1
    home=$(cuda_venv_home "$repo") || return 0
    [ "${CUDA_HOME:-}" = "$home" ] || return 0
    [ -x "$home/compute-sanitizer/TreeLauncherSubreaper" ] && return 0
    echo "cuda: installing compute-sanitizer from PyPI into $repo/.venv-cuda (15 MB), to ship to remotes without one"
    "$repo/.venv-cuda/bin/python" -m pip install --quiet --disable-pip-version-check "$CUDA_SANITIZER_PACKAGE"
}
