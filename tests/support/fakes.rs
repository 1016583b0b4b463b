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
  *--query-gpu=*) i=0; while [ $i -lt "${CARGO_GPU_FAKE_GPUS:-1}" ]; do echo "$name, $cc, $driver"; i=$((i + 1)); done ;;
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

/// The remote's `compute-sanitizer`: runs the command after its options, then writes a report
/// shaped like the real one's to its `--log-file`: with the file `fault-at` beside it, an error
/// at the `FILE:LINE` that file holds (memcheck: an out-of-bounds write by thread (1,0,0) of block
/// (0,0,0); racecheck: a race), else none. Each call's arguments are appended to
/// `compute-sanitizer.log` beside it; the command's exit status is its own. A copy shipped to
/// the remote (see [`fake_pypi_sanitizer`]) reads `fault-at` beside the fake `nvidia-smi`.
pub const REMOTE_COMPUTE_SANITIZER: &str = r#"#!/bin/sh
d=$(dirname "$0")
echo "$*" >> "$d/compute-sanitizer.log"
# A copy shipped to the remote's tools folder finds `fault-at` beside the fake nvidia-smi.
at=$(cat "$d/fault-at" 2>/dev/null || cat "$(dirname "$(command -v nvidia-smi)")/fault-at" 2>/dev/null)
tool=memcheck; log=/dev/stdout
while [ $# -gt 0 ]; do
  case $1 in
    --version) printf 'NVIDIA (R) Compute Sanitizer\nVersion 2025.3.1.0 (fake)\n'; exit 0 ;;
    --tool) tool=$2; shift 2 ;;
    --log-file) log=$2; shift 2 ;;
    --*) shift 2 ;;
    *) break ;;
  esac
done
"$@"
s=$?
{
  echo "========= COMPUTE-SANITIZER"
  if [ -z "$at" ]; then
    echo "========= ERROR SUMMARY: 0 errors"
  elif [ "$tool" = racecheck ]; then
    echo "========= Error: Race reported between Write access at block_sum(const float *, float *)+0x2b0 in $at"
    echo "=========     and Read access at block_sum(const float *, float *)+0x290 in $at [7936 hazards]"
    echo "========="
    echo "========= RACECHECK SUMMARY: 1 hazard displayed (1 error, 0 warnings)"
  else
    echo "========= Invalid __global__ write of size 4 bytes"
    echo "=========     at scale_rows+0x1d0 in $at"
    echo "=========     by thread (1,0,0) in block (0,0,0)"
    echo "=========     Address 0x7f1e2a400000 is out of bounds"
    echo "=========     and is 4,190,208 bytes after the nearest allocation at 0x7f1e2a001000 of size 4,194,304 bytes"
    echo "=========     Saved host backtrace up to driver entry point at kernel launch time"
    echo "=========         Host Frame: cuLaunchKernel [0x2f5a1b] in libcuda.so.1"
    echo "========="
    echo "========= Program hit CUDA_ERROR_LAUNCH_FAILED (error 719) due to \"unspecified launch failure\" on CUDA API call to cuStreamSynchronize."
    echo "========= ERROR SUMMARY: 1023 errors"
  fi
} > "$log"
exit $s
"#;

/// The remote's `ncu`: profiles by running the command after its options (every option but
/// `--force-overwrite` takes a value), writes `--export NAME` as `NAME.ncu-rep` and its own
/// messages to `--log-file`; `--import R --page details [--csv]` prints a details page shaped
/// like the real one's, of one `vector_add` launch of 6.40 us. While the file `ncu-denied`
/// exists beside it, it profiles nothing and logs `ERR_NVGPUCTRPERM`. Each call's arguments are
/// appended to `ncu.log` beside it.
pub const REMOTE_NCU: &str = r#"#!/bin/sh
d=$(dirname "$0")
echo "$*" >> "$d/ncu.log"
case " $* " in
  *" --import "*)
    case " $* " in
      *" --csv "*)
        echo '"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size","Device","CC","Section Name","Metric Name","Metric Unit","Metric Value"'
        for m in 'GPU Speed Of Light Throughput","Duration","us","6.40' 'GPU Speed Of Light Throughput","Compute (SM) Throughput","%","12.10' \
                 'GPU Speed Of Light Throughput","DRAM Throughput","%","85.30' 'Launch Statistics","Registers Per Thread","register/thread","16' \
                 'Occupancy","Achieved Occupancy","%","80.12'; do
          echo "\"0\",\"4242\",\"runner\",\"127.0.0.1\",\"vector_add\",\"1\",\"7\",\"(256, 1, 1)\",\"(4096, 1, 1)\",\"0\",\"9.0\",\"$m\""
        done ;;
      *) printf '  vector_add (4096, 1, 1)x(256, 1, 1), Context 1, Stream 7, Device 0, CC 9.0\n    Section: GPU Speed Of Light Throughput\n    Duration   us   6.40\n' ;;
    esac
    exit 0 ;;
esac
out=report; log=/dev/stderr
while [ $# -gt 0 ]; do
  case $1 in
    --export|-o) out=$2; shift 2 ;;
    --log-file) log=$2; shift 2 ;;
    --force-overwrite|-f) shift ;;
    --*) shift 2 ;;
    *) break ;;
  esac
done
if [ -e "$d/ncu-denied" ]; then
  echo "==ERROR== ERR_NVGPUCTRPERM - The user does not have permission to access NVIDIA GPU Performance Counters on the target device 0." > "$log"
  "$@"
  exit $?
fi
echo "==PROF== Connected to process 4242" > "$log"
"$@"
s=$?
printf 'NVIDIA Nsight Compute report (fake)\n' > "$out.ncu-rep"
echo "==PROF== Report: $PWD/$out.ncu-rep" >> "$log"
exit $s
"#;

/// The remote's `cuda-gdb`: runs the command after `--args`, then prints a batch session shaped
/// like the real one's on a kernel fault at the `FILE:LINE` that the file `fault-at` beside it
/// holds. Each call's arguments are appended to `cuda-gdb.log` beside it.
pub const REMOTE_CUDA_GDB: &str = r##"#!/bin/sh
d=$(dirname "$0")
echo "$*" >> "$d/cuda-gdb.log"
while [ $# -gt 0 ] && [ "$1" != --args ]; do shift; done
shift
"$@"
at=$(cat "$d/fault-at" 2>/dev/null)
echo "[Thread debugging using libthread_db enabled]"
echo
echo "CUDA Exception: Warp Illegal Address"
echo "The exception was triggered at PC 0x7fffd3a8f4d0  scale_rows  ($at)"
echo
echo "Thread 1 \"runner\" received signal CUDA_EXCEPTION_14, Warp Illegal Address."
echo "[Switching focus to CUDA kernel 0, grid 1, block (1,0,0), thread (0,0,0), device 0, sm 2, warp 0, lane 0]"
echo "0x00007fffd3a8f4e0 in scale_rows<<<(4096,1,1),(256,1,1)>>> (in=0x7fffc6000000, out=0x7fffc6400000, n=1048576) at $at"
echo "#0  0x00007fffd3a8f4e0 in scale_rows<<<(4096,1,1),(256,1,1)>>> (in=0x7fffc6000000, out=0x7fffc6400000, n=1048576) at $at"
echo "i = 256"
"##;

/// The `bin/compute-sanitizer` of the PyPI wheel: a script that starts the tool in its own folder.
const PYPI_SANITIZER_LAUNCHER: &str =
    "#!/bin/sh\n\nDIR=\"$(dirname -- \"$(readlink -f -- \"$0\")\")\"\nexec \"$DIR\"/../compute-sanitizer/compute-sanitizer \"$@\"\n";

/// A compute-sanitizer installed from PyPI under `site`, laid out as `scripts/setup.sh` installs
/// nvidia-cuda-sanitizer-api 13.5.25 (`site/nvidia/cu13/bin/compute-sanitizer`, a launcher of
/// `site/nvidia/cu13/compute-sanitizer/`, and the wheel's `RECORD`):
/// [`REMOTE_COMPUTE_SANITIZER`] as the tool, two libraries, the launcher helper and documentation
/// (which is not shipped). Returns the launcher's path, for `CARGO_GPU_SANITIZER`.
pub fn fake_pypi_sanitizer(site: &Path) -> PathBuf {
    use base64::Engine;
    let home = site.join("nvidia/cu13");
    let files: [(&str, &[u8]); 6] = [
        ("bin/compute-sanitizer", PYPI_SANITIZER_LAUNCHER.as_bytes()),
        ("compute-sanitizer/compute-sanitizer", REMOTE_COMPUTE_SANITIZER.as_bytes()),
        ("compute-sanitizer/libsanitizer-collection.so", b"\x7fELF collection"),
        ("compute-sanitizer/libsanitizer-public.so", b"\x7fELF public"),
        ("compute-sanitizer/TreeLauncherSubreaper", b"\x7fELF subreaper"),
        ("compute-sanitizer/docs/index.html", b"<html>"),
    ];
    let mut record = String::new();
    for (path, bytes) in files {
        let p = home.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        // As pip leaves them: the programs executable.
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let hex = cargo_gpu::digest::sha256_hex(bytes);
        let raw: Vec<u8> = (0..64).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        record.push_str(&format!("nvidia/cu13/{path},sha256={b64},{}\n", bytes.len()));
    }
    let dist = site.join("nvidia_cuda_sanitizer_api-13.5.25.dist-info");
    std::fs::create_dir_all(&dist).unwrap();
    record.push_str("nvidia_cuda_sanitizer_api-13.5.25.dist-info/RECORD,,\n");
    std::fs::write(dist.join("RECORD"), record).unwrap();
    home.join("bin/compute-sanitizer")
}
