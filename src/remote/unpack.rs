//! Unpacking what a run sends back (one tar stream) into its local run folder, with path checks:
//! absolute paths, `..`, links pointing outside, hard links, devices and writes through a link
//! are refused and reported; nothing is ever written outside the folder.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result};
use tar::EntryType;

#[derive(Debug, Default)]
pub struct Unpacked {
    /// Files written, relative to the folder.
    pub files: Vec<PathBuf>,
    /// One line per refused entry: its name and why.
    pub refused: Vec<String>,
}

/// The entry's path as a plain relative path, or why it is not one.
fn checked_relative(path: &Path) -> std::result::Result<PathBuf, &'static str> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => return Err("it contains `..`"),
            Component::RootDir | Component::Prefix(_) => return Err("it is an absolute path"),
        }
    }
    Ok(out)
}

/// Where a link at `rel` pointing to `target` lands, relative to the folder, if inside it.
fn link_destination(rel: &Path, target: &Path) -> Option<PathBuf> {
    if target.is_absolute() {
        return None;
    }
    let mut parts: Vec<_> = rel.parent().map(|p| p.components().collect()).unwrap_or_default();
    for c in target.components() {
        match c {
            Component::Normal(_) => parts.push(c),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.iter().collect())
}

/// Whether some existing part of `rel` under `root` (the entry itself included) is a link.
fn goes_through_link(root: &Path, rel: &Path) -> bool {
    let mut p = root.to_path_buf();
    for c in rel.components() {
        p.push(c);
        if std::fs::symlink_metadata(&p).map(|m| m.file_type().is_symlink()).unwrap_or(false) {
            return true;
        }
    }
    false
}

/// Unpacks `tar` into `dest` (created if needed). Refused entries are skipped and listed.
pub fn unpack(tar: impl Read, dest: &Path) -> Result<Unpacked> {
    std::fs::create_dir_all(dest).with_context(|| format!("failed to create {}", dest.display()))?;
    let mut archive = tar::Archive::new(tar);
    let mut result = Unpacked::default();
    let entries = archive.entries().context("failed to read the run's tar stream")?;
    for entry in entries {
        let mut entry = entry.context("failed to read the run's tar stream")?;
        let raw = entry.path().context("failed to read a path in the run's tar stream")?.into_owned();
        let shown = raw.display().to_string();
        let rel = match checked_relative(&raw) {
            Ok(r) if r.as_os_str().is_empty() => continue,
            Ok(r) => r,
            Err(why) => {
                result.refused.push(format!("{shown}: {why}"));
                continue;
            }
        };
        if goes_through_link(dest, &rel) {
            result.refused.push(format!("{shown}: it would be written through a link"));
            continue;
        }
        let to = dest.join(&rel);
        let kind = entry.header().entry_type();
        match kind {
            EntryType::Directory => {
                std::fs::create_dir_all(&to).with_context(|| format!("failed to create {}", to.display()))?;
            }
            EntryType::Regular | EntryType::Continuous => {
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("failed to create {}", parent.display()))?;
                }
                let mut file =
                    std::fs::File::create(&to).with_context(|| format!("failed to create {}", to.display()))?;
                std::io::copy(&mut entry, &mut file).with_context(|| format!("failed to write {}", to.display()))?;
                let mode = entry.header().mode().unwrap_or(0o644);
                use std::os::unix::fs::PermissionsExt;
                let perms = std::fs::Permissions::from_mode(if mode & 0o111 != 0 { 0o755 } else { 0o644 });
                std::fs::set_permissions(&to, perms)
                    .with_context(|| format!("failed to set mode of {}", to.display()))?;
                result.files.push(rel);
            }
            EntryType::Symlink => {
                let target = entry.link_name().ok().flatten().map(|t| t.into_owned()).unwrap_or_default();
                if link_destination(&rel, &target).is_none() {
                    result
                        .refused
                        .push(format!("{shown}: a link pointing outside the run folder ({})", target.display()));
                    continue;
                }
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("failed to create {}", parent.display()))?;
                }
                std::os::unix::fs::symlink(&target, &to)
                    .with_context(|| format!("failed to create link {}", to.display()))?;
            }
            EntryType::Link => result.refused.push(format!("{shown}: hard links are not unpacked")),
            other => result.refused.push(format!("{shown}: {other:?} entries are not unpacked")),
        }
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar built byte by byte, so that it can hold what `tar::Builder` itself would refuse.
    fn tar_with(entries: &[(&str, EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            // Raw name bytes: `set_path` would refuse `..` and absolute paths.
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

    fn files_under(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = walkdir::WalkDir::new(dir)
            .into_iter()
            .map(|e| e.unwrap().path().strip_prefix(dir).unwrap().display().to_string())
            .filter(|p| !p.is_empty())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn plain_files_and_folders_unpack() {
        let dir = tempfile::tempdir().unwrap();
        let t = tar_with(&[
            ("out/", EntryType::Directory, b"", None),
            ("out/result.bin", EntryType::Regular, b"\x00\x01", None),
            ("stdout.log", EntryType::Regular, b"hello\n", None),
            ("out/same", EntryType::Symlink, b"", Some("result.bin")),
        ]);
        let u = unpack(&t[..], dir.path()).unwrap();
        assert!(u.refused.is_empty(), "{:?}", u.refused);
        assert_eq!(std::fs::read(dir.path().join("out/result.bin")).unwrap(), b"\x00\x01");
        assert_eq!(std::fs::read(dir.path().join("out/same")).unwrap(), b"\x00\x01");
        assert_eq!(std::fs::read_to_string(dir.path().join("stdout.log")).unwrap(), "hello\n");
    }

    #[test]
    fn escapes_are_refused_reported_and_never_written() {
        let outer = tempfile::tempdir().unwrap();
        let dest = outer.path().join("run");
        let t = tar_with(&[
            ("../x", EntryType::Regular, b"evil", None),
            ("/etc/x-cargo-gpu-test", EntryType::Regular, b"evil", None),
            ("out/../../y", EntryType::Regular, b"evil", None),
            ("esc", EntryType::Symlink, b"", Some("..")),
            ("abs", EntryType::Symlink, b"", Some("/etc")),
            ("deep/esc", EntryType::Symlink, b"", Some("../../z")),
            ("hard", EntryType::Link, b"", Some("/etc/passwd")),
            ("fifo", EntryType::Fifo, b"", None),
            ("ok.txt", EntryType::Regular, b"fine", None),
        ]);
        let u = unpack(&t[..], &dest).unwrap();
        assert_eq!(u.refused.len(), 8, "{:?}", u.refused);
        assert!(u.refused[0].starts_with("../x: it contains `..`"), "{:?}", u.refused);
        assert!(u.refused[1].contains("absolute path"), "{:?}", u.refused);
        assert!(u.refused[3].contains("link pointing outside"), "{:?}", u.refused);
        assert_eq!(files_under(outer.path()), ["run", "run/ok.txt"]);
        assert!(!Path::new("/etc/x-cargo-gpu-test").exists());
    }

    #[test]
    fn nothing_is_written_through_an_inside_link_to_outside() {
        // A link that is fine by itself (`d` -> `.`) must not let a later entry climb out, and an
        // existing link in the folder is never followed.
        let outer = tempfile::tempdir().unwrap();
        let dest = outer.path().join("run");
        std::fs::create_dir_all(&dest).unwrap();
        std::os::unix::fs::symlink(outer.path(), dest.join("pre")).unwrap();
        let t = tar_with(&[
            ("d", EntryType::Symlink, b"", Some(".")),
            ("d/x", EntryType::Regular, b"through", None),
            ("pre/evil", EntryType::Regular, b"evil", None),
            ("pre", EntryType::Regular, b"evil", None),
        ]);
        let u = unpack(&t[..], &dest).unwrap();
        assert_eq!(u.refused.len(), 3, "{:?}", u.refused);
        assert!(!outer.path().join("evil").exists());
        assert!(!dest.join("x").exists());
    }
}
