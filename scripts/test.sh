#!/usr/bin/env bash
# The full test suite, installing what it needs first: the CUDA compiler (see cuda-env.sh) and
# the OpenSSH server that the remote-run tests start on loopback.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/scripts/cuda-env.sh"
ensure_cuda "$repo"

if ! [ -x /usr/sbin/sshd ] || ! command -v ssh >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "ssh: installing openssh-server and openssh-client"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server openssh-client >/dev/null
    else
        echo "error: the remote-run tests need /usr/sbin/sshd and ssh: install openssh-server and openssh-client" >&2
        exit 1
    fi
fi

cd "$repo"
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked "$@"
