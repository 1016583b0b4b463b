#!/usr/bin/env bash
# The full test suite, installing what it needs first: the CUDA compiler (see cuda-env.sh), the
# OpenSSH server that the remote-run tests start on loopback, the login shells (zsh, fish,
# tcsh) those tests give the remote user, and Slurm and munge for the cluster tests.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/scripts/cuda-env.sh"
ensure_cuda "$repo"

missing=""
[ -x /usr/sbin/sshd ] || missing="$missing openssh-server"
command -v ssh >/dev/null || missing="$missing openssh-client"
for sh in zsh fish tcsh; do command -v "$sh" >/dev/null || missing="$missing $sh"; done
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
        echo "error: the remote-run tests need$missing: install them (apt-get install$missing)" >&2
        exit 1
    fi
fi

cd "$repo"
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked "$@"
