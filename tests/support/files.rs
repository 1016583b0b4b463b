//! Files a test writes and reads: executables and scripts, a copied folder, what a folder holds,
//! and the checks every folder a remote wrote into must pass (no links, no secret).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Writes an executable file holding `text` (its folder made first).
pub fn write_exe(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Writes an executable `sh` script.
pub fn write_script(path: &Path, body: &str) {
    write_exe(path, &format!("#!/bin/sh\n{body}"));
}

/// The file's text; empty when it is not there (yet).
pub fn read_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Copies the folder `src` to `dst`, leaving out `target` folders.
pub fn copy_dir(src: &Path, dst: &Path) {
    for entry in walkdir::WalkDir::new(src).into_iter().filter_entry(|e| e.file_name() != "target") {
        let entry = entry.unwrap();
        let to = dst.join(entry.path().strip_prefix(src).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&to).unwrap();
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
}

/// Everything under `dir` that `keep` takes, relative, sorted.
fn listing(dir: &Path, keep: impl Fn(&walkdir::DirEntry) -> bool) -> Vec<String> {
    let mut v: Vec<String> = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .flatten()
        .filter(keep)
        .map(|e| e.path().strip_prefix(dir).unwrap().display().to_string())
        .collect();
    v.sort();
    v
}

/// Every file under `dir`, relative, sorted; none when `dir` is not there.
pub fn tree(dir: &Path) -> Vec<String> {
    listing(dir, |e| e.file_type().is_file())
}

/// Every file, folder and link under `dir`, relative, sorted.
pub fn paths_under(dir: &Path) -> Vec<String> {
    listing(dir, |_| true)
}

/// Every file (or link) under `dir` whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| !e.file_type().is_dir())
        .filter(|e| std::fs::read(e.path()).is_ok_and(|b| String::from_utf8_lossy(&b).contains(needle)))
        .map(|e| e.into_path())
        .collect()
}

/// No link anywhere under `dir`: cargo-gpu never makes one from what a remote sends.
#[track_caller]
pub fn assert_no_links(dir: &Path) {
    for e in walkdir::WalkDir::new(dir) {
        let e = e.unwrap();
        assert!(!e.path_is_symlink(), "a link was made: {}", e.path().display());
    }
}
