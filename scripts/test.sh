#!/usr/bin/env bash
# The full test suite, installing what it needs first: the CUDA compiler (see cuda-env.sh), the
# OpenSSH server that the remote-run tests start on loopback, the login shells (zsh, fish,
# tcsh) those tests give the remote user, and for the cross-built runners qemu-user with an
# aarch64 glibc to start the aarch64 one and Rust's aarch64 standard library (cargo-zigbuild and
# zig come from PyPI, installed by cargo-gpu itself on first use), cargo-nextest for the
# target-runner tests, and Slurm and munge for the cluster tests.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/scripts/cuda-env.sh"
ensure_cuda "$repo"

missing=""
[ -x /usr/sbin/sshd ] || missing="$missing openssh-server"
command -v ssh >/dev/null || missing="$missing openssh-client"
for sh in zsh fish tcsh; do command -v "$sh" >/dev/null || missing="$missing $sh"; done
command -v qemu-aarch64 >/dev/null || missing="$missing qemu-user"
[ -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ] || missing="$missing libc6-arm64-cross"
# The Slurm tests bring up a single-node cluster of their own from these.
for d in /usr/sbin/slurmctld:slurmctld /usr/sbin/slurmd:slurmd /usr/bin/sbatch:slurm-client /usr/sbin/munged:munge; do
    [ -x "${d%%:*}" ] || missing="$missing ${d#*:}"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "tests: installing$missing"
        apt-get update -qq
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    else
        echo "error: the remote-run and cross-built runner tests need$missing: install them (apt-get install$missing)" >&2
        exit 1
    fi
fi

aarch64=aarch64-unknown-linux-gnu
if [ ! -d "$(rustc --print sysroot)/lib/rustlib/$aarch64" ]; then
    if command -v rustup >/dev/null; then
        echo "tests: installing Rust's standard library for $aarch64"
        rustup target add "$aarch64" >/dev/null
    else
        echo "error: the cross-built runner tests need Rust's standard library for $aarch64: rustup target add $aarch64" >&2
        exit 1
    fi
fi

if ! cargo nextest --version >/dev/null 2>&1; then
    echo "tests: installing cargo-nextest (cargo install --locked cargo-nextest)"
    cargo install --locked --quiet cargo-nextest
fi

cd "$repo"
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked "$@"
