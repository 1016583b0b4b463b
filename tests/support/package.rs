//! Hand-made packages and archives: a package as `cargo gpu build` writes one (a runner script,
//! cubins, `manifest.toml`), the runner that the remote tests run, and a tar built header by
//! header, as a hostile remote would send it.

use std::path::Path;

use cargo_gpu::digest::sha256_file;
use cargo_gpu::package::manifest::{FileEntry, Manifest, PackageInfo, RunnerEntry, MANIFEST_FILE};

use super::files::write_exe;

/// The test runner: prints to stdout and stderr, writes into `$CARGO_GPU_OUT`, and takes
/// `exit=N` and `sleep=S` as its first argument.
pub const RUNNER: &str = r#"#!/bin/sh
printf 'runner says hello\n'
printf 'runner warns\n' >&2
for a in "$@"; do printf '[%s]\n' "$a"; done
for a in "$@"; do printf '%s\n' "$a"; done > "$CARGO_GPU_OUT/args.txt"
ls "$CARGO_GPU_KERNELS" > "$CARGO_GPU_OUT/kernels.txt"
cat "$CARGO_GPU_KERNELS"/* > "$CARGO_GPU_OUT/cubins.bin"
printf '\000\001\002\377binary' > "$CARGO_GPU_OUT/result.bin"
mkdir -p "$CARGO_GPU_OUT/sub" && echo nested > "$CARGO_GPU_OUT/sub/n.txt"
i=0
while [ $i -lt 300 ]; do echo "line $i of the output"; i=$((i + 1)); done
case "$1" in
  sleep=*) echo "sleeping"; sleep "${1#sleep=}"; echo "woke up" ;;
esac
printf 'last words without newline'
case "$1" in
  exit=*) exit "${1#exit=}" ;;
esac
exit 0
"#;

/// What [`RUNNER`] prints on stdout for `args` (when it is not interrupted).
pub fn runner_stdout(args: &[&str]) -> String {
    let mut s = String::from("runner says hello\n");
    for a in args {
        s.push_str(&format!("[{a}]\n"));
    }
    for i in 0..300 {
        s.push_str(&format!("line {i} of the output\n"));
    }
    if args.first().is_some_and(|a| a.starts_with("sleep=")) {
        s.push_str("sleeping\nwoke up\n");
    }
    s.push_str("last words without newline");
    s
}

/// Writes a package (runner, cubins, manifest.toml) into `dir` and returns its manifest.
pub fn make_package(dir: &Path, runner: &str, cubins: &[(&str, &[u8])], targets: &[&str]) -> Manifest {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("kernels")).unwrap();
    write_exe(&dir.join("bin/runner"), runner);
    for (name, bytes) in cubins {
        std::fs::write(dir.join("kernels").join(name), bytes).unwrap();
    }
    write_manifest(dir, targets)
}

/// (Re)writes `manifest.toml` for the files now in `dir`.
pub fn write_manifest(dir: &Path, targets: &[&str]) -> Manifest {
    let mut files = Vec::new();
    for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(dir).unwrap().to_string_lossy().into_owned();
        if !e.file_type().is_file() || rel == MANIFEST_FILE {
            continue;
        }
        let target = rel.strip_prefix("kernels/").and_then(|n| n.split('.').nth(1)).and_then(|t| t.parse().ok());
        files.push(FileEntry {
            size: e.metadata().unwrap().len(),
            sha256: sha256_file(e.path()).unwrap(),
            kernel: target.map(|_| rel.trim_start_matches("kernels/").split('.').next().unwrap().to_string()),
            target,
            executable: rel.starts_with("bin/"),
            path: rel,
        });
    }
    let m = Manifest {
        package: PackageInfo {
            name: "demo".into(),
            version: "0.1.0".into(),
            profile: "debug".into(),
            git_revision: None,
            git_dirty: false,
            targets: targets.iter().map(|t| t.parse().unwrap()).collect(),
            nvcc_version: "13.0.88".into(),
            min_driver_cuda: "13.0".into(),
        },
        runners: vec![RunnerEntry {
            path: "bin/runner".into(),
            triple: format!("{}-unknown-linux-gnu", std::env::consts::ARCH),
            glibc_floor: "2.34".into(),
            glibc: None,
        }],
        files,
    };
    std::fs::write(dir.join(MANIFEST_FILE), m.to_toml()).unwrap();
    m
}

/// A tar built header by header, so that it can hold what `tar::Builder` itself would refuse
/// (`..`, absolute paths, escapes in names): `(name, kind, contents, link target)`.
pub fn raw_tar(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data, link) in entries {
        let mut h = tar::Header::new_gnu();
        let bytes = name.as_bytes();
        h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        if let Some(l) = link {
            let lb = l.as_bytes();
            h.as_old_mut().linkname[..lb.len()].copy_from_slice(lb);
        }
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}
