//! Unpacking what a run sends back (one tar stream, read as it arrives) into its local run folder.
//! The stream comes from a stranger's machine, so: only the names a run sends are taken
//! (`stdout.log`, ..., anything under `out/`), nothing is ever written through a link (links in
//! the stream are refused, never created; every folder on the way is checked on the real file
//! system; files are written as new temp files renamed into place), and the total is capped:
//! the first entry that would pass the cap ends the unpacking, and the caller cuts the stream.
//! Refused entries are reported by name, escaped, and counted.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result};
use tar::EntryType;

use crate::escape;
use crate::shell::human_bytes;

/// The longest GNU long name or pax header read (real ones are a few hundred bytes).
const MAX_META_BYTES: u64 = 64 << 10;
/// The most refused entries listed by name; the rest are counted.
const MAX_LISTED_REFUSALS: usize = 50;

/// A small file's name and how its text is rewritten before it is written.
pub type Filter<'a> = (&'a str, fn(&str) -> String);

/// What may be unpacked, and how much.
#[derive(Debug, Clone)]
pub struct Rules<'a> {
    /// Top-level names a run sends: files, and folders (written with a trailing `/`) with
    /// anything under them.
    pub allowed: &'a [&'a str],
    /// Small files read whole (at most 1 MiB) and rewritten by the function before they are
    /// written, such as `env.txt` redacted to its allow-list.
    pub filtered: &'a [Filter<'a>],
    /// The most bytes of file contents written.
    pub max_bytes: u64,
    /// The most entries taken.
    pub max_entries: usize,
}

#[derive(Debug, Default)]
pub struct Unpacked {
    /// Files written, relative to the folder.
    pub files: Vec<PathBuf>,
    /// Bytes of file contents written.
    pub bytes: u64,
    /// One line per refused entry (the first [`MAX_LISTED_REFUSALS`]): its name and why,
    /// control characters escaped.
    pub refused: Vec<String>,
    /// How many entries were refused in all.
    pub refused_count: usize,
    /// Set when the cap ended the unpacking: what was not taken.
    pub over_limit: Option<String>,
}

impl Unpacked {
    fn refuse(&mut self, name: &[u8], why: impl AsRef<str>) {
        self.refused_count += 1;
        if self.refused.len() < MAX_LISTED_REFUSALS {
            self.refused.push(format!("{}: {}", escape::line(&String::from_utf8_lossy(name)), why.as_ref()));
        }
    }

    /// The refusals as lines for the user and the record, with a count of those not listed.
    pub fn refusal_lines(&self) -> Vec<String> {
        let mut v = self.refused.clone();
        if self.refused_count > self.refused.len() {
            v.push(format!("and {} more entries refused", self.refused_count - self.refused.len()));
        }
        v
    }
}

/// The entry's path as a plain relative path, or why it is not one.
fn checked_relative(path: &[u8]) -> std::result::Result<PathBuf, &'static str> {
    use std::os::unix::ffi::OsStrExt;
    if path.contains(&0) {
        return Err("its name holds a NUL byte");
    }
    let mut out = PathBuf::new();
    for c in Path::new(std::ffi::OsStr::from_bytes(path)).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => return Err("it contains `..`"),
            Component::RootDir | Component::Prefix(_) => return Err("it is an absolute path"),
        }
    }
    Ok(out)
}

fn is_allowed(rules: &Rules<'_>, rel: &Path, is_dir: bool) -> bool {
    let mut parts = rel.components();
    let Some(first) = parts.next().and_then(|c| c.as_os_str().to_str()) else { return false };
    let nested = parts.next().is_some();
    rules.allowed.iter().any(|a| match a.strip_suffix('/') {
        Some(folder) => folder == first,
        None => *a == first && !nested && !is_dir,
    })
}

/// Makes the folders from `root` down to `rel`'s parent (or to `rel` itself, `include_last`),
/// checking each on the real file system: a link or a file where a folder belongs is refused.
fn make_folders(root: &Path, rel: &Path, include_last: bool) -> std::result::Result<(), String> {
    let mut comps: Vec<Component<'_>> = rel.components().collect();
    if !include_last {
        comps.pop();
    }
    let mut p = root.to_path_buf();
    for c in comps {
        p.push(c);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!("`{}` is a link here", p.strip_prefix(root).unwrap_or(&p).display()))
            }
            Ok(_) => return Err(format!("`{}` is a file here", p.strip_prefix(root).unwrap_or(&p).display())),
            Err(_) => {
                if let Err(e) = std::fs::create_dir(&p) {
                    if e.kind() != std::io::ErrorKind::AlreadyExists {
                        return Err(format!("could not create `{}`: {e}", p.display()));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Writes one entry's contents as a new temp file renamed into place.
fn write_file(to: &Path, contents: &mut dyn Read, executable: bool) -> std::io::Result<u64> {
    let dir = to.parent().expect("an entry lives in the run folder");
    let mut tmp = tempfile::Builder::new().prefix(".unpack.").tempfile_in(dir)?;
    let n = std::io::copy(contents, tmp.as_file_mut())?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(if executable { 0o755 } else { 0o644 }))?;
    tmp.persist(to).map_err(|e| e.error)?;
    Ok(n)
}

/// The path of the next entry, from a GNU long name or a pax `path` that came before it.
#[derive(Default)]
struct Pending {
    long_name: Option<Vec<u8>>,
    pax_path: Option<Vec<u8>>,
}

/// Unpacks `tar` into `dest` (created if needed) under `rules`. Refused entries are skipped
/// and listed; the cap ends the unpacking early with [`Unpacked::over_limit`] set.
pub fn unpack(tar: impl Read, dest: &Path, rules: &Rules<'_>) -> Result<Unpacked> {
    std::fs::create_dir_all(dest).with_context(|| format!("failed to create {}", dest.display()))?;
    let mut archive = tar::Archive::new(tar);
    let mut result = Unpacked::default();
    let mut pending = Pending::default();
    let mut taken = 0usize;
    // Raw entries: long names and pax headers are read here, with a size limit, instead of
    // whole into memory by the tar crate.
    let entries = archive.entries().context("failed to read the run's tar stream")?.raw(true);
    for entry in entries {
        let mut entry = entry.context("failed to read the run's tar stream")?;
        let kind = entry.header().entry_type();
        let size = entry.size();
        if kind.is_gnu_longname() || kind.is_gnu_longlink() || kind.is_pax_local_extensions() {
            if size > MAX_META_BYTES {
                result.over_limit = Some(format!(
                    "a {} header of {size} bytes",
                    if kind.is_gnu_longname() { "long name" } else { "pax" }
                ));
                return Ok(result);
            }
            let mut data = Vec::new();
            entry.read_to_end(&mut data).context("failed to read the run's tar stream")?;
            if kind.is_gnu_longname() {
                while data.last() == Some(&0) {
                    data.pop();
                }
                pending.long_name = Some(data);
            } else if kind.is_pax_local_extensions() {
                for ext in tar::PaxExtensions::new(&data).flatten() {
                    match ext.key_bytes() {
                        b"path" => pending.pax_path = Some(ext.value_bytes().to_vec()),
                        // Raw entries do not apply a pax size: such a stream cannot be followed.
                        b"size" => {
                            result.over_limit = Some("an entry whose size is given in a pax header".into());
                            return Ok(result);
                        }
                        _ => {}
                    }
                }
            }
            continue;
        }
        if kind.is_pax_global_extensions() {
            continue;
        }
        let name =
            pending.pax_path.take().or(pending.long_name.take()).unwrap_or_else(|| entry.path_bytes().into_owned());
        taken += 1;
        if taken > rules.max_entries {
            result.over_limit = Some(format!("more than {} entries", rules.max_entries));
            return Ok(result);
        }
        let rel = match checked_relative(&name) {
            Ok(r) if r.as_os_str().is_empty() => continue,
            Ok(r) => r,
            Err(why) => {
                result.refuse(&name, why);
                continue;
            }
        };
        let is_dir = kind == EntryType::Directory;
        if !is_allowed(rules, &rel, is_dir) {
            result.refuse(&name, "not a file a run sends back");
            continue;
        }
        let to = dest.join(&rel);
        match kind {
            EntryType::Directory => {
                if let Err(why) = make_folders(dest, &rel, true) {
                    result.refuse(&name, why);
                }
            }
            EntryType::Regular | EntryType::Continuous => {
                if result.bytes + size > rules.max_bytes {
                    result.over_limit = Some(format!(
                        "{} ({}) and everything after it",
                        escape::line(&rel.display().to_string()),
                        human_bytes(size)
                    ));
                    return Ok(result);
                }
                if let Err(why) = make_folders(dest, &rel, false) {
                    result.refuse(&name, why);
                    continue;
                }
                if std::fs::symlink_metadata(&to).is_ok_and(|m| m.is_dir()) {
                    result.refuse(&name, "a folder of that name is already here");
                    continue;
                }
                let filter = rules.filtered.iter().find(|(n, _)| Path::new(n) == rel).map(|(_, f)| *f);
                let executable = entry.header().mode().unwrap_or(0o644) & 0o111 != 0;
                let written = match filter {
                    Some(f) if size <= 1 << 20 => {
                        let mut text = String::new();
                        let mut raw = Vec::new();
                        entry.read_to_end(&mut raw).context("failed to read the run's tar stream")?;
                        text.push_str(&String::from_utf8_lossy(&raw));
                        write_file(&to, &mut f(&text).as_bytes(), false)
                    }
                    Some(_) => {
                        result
                            .refuse(&name, format!("larger than the 1 MiB such a file may be ({})", human_bytes(size)));
                        continue;
                    }
                    None => write_file(&to, &mut entry, executable),
                };
                let n = written.with_context(|| format!("failed to write {}", to.display()))?;
                result.bytes += n;
                result.files.push(rel);
            }
            EntryType::Symlink => {
                let target = entry.link_name_bytes().map(|t| t.into_owned()).unwrap_or_default();
                result.refuse(
                    &name,
                    format!("a link to `{}`; links are not unpacked", escape::line(&String::from_utf8_lossy(&target))),
                );
            }
            EntryType::Link => result.refuse(&name, "hard links are not unpacked"),
            other => result.refuse(&name, format!("{other:?} entries are not unpacked")),
        }
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALLOWED: &[&str] = &["stdout.log", "exit-status", "env.txt", "out/"];

    fn rules(max_bytes: u64) -> Rules<'static> {
        Rules { allowed: ALLOWED, filtered: &[("env.txt", crate::redact::env_listing)], max_bytes, max_entries: 100 }
    }

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

    fn no_links_under(dir: &Path) {
        for e in walkdir::WalkDir::new(dir) {
            let e = e.unwrap();
            assert!(!e.path_is_symlink(), "a link was created: {}", e.path().display());
        }
    }

    #[test]
    fn plain_files_and_folders_unpack_and_links_are_never_made() {
        let dir = tempfile::tempdir().unwrap();
        let t = tar_with(&[
            ("out/", EntryType::Directory, b"", None),
            ("out/result.bin", EntryType::Regular, b"\x00\x01", None),
            ("stdout.log", EntryType::Regular, b"hello\n", None),
            ("out/same", EntryType::Symlink, b"", Some("result.bin")),
        ]);
        let u = unpack(&t[..], dir.path(), &rules(1 << 20)).unwrap();
        assert_eq!(u.refused, ["out/same: a link to `result.bin`; links are not unpacked"]);
        assert_eq!(std::fs::read(dir.path().join("out/result.bin")).unwrap(), b"\x00\x01");
        assert_eq!(std::fs::read_to_string(dir.path().join("stdout.log")).unwrap(), "hello\n");
        assert_eq!(u.bytes, 8);
        assert!(u.over_limit.is_none());
        no_links_under(dir.path());
    }

    #[test]
    fn escapes_and_names_a_run_does_not_send_are_refused_and_never_written() {
        let outer = tempfile::tempdir().unwrap();
        let dest = outer.path().join("run");
        let t = tar_with(&[
            ("../x", EntryType::Regular, b"evil", None),
            ("/etc/x-cargo-gpu-test", EntryType::Regular, b"evil", None),
            ("out/../../y", EntryType::Regular, b"evil", None),
            ("esc", EntryType::Symlink, b"", Some("..")),
            ("record.toml", EntryType::Regular, b"state = \"finished\"", None),
            ("stdout.log/x", EntryType::Regular, b"evil", None),
            ("hard", EntryType::Link, b"", Some("/etc/passwd")),
            ("out/fifo", EntryType::Fifo, b"", None),
            ("exit-status", EntryType::Regular, b"0\n", None),
        ]);
        let u = unpack(&t[..], &dest, &rules(1 << 20)).unwrap();
        assert_eq!(u.refused_count, 8, "{:?}", u.refused);
        assert!(u.refused[0].starts_with("../x: it contains `..`"), "{:?}", u.refused);
        assert!(u.refused[1].contains("absolute path"), "{:?}", u.refused);
        assert_eq!(u.refused[4], "record.toml: not a file a run sends back");
        assert_eq!(files_under(outer.path()), ["run", "run/exit-status"]);
        assert!(!Path::new("/etc/x-cargo-gpu-test").exists());
    }

    #[test]
    fn a_chain_of_harmless_looking_links_reaches_nothing_outside() {
        // `d -> .`, `e1 -> d/..`, `e2 -> e1/..`: each link text looks harmless, together they climb
        // out. None is made, so the entries that go through them land inside or are refused.
        let outer = tempfile::tempdir().unwrap();
        let victim = outer.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let dest = outer.path().join("a/run");
        std::fs::create_dir_all(&dest).unwrap();
        let t = tar_with(&[
            ("out/d", EntryType::Symlink, b"", Some(".")),
            ("out/e1", EntryType::Symlink, b"", Some("d/..")),
            ("out/e2", EntryType::Symlink, b"", Some("e1/..")),
            ("out/e3", EntryType::Symlink, b"", Some("e2/../../victim")),
            ("out/e3", EntryType::Regular, b"overwritten", None),
            ("out/e2/x", EntryType::Regular, b"inside", None),
            ("stdout.log", EntryType::Symlink, b"", Some("../../victim")),
        ]);
        let u = unpack(&t[..], &dest, &rules(1 << 20)).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        no_links_under(outer.path());
        assert_eq!(u.refused_count, 5, "{:?}", u.refused);
        assert_eq!(std::fs::read_to_string(dest.join("out/e3")).unwrap(), "overwritten");
        assert_eq!(std::fs::read_to_string(dest.join("out/e2/x")).unwrap(), "inside");
    }

    #[test]
    fn links_already_in_the_folder_are_replaced_or_refused_never_followed() {
        let outer = tempfile::tempdir().unwrap();
        let victim = outer.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let dest = outer.path().join("run");
        std::fs::create_dir_all(&dest).unwrap();
        std::os::unix::fs::symlink(&victim, dest.join("stdout.log")).unwrap();
        std::os::unix::fs::symlink(outer.path(), dest.join("out")).unwrap();
        let t = tar_with(&[
            ("stdout.log", EntryType::Regular, b"log", None),
            ("out/victim", EntryType::Regular, b"evil", None),
        ]);
        let u = unpack(&t[..], &dest, &rules(1 << 20)).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(dest.join("stdout.log")).unwrap(), "log");
        assert!(!std::fs::symlink_metadata(dest.join("stdout.log")).unwrap().file_type().is_symlink());
        assert_eq!(u.refused, ["out/victim: `out` is a link here"]);
    }

    #[test]
    fn the_cap_keeps_what_came_first_and_stops_at_the_entry_that_would_pass_it() {
        let dir = tempfile::tempdir().unwrap();
        let big = vec![7u8; 4000];
        let t = tar_with(&[
            ("stdout.log", EntryType::Regular, b"log\n", None),
            ("exit-status", EntryType::Regular, b"0\n", None),
            ("out/big", EntryType::Regular, &big, None),
            ("out/small", EntryType::Regular, b"x", None),
        ]);
        let u = unpack(&t[..], dir.path(), &rules(1000)).unwrap();
        assert_eq!(u.over_limit.as_deref(), Some("out/big (3.9 KiB) and everything after it"));
        assert_eq!(files_under(dir.path()), ["exit-status", "stdout.log"]);
        assert_eq!(u.bytes, 6);
        let many: Vec<(String, EntryType, &[u8], Option<&str>)> =
            (0..150).map(|i| (format!("out/{i}"), EntryType::Regular, &b"x"[..], None)).collect();
        let many: Vec<(&str, EntryType, &[u8], Option<&str>)> =
            many.iter().map(|(n, k, d, l)| (n.as_str(), *k, *d, *l)).collect();
        let dir = tempfile::tempdir().unwrap();
        let u = unpack(&tar_with(&many)[..], dir.path(), &rules(1 << 20)).unwrap();
        assert_eq!(u.over_limit.as_deref(), Some("more than 100 entries"));
        assert_eq!(u.files.len(), 100);
    }

    #[test]
    fn long_names_work_and_oversized_ones_stop_the_unpacking() {
        let dir = tempfile::tempdir().unwrap();
        let long = format!("out/{}f.txt", "folder-name/".repeat(20));
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        b.append_data(&mut h, &long, &b"ok"[..]).unwrap();
        let t = b.into_inner().unwrap();
        let u = unpack(&t[..], dir.path(), &rules(1 << 20)).unwrap();
        assert!(u.refused.is_empty(), "{:?}", u.refused);
        assert_eq!(std::fs::read_to_string(dir.path().join(&long)).unwrap(), "ok");

        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        h.set_entry_type(EntryType::GNULongName);
        h.set_size(MAX_META_BYTES + 1);
        h.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        b.append(&h, std::io::repeat(b'a').take(MAX_META_BYTES + 1)).unwrap();
        let u = unpack(&b.into_inner().unwrap()[..], dir.path(), &rules(1 << 20)).unwrap();
        assert!(u.over_limit.unwrap().contains("long name header"));
    }

    #[test]
    fn names_are_escaped_and_refusals_counted() {
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = (0..60).map(|i| format!("x\x1b[31m\nwarning: forged {i}")).collect();
        let entries: Vec<(&str, EntryType, &[u8], Option<&str>)> =
            names.iter().map(|n| (n.as_str(), EntryType::Regular, &b""[..], None)).collect();
        let u = unpack(&tar_with(&entries)[..], dir.path(), &rules(1 << 20)).unwrap();
        assert_eq!(u.refused_count, 60);
        assert_eq!(u.refused[0], "x\\e[31m\\nwarning: forged 0: not a file a run sends back");
        let lines = u.refusal_lines();
        assert_eq!(lines.len(), MAX_LISTED_REFUSALS + 1);
        assert_eq!(lines.last().unwrap(), "and 10 more entries refused");
    }

    #[test]
    fn env_txt_is_redacted_before_it_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let t = tar_with(&[("env.txt", EntryType::Regular, b"PATH=/bin\nHF_TOKEN=hf_secret_value\n", None)]);
        unpack(&t[..], dir.path(), &rules(1 << 20)).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("env.txt")).unwrap(), "PATH=/bin\nHF_TOKEN=<redacted>\n");
    }
}
