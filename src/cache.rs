//! A small on-disk memo for answers that are slow to ask and rarely change (`cargo metadata`,
//! `nvcc --version`): each entry is keyed by a string and the size and modification time of the
//! files the answer depends on, so it is used only while none of them changed. A cache that
//! cannot be read or written is simply not used.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::digest::sha256_hex;

#[derive(Serialize, Deserialize)]
struct Entry<T> {
    key: String,
    stamps: Vec<(PathBuf, Option<(u64, u128)>)>,
    value: T,
}

/// Size and modification time of a path, `None` when it does not exist.
pub fn file_stamp(path: &Path) -> Option<(u64, u128)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?.duration_since(UNIX_EPOCH).ok()?.as_nanos()))
}

/// `$CARGO_GPU_CACHE_DIR`, else the user's cache folder (`~/.cache/cargo-gpu`).
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("CARGO_GPU_CACHE_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    use etcetera::BaseStrategy;
    etcetera::choose_base_strategy().ok().map(|s| s.cache_dir().join("cargo-gpu"))
}

fn entry_path(kind: &str, key: &str) -> Option<PathBuf> {
    Some(cache_dir()?.join(format!("{kind}-{}.json", &sha256_hex(key.as_bytes())[..16])))
}

/// Returns the remembered value for `key` if every file in `deps` is unchanged, else computes,
/// remembers and returns it.
pub fn memo<T, F>(kind: &str, key: &str, deps: &[PathBuf], compute: F) -> anyhow::Result<T>
where
    T: Serialize + DeserializeOwned,
    F: FnOnce() -> anyhow::Result<T>,
{
    let stamps: Vec<(PathBuf, Option<(u64, u128)>)> = deps.iter().map(|p| (p.clone(), file_stamp(p))).collect();
    let path = entry_path(kind, key);
    if let Some(path) = &path {
        if let Some(e) = std::fs::read(path).ok().and_then(|b| serde_json::from_slice::<Entry<T>>(&b).ok()) {
            if e.key == key && e.stamps == stamps {
                return Ok(e.value);
            }
        }
    }
    let value = compute()?;
    if let Some(path) = &path {
        let entry = Entry { key: key.to_string(), stamps, value };
        if let Ok(bytes) = serde_json::to_vec(&entry) {
            write_entry(path, &bytes);
        }
        return Ok(entry.value);
    }
    Ok(value)
}

/// The value remembered for `key` by [`remember`], if none of the files it was stamped with has
/// changed since: a look-up that computes nothing on a miss.
pub fn recall<T: DeserializeOwned>(kind: &str, key: &str) -> Option<T> {
    let bytes = std::fs::read(entry_path(kind, key)?).ok()?;
    let e: Entry<T> = serde_json::from_slice(&bytes).ok()?;
    let unchanged = e.key == key && e.stamps.iter().all(|(p, stamp)| file_stamp(p) == *stamp);
    unchanged.then_some(e.value)
}

/// Remembers `value` for `key` while the files in `deps` stay as they are now (see [`recall`]).
pub fn remember<T: Serialize>(kind: &str, key: &str, deps: &[PathBuf], value: T) {
    let Some(path) = entry_path(kind, key) else { return };
    let stamps = deps.iter().map(|p| (p.clone(), file_stamp(p))).collect();
    if let Ok(bytes) = serde_json::to_vec(&Entry { key: key.to_string(), stamps, value }) {
        write_entry(&path, &bytes);
    }
}

/// Writes an entry whole (a reader never sees half of one); a cache that cannot be written is
/// not used.
fn write_entry(path: &Path, bytes: &[u8]) {
    let _ = std::fs::create_dir_all(path.parent().expect("cache files live in a folder"));
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&tmp, bytes).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_only_while_the_files_are_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var("CARGO_GPU_CACHE_DIR", dir.path().join("cache"));
        let dep = dir.path().join("dep");
        std::fs::write(&dep, "a").unwrap();
        let deps = vec![dep.clone()];
        let calls = std::cell::Cell::new(0);
        let get = || {
            memo("t", "k", &deps, || {
                calls.set(calls.get() + 1);
                Ok(calls.get())
            })
            .unwrap()
        };
        assert_eq!(get(), 1);
        assert_eq!(get(), 1, "unchanged dependency: remembered");
        std::fs::write(&dep, "bb").unwrap();
        assert_eq!(get(), 2, "changed dependency: recomputed");
        assert_eq!(memo("t", "other key", &deps, || Ok(9)).unwrap(), 9);

        // In the same test: the cache folder is process-wide.
        assert_eq!(recall::<u32>("r", "k"), None, "nothing remembered yet");
        remember("r", "k", &[dep.clone(), dir.path().join("missing")], 7u32);
        assert_eq!(recall::<u32>("r", "k"), Some(7));
        assert_eq!(recall::<u32>("r", "other key"), None);
        std::fs::write(dir.path().join("missing"), "now here").unwrap();
        assert_eq!(recall::<u32>("r", "k"), None, "a file that appeared is a change");
    }
}
