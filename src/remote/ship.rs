//! This machine's compute-sanitizer, sent to a remote that has none (a driver-only image): the
//! copy PyPI installs (`nvidia-cuda-sanitizer-api` 13.5.25 or later, beside nvcc in the same
//! `nvidia/cu13` tree, as `scripts/setup.sh` installs it), its files named by the wheel's own
//! `RECORD`, sent as content-addressed blobs like the package's, and assembled once from them into
//! `<workdir>/tools/compute-sanitizer-<digest>/`, where later runs find it. The wheel's layout is
//! kept: `bin/compute-sanitizer` starts `compute-sanitizer/compute-sanitizer`, which finds its
//! libraries and its `TreeLauncherSubreaper` beside itself (older wheels lack the subreaper, and
//! their sanitizer cannot start a program). Whether a run ships it follows the remote's
//! `ship-sanitizer` ([`ShipSanitizer`]).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use base64::Engine;

use crate::config::ShipSanitizer;
use crate::digest::{is_sha256, sha256_hex};
use crate::package::manifest::is_safe_relative;
use crate::quote::quote;

/// The PyPI release whose wheel holds the whole tool (its launcher helpers included) and whose
/// sanitizer runs on drivers from CUDA 13.0 on.
pub const SANITIZER_WHEEL: &str = "13.5.25";

/// The helper program the sanitizer starts its target through; older wheels lack it.
const SUBREAPER: &str = "compute-sanitizer/TreeLauncherSubreaper";

/// The environment variable that names the compute-sanitizer to ship (a `.../bin/compute-sanitizer`
/// of a PyPI install), instead of the one beside nvcc.
pub const SANITIZER_ENV: &str = "CARGO_GPU_SANITIZER";

/// One file of the shipped tool.
#[derive(Debug, Clone, PartialEq)]
pub struct ShippedFile {
    /// `bin/compute-sanitizer`, `compute-sanitizer/libsanitizer-public.so`.
    pub path: String,
    pub sha256: String,
    pub size: u64,
    pub local: PathBuf,
}

/// The local compute-sanitizer, as it is shipped.
#[derive(Debug, Clone, PartialEq)]
pub struct Shipment {
    /// `compute-sanitizer-<16 hex digits>`: its folder under `<workdir>/tools/`, named by its files.
    pub name: String,
    /// The wheel's version (`13.5.25`).
    pub version: String,
    pub files: Vec<ShippedFile>,
}

impl Shipment {
    /// Its files' digests, sorted and without repeats (two files may be one blob).
    pub fn hashes(&self) -> Vec<String> {
        let mut h: Vec<String> = self.files.iter().map(|f| f.sha256.clone()).collect();
        h.sort();
        h.dedup();
        h
    }

    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// `sha256  path` lines, as `sha256sum -c` reads them in the tool's folder.
    pub fn sums(&self) -> String {
        self.files.iter().map(|f| format!("{}  {}\n", f.sha256, f.path)).collect()
    }
}

/// The compute-sanitizer to ship: the one [`SANITIZER_ENV`] names, else the one PyPI installed
/// beside `nvcc`; `None` when there is none.
pub fn local_sanitizer(nvcc: Option<&Path>) -> Result<Option<Shipment>> {
    if let Some(p) = std::env::var_os(SANITIZER_ENV).filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        return from_binary(&p)
            .with_context(|| format!("failed to read the compute-sanitizer that {SANITIZER_ENV} names"))?
            .map(Some)
            .with_context(|| {
                format!(
                    "{SANITIZER_ENV}={} is not a compute-sanitizer installed from PyPI (no nvidia_cuda_sanitizer_api-*.dist-info/RECORD beside its tree)",
                    p.display()
                )
            });
    }
    let Some(bin) = nvcc.and_then(Path::parent) else { return Ok(None) };
    let binary = bin.join("compute-sanitizer");
    if !binary.is_file() {
        return Ok(None);
    }
    from_binary(&binary)
}

/// `<site-packages>/nvidia/cu13/bin/compute-sanitizer` -> the files its wheel's RECORD lists
/// under `nvidia/cu13/bin/` and `nvidia/cu13/compute-sanitizer/` (its documentation left out).
fn from_binary(binary: &Path) -> Result<Option<Shipment>> {
    let home = binary.parent().and_then(Path::parent).context("the compute-sanitizer has no `bin/` folder")?;
    // site-packages/nvidia/cu13: two levels up is where pip keeps the wheel's record.
    let Some(site) = home.parent().and_then(Path::parent) else { return Ok(None) };
    let Ok(entries) = std::fs::read_dir(site) else { return Ok(None) };
    let mut records: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("nvidia_cuda_sanitizer_api-") && n.ends_with(".dist-info"))
        })
        .collect();
    records.sort();
    let Some(dist) = records.pop() else { return Ok(None) };
    let record = dist.join("RECORD");
    let text = std::fs::read_to_string(&record).with_context(|| format!("failed to read {}", record.display()))?;
    let prefix = format!("{}/", home.strip_prefix(site).unwrap_or(home).display());
    let version = dist
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("nvidia_cuda_sanitizer_api-")?.strip_suffix(".dist-info"))
        .unwrap_or("?")
        .to_string();
    let mut files = Vec::new();
    for (path, sha256, size) in parse_record(&text, &prefix)? {
        let local = home.join(&path);
        let meta = std::fs::metadata(&local).with_context(|| {
            format!("{} lists {path}, which is missing: reinstall nvidia-cuda-sanitizer-api", record.display())
        })?;
        if meta.len() != size {
            bail!(
                "{} is {} bytes, not the {size} its wheel's RECORD says: reinstall nvidia-cuda-sanitizer-api",
                local.display(),
                meta.len()
            );
        }
        files.push(ShippedFile { path, sha256, size, local });
    }
    if !files.iter().any(|f| f.path == "bin/compute-sanitizer") {
        return Ok(None);
    }
    if !files.iter().any(|f| f.path == SUBREAPER) {
        bail!(
            "the compute-sanitizer of nvidia-cuda-sanitizer-api {version} ({}) has no {SUBREAPER}, without which it cannot start a program on a remote: install nvidia-cuda-sanitizer-api=={SANITIZER_WHEEL} beside nvcc (`scripts/setup.sh` does)",
            binary.display()
        );
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let sums: String = files.iter().map(|f| format!("{}  {}\n", f.sha256, f.path)).collect();
    let name = format!("compute-sanitizer-{}", &sha256_hex(sums.as_bytes())[..16]);
    Ok(Some(Shipment { name, version, files }))
}

/// The `bin/` and `compute-sanitizer/` entries of a wheel's RECORD (`path,sha256=<base64url>,size`)
/// under `prefix`, but its `docs/`, `include/` and `x86/`, as (path below the prefix, hex sha256,
/// size).
fn parse_record(text: &str, prefix: &str) -> Result<Vec<(String, String, u64)>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut fields = line.rsplitn(3, ',');
        let (Some(size), Some(hash), Some(path)) = (fields.next(), fields.next(), fields.next()) else { continue };
        let Some(rel) = path.strip_prefix(prefix) else { continue };
        // Its documentation, headers and 32-bit helpers stay here: a run needs none of them.
        let shipped = rel.starts_with("bin/")
            || (rel.starts_with("compute-sanitizer/")
                && !["docs/", "include/", "x86/"].iter().any(|d| rel["compute-sanitizer/".len()..].starts_with(d)));
        if !shipped || !is_safe_relative(rel) {
            continue;
        }
        let b64 = hash.strip_prefix("sha256=").with_context(|| format!("RECORD has no sha256 for {path}"))?;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(b64.trim_end_matches('='))
            .with_context(|| format!("RECORD's sha256 of {path} is not base64"))?;
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        if !is_sha256(&hex) {
            bail!("RECORD's sha256 of {path} is not a sha256");
        }
        let size = size.parse().with_context(|| format!("RECORD's size of {path} is not a number"))?;
        out.push((rel.to_string(), hex, size));
    }
    Ok(out)
}

/// Whether a run ships `local` to a remote: `always`, or `auto` when the remote has no
/// compute-sanitizer of its own and the run needs one, either asked for (`--sanitize`) or for
/// the memcheck rerun after a fault when every blob is there already (so a plain run never pays
/// for the upload).
pub fn ships(policy: ShipSanitizer, remote_has_one: bool, asked: bool, rerun: bool, all_present: bool) -> bool {
    match policy {
        ShipSanitizer::Never => false,
        ShipSanitizer::Always => asked || rerun,
        ShipSanitizer::Auto => !remote_has_one && (asked || (rerun && all_present)),
    }
}

/// The run script's step that assembles the tool's folder from the blobs once: copied into a
/// private folder, checked against the sha256 of each file, then renamed into place. A folder
/// assembled before is checked again, and assembled anew when anything in it changed. A blob that
/// does not match its name is deleted and named in a `b HASH` frame, and the script exits
/// `bad_blob` having launched nothing, as for the package's blobs.
pub fn assemble(workdir_prelude: &str, s: &Shipment, bad_blob: i32) -> String {
    let mut copy = String::new();
    let mut dirs: Vec<&str> = s.files.iter().filter_map(|f| f.path.rsplit_once('/').map(|(d, _)| d)).collect();
    dirs.sort();
    dirs.dedup();
    for f in &s.files {
        copy.push_str(&format!("  cp \"$W/blobs/{h}\" \"$t\"/{p} || tbad {h}\n", h = f.sha256, p = quote(&f.path)));
    }
    let mut check = String::new();
    for f in &s.files {
        check.push_str(&format!(
            "    v=$(sha256sum < \"$t\"/{p}) && [ \"${{v%% *}}\" = {h} ] || tbad {h}\n",
            p = quote(&f.path),
            h = f.sha256
        ));
    }
    format!(
        r#"{workdir_prelude}T="$W/tools"/{name}
if [ -f "$T/.complete" ] && ! (cd "$T" && sha256sum -c - > /dev/null 2>&1) <<'CARGO_GPU_SUMS'
{sums}CARGO_GPU_SUMS
then
  rm -rf "$T"
fi
if [ ! -f "$T/.complete" ]; then
  t="$T.tmp.$$"
  tbad() {{ rm -f "$W/blobs/$1"; rm -rf "$t"; printf 'b %s\n' "$1"; exit {bad_blob}; }}
  rm -rf "$t" && mkdir -p "$t" && cd "$t" && mkdir -p {dirs} || exit 1
{copy}  if ! (cd "$t" && sha256sum -c - > /dev/null 2>&1) <<'CARGO_GPU_SUMS'
{sums}CARGO_GPU_SUMS
  then
{check}  fi
  chmod 755 {files}
  touch "$t/.complete" && cd / && rm -rf "$T" && mv "$t" "$T" || rm -rf "$t"
fi
"#,
        name = quote(&s.name),
        dirs = dirs.iter().map(|d| quote(d)).collect::<Vec<_>>().join(" "),
        sums = s.sums(),
        // RECORD keeps no modes: every file is made executable (the helpers are programs).
        files = s.files.iter().map(|f| format!("\"$t\"/{}", quote(&f.path))).collect::<Vec<_>>().join(" "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(hex: &str) -> String {
        let raw: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }

    /// A PyPI install of compute-sanitizer in `site`, laid out as the 13.5.25 wheel is: a
    /// `bin/` script that starts the tool's own folder, which holds its libraries and (unless
    /// `subreaper` is false, as in older wheels) its launcher helper; and the record naming them.
    fn install_with(site: &Path, binary: &[u8], lib: &[u8], subreaper: bool) -> PathBuf {
        let home = site.join("nvidia/cu13");
        for d in ["bin", "compute-sanitizer/docs", "include"] {
            std::fs::create_dir_all(home.join(d)).unwrap();
        }
        let mut files: Vec<(&str, &[u8])> = vec![
            ("bin/compute-sanitizer", b"#!/bin/sh\nexec \"$(dirname -- \"$(readlink -f -- \"$0\")\")\"/../compute-sanitizer/compute-sanitizer \"$@\"\n"),
            ("compute-sanitizer/compute-sanitizer", binary),
            ("compute-sanitizer/libsanitizer-public.so", lib),
            ("compute-sanitizer/docs/index.html", b"<html>"),
            ("include/sanitizer.h", b"/* */"),
        ];
        if subreaper {
            files.push(("compute-sanitizer/TreeLauncherSubreaper", b"\x7fELF helper"));
        }
        let dist = site.join("nvidia_cuda_sanitizer_api-13.5.25.dist-info");
        std::fs::create_dir_all(&dist).unwrap();
        let mut record = String::new();
        for (path, bytes) in &files {
            std::fs::write(home.join(path), bytes).unwrap();
            record.push_str(&format!("nvidia/cu13/{path},sha256={},{}\n", b64(&sha256_hex(bytes)), bytes.len()));
        }
        record.push_str(&format!("{}/RECORD,,\n", dist.file_name().unwrap().to_string_lossy()));
        std::fs::write(dist.join("RECORD"), record).unwrap();
        std::fs::write(home.join("bin/nvcc"), b"").unwrap();
        home.join("bin/nvcc")
    }

    fn install(site: &Path, binary: &[u8], lib: &[u8]) -> PathBuf {
        install_with(site, binary, lib, true)
    }

    #[test]
    fn the_wheels_record_names_the_files_and_their_digests() {
        let dir = tempfile::tempdir().unwrap();
        let nvcc = install(dir.path(), b"#!/bin/sh\n", b"\x7fELF lib");
        let s = local_sanitizer(Some(&nvcc)).unwrap().unwrap();
        assert_eq!(s.version, "13.5.25");
        let paths: Vec<&str> = s.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "bin/compute-sanitizer",
                "compute-sanitizer/TreeLauncherSubreaper",
                "compute-sanitizer/compute-sanitizer",
                "compute-sanitizer/libsanitizer-public.so"
            ],
            "headers and documentation are not shipped"
        );
        assert_eq!(s.files[2].sha256, sha256_hex(b"#!/bin/sh\n"));
        assert_eq!(s.files[3].size, 8);
        assert!(s.name.starts_with("compute-sanitizer-") && s.name.len() == 34, "{}", s.name);
        // Another copy of the same files has the same name: the remote's folder is reused.
        let other = tempfile::tempdir().unwrap();
        let nvcc2 = install(other.path(), b"#!/bin/sh\n", b"\x7fELF lib");
        assert_eq!(local_sanitizer(Some(&nvcc2)).unwrap().unwrap().name, s.name);
        // A file that is not what the record says is an error that says what to do.
        std::fs::write(dir.path().join("nvidia/cu13/compute-sanitizer/libsanitizer-public.so"), b"short").unwrap();
        let err = local_sanitizer(Some(&nvcc)).unwrap_err().to_string();
        assert!(err.contains("not the 8 its wheel's RECORD says: reinstall"), "{err}");
        // An older wheel has no launcher helper: its sanitizer cannot start a program, so it is
        // refused here, with the release to install, instead of failing on the remote.
        let old = tempfile::tempdir().unwrap();
        let nvcc_old = install_with(old.path(), b"#!/bin/sh\n", b"\x7fELF lib", false);
        let err = local_sanitizer(Some(&nvcc_old)).unwrap_err().to_string();
        assert!(err.contains("has no compute-sanitizer/TreeLauncherSubreaper"), "{err}");
        assert!(err.contains("install nvidia-cuda-sanitizer-api==13.5.25"), "{err}");
        // No sanitizer beside nvcc: nothing to ship.
        let none = tempfile::tempdir().unwrap();
        assert_eq!(local_sanitizer(Some(&none.path().join("bin/nvcc"))).unwrap(), None);
    }

    #[test]
    fn a_record_cannot_name_files_outside_the_tree() {
        let text = format!(
            "nvidia/cu13/bin/../../../etc/passwd,sha256={h},1\nnvidia/cu13/compute-sanitizer/x.so,sha256={h},1\n\
             nvidia/cu13/compute-sanitizer/docs/index.html,sha256={h},1\nnvidia/cu13/lib/x.so,sha256={h},1\n\
             nvidia/cu13/compute-sanitizer/x86/TreeLauncherSubreaper,sha256={h},1\n\
             nvidia/cu13/compute-sanitizer/include/sanitizer.h,sha256={h},1\n",
            h = b64(&"a".repeat(64))
        );
        let got = parse_record(&text, "nvidia/cu13/").unwrap();
        assert_eq!(got, [("compute-sanitizer/x.so".to_string(), "a".repeat(64), 1)]);
    }

    #[test]
    fn when_a_run_ships_it() {
        use ShipSanitizer::*;
        assert!(ships(Auto, false, true, true, false), "--sanitize on a remote without one");
        assert!(!ships(Auto, true, true, true, false), "the remote's own is used");
        assert!(!ships(Auto, false, false, true, false), "a plain run does not pay for the upload");
        assert!(ships(Auto, false, false, true, true), "but uses the blobs already there");
        assert!(ships(Always, true, false, true, false), "forced");
        assert!(!ships(Always, true, false, false, true), "a run that needs none ships none");
        assert!(!ships(Never, false, true, true, true));
    }

    #[test]
    fn the_folder_is_assembled_once_and_a_bad_blob_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path().join("site");
        let nvcc = install(&site, b"#!/bin/sh\necho shipped\n", b"\x7fELF lib");
        let s = local_sanitizer(Some(&nvcc)).unwrap().unwrap();
        let w = dir.path().join("w");
        std::fs::create_dir_all(w.join("blobs")).unwrap();
        for f in &s.files {
            std::fs::copy(&f.local, w.join("blobs").join(&f.sha256)).unwrap();
        }
        let prelude = format!("W={}\n", quote(&w.display().to_string()));
        let script = assemble(&prelude, &s, 8);
        let run = || std::process::Command::new("sh").arg("-c").arg(&script).output().unwrap();
        let out = run();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let bin = w.join("tools").join(&s.name).join("bin/compute-sanitizer");
        assert_eq!(std::process::Command::new(&bin).output().unwrap().stdout, b"shipped\n");
        assert!(w.join("tools").join(&s.name).join(".complete").is_file());
        // Once there, it is not assembled again (a blob gone from the store does not matter)...
        let lib_blob = std::fs::read(w.join("blobs").join(&s.files[3].sha256)).unwrap();
        std::fs::remove_file(w.join("blobs").join(&s.files[3].sha256)).unwrap();
        assert!(run().status.success());
        // ...unless something in it changed: then it is, from the blobs.
        let lib = w.join("tools").join(&s.name).join("compute-sanitizer/libsanitizer-public.so");
        std::fs::write(&lib, b"tampered").unwrap();
        std::fs::write(w.join("blobs").join(&s.files[3].sha256), &lib_blob).unwrap();
        assert!(run().status.success());
        assert_eq!(std::fs::read(&lib).unwrap(), lib_blob);
        // A damaged blob is refused when the folder must be assembled again.
        std::fs::remove_dir_all(w.join("tools")).unwrap();
        std::fs::write(w.join("blobs").join(&s.files[3].sha256), b"planted").unwrap();
        let out = run();
        assert_eq!(out.status.code(), Some(8));
        assert_eq!(String::from_utf8(out.stdout).unwrap(), format!("b {}\n", s.files[3].sha256));
        assert!(!w.join("tools").join(&s.name).exists());
        assert!(!w.join("blobs").join(&s.files[3].sha256).exists(), "the bad blob was deleted");
    }
}
