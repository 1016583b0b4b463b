//! Fake tools for what cannot exist here: small `sh` scripts that stand in for a GPU's
//! `nvidia-smi` (this machine has none), an nvcc of another version, and the remote's `tar` and
//! `df` bent to cut an upload off, hang a fetch, answer with a hostile archive or fill the disk.

use std::path::{Path, PathBuf};

use super::files::write_script;

/// A local `nvidia-smi` in `bin` that prints `answer` (the line of the query `doctor` and `new`
/// make), or fails as on a machine whose driver is not loaded when `answer` is `None`. Each
/// call's arguments are appended to `bin/nvidia-smi.log`.
pub fn fake_nvidia_smi(bin: &Path, answer: Option<&str>) {
    let log = bin.join("nvidia-smi.log");
    let reply = match answer {
        Some(line) => format!("printf '%s\\n' '{line}'\n"),
        None => "echo 'NVIDIA-SMI has failed because it couldn'\\''t communicate with the NVIDIA driver.'\nexit 9\n"
            .to_string(),
    };
    write_script(&bin.join("nvidia-smi"), &format!("echo \"$@\" >> '{}'\n{reply}", log.display()));
}

/// A CUDA toolkit at `home` whose `bin/nvcc` says it is `version` (`12.4.131`), lists `codes`
/// (`sm_50 sm_90`) one a line for `--list-gpu-code`, and fails (exit 9) at anything else, compiling included. Returns the
/// log that each call's arguments are appended to.
pub fn fake_nvcc(home: &Path, version: &str, codes: &str) -> PathBuf {
    let release = version.rsplit_once('.').unwrap().0;
    let log = home.join("nvcc.log");
    write_script(
        &home.join("bin/nvcc"),
        &format!(
            "echo \"$@\" >> '{log}'\ncase \"$1\" in\n--version) echo 'Cuda compilation tools, release {release}, V{version}';;\n\
             --list-gpu-code) printf '%s\\n' {codes};;\n*) exit 9;;\nesac\n",
            log = log.display(),
        ),
    );
    log
}

/// The remote's `nvidia-smi`: answers the queries cargo-gpu makes as the GPU that
/// `CARGO_GPU_FAKE_GPU` names would (an H100 unless told otherwise).
pub const REMOTE_NVIDIA_SMI: &str = r#"#!/bin/sh
case "${CARGO_GPU_FAKE_GPU:-h100}" in
  rtx5060ti) name="NVIDIA GeForce RTX 5060 Ti"; cc=12.0 ;;
  # A host that names its GPU with terminal escapes: retitle the window, clear the screen.
  hostile) name=$(printf 'NVIDIA H100\033]0;pwned\007\033[2J'); cc=9.0 ;;
  *) name="NVIDIA H100 80GB HBM3"; cc=9.0 ;;
esac
driver=580.95.05
cuda=13.0
case "$*" in
  *--query-gpu=*) echo "$name, $cc, $driver" ;;
  -q)
    printf '\n==============NVSMI LOG==============\n\n'
    printf 'Timestamp                                 : Sat Nov 28 14:03:11 2026\n'
    printf 'Driver Version                            : %s\n' "$driver"
    printf 'CUDA Version                              : %s\n\n' "$cuda"
    printf 'Attached GPUs                             : 1\n'
    printf 'GPU 00000000:00:05.0\n    Product Name                          : %s\n' "$name"
    ;;
  *) echo "fake nvidia-smi: unsupported arguments: $*" >&2; exit 9 ;;
esac
"#;

/// The remote's `tar`: the real one, except that
/// - while the file `slow-tar` exists beside it, an unpacking tar gets the first MiB of its input
///   and then nothing more until that file is removed (so a test can cut an upload off while a
///   blob is half written);
/// - while `slow-fetch` exists, a creating tar waits (a slow fetch of a run's files);
/// - while `hostile.tar` exists, a creating tar sends that file instead: a hostile host's answer.
pub const REMOTE_TAR: &str = r#"#!/bin/sh
d=$(dirname "$0")
real=/usr/bin/tar; [ -x "$real" ] || real=/bin/tar
if [ -e "$d/slow-tar" ] && [ "$1" = "-xf" ]; then
  { head -c 1048576; while [ -e "$d/slow-tar" ]; do sleep 0.05; done; cat; } | "$real" "$@"
  exit $?
fi
if [ "$1" = "-cf" ]; then
  while [ -e "$d/slow-fetch" ]; do sleep 0.05; done
  if [ -e "$d/hostile.tar" ]; then exec cat "$d/hostile.tar"; fi
fi
exec "$real" "$@"
"#;

/// The remote's `df`: the real one, except that while the file `disk-full` exists beside it,
/// every file system has 1 MiB free.
pub const REMOTE_DF: &str = r#"#!/bin/sh
d=$(dirname "$0")
real=/usr/bin/df; [ -x "$real" ] || real=/bin/df
if [ -e "$d/disk-full" ]; then
  echo "Filesystem 1024-blocks Used Available Capacity Mounted on"
  echo "/dev/fake 1048576 1047552 1024 100% /"
  exit 0
fi
exec "$real" "$@"
"#;
