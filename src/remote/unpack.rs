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
use crate::safe_fs::write_new;
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
                        write_new(&to, &mut f(&text).as_bytes(), 0o644)
                    }
                    Some(_) => {
                        result
                            .refuse(&name, format!("larger than the 1 MiB such a file may be ({})", human_bytes(size)));
                        continue;
                    }
                    None => write_new(&to, &mut entry, if executable { 0o755 } else { 0o644 }),
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
