//! File-system steps that never follow a link cargo-gpu did not make: whole-file writes through a
//! freshly created temp file (`O_EXCL`, so never an existing file or link) renamed into place
//! (which replaces a link instead of writing through it), reads that refuse links, and private
//! folders (ours, 0700, not a link) checked before every use. Also the advisory lock that orders
//! cargo-gpu processes sharing one such folder.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// Writes what `contents` reads to `path` as a whole: a new temp file beside it (created with
/// `O_EXCL`, so never an existing file or link), given `mode`, then renamed into place. A link at
/// `path` is replaced, never written through; a reader sees the old file or the new one.
/// Returns the bytes written.
pub fn write_new(path: &Path, contents: &mut dyn Read, mode: u32) -> std::io::Result<u64> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut tmp = tempfile::Builder::new().prefix(&format!(".{name}.")).suffix(".tmp").tempfile_in(dir)?;
    let n = std::io::copy(contents, tmp.as_file_mut())?;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode))?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(n)
}

/// [`write_new`] of a byte string, mode 0644.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    write_new(path, &mut &contents[..], 0o644).with_context(|| format!("failed to write {}", path.display()))?;
    Ok(())
}

/// Writes `contents` unless the file already holds exactly that; returns whether it wrote.
pub fn write_if_changed(path: &Path, contents: &[u8]) -> Result<bool> {
    if read_no_follow(path).ok().as_deref() == Some(contents) {
        return Ok(false);
    }
    write_atomic(path, contents)?;
    Ok(true)
}

/// Opens a file for reading; a link there is an error, not followed.
pub fn open_no_follow(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new().read(true).custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32).open(path)
}

/// Reads a whole file; a link there is an error, not followed.
pub fn read_no_follow(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut f = open_no_follow(path)?;
    let mut v = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut v)?;
    Ok(v)
}

/// Makes `dir` (and its parents) if missing, mode 0700, then checks that it is private: a real
/// folder, not a link, owned by us, with no access for group or others. `what` names it in errors.
pub fn private_dir(dir: &Path, what: &str) -> Result<PathBuf> {
    if std::fs::symlink_metadata(dir).is_err() {
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("failed to create the {what} {}", parent.display()))?;
        }
        use std::os::unix::fs::DirBuilderExt;
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            // Another cargo-gpu made it at the same moment: it is checked below like any other.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("failed to create the {what} {}", dir.display())),
        }
    }
    let fix = "remove it (cargo-gpu makes a private one) or point CARGO_GPU_SSH_CONTROL_DIR at a private folder";
    check_private(dir, what, fix)?;
    Ok(dir.to_path_buf())
}

/// The check of [`private_dir`], without creating anything; `fix` says what to do about a folder
/// that fails it.
pub fn check_private(dir: &Path, what: &str, fix: &str) -> Result<()> {
    let m =
        std::fs::symlink_metadata(dir).with_context(|| format!("failed to inspect the {what} {}", dir.display()))?;
    if m.file_type().is_symlink() {
        bail!("the {what} {} is a link; cargo-gpu uses only a private folder of its own: {fix}", dir.display());
    }
    if !m.is_dir() {
        bail!("the {what} {} is not a folder: {fix}", dir.display());
    }
    let me = rustix::process::geteuid().as_raw();
    if m.uid() != me {
        bail!(
            "the {what} {} belongs to user id {}, not to you (user id {me}); another user could read or replace what cargo-gpu keeps there: {fix}",
            dir.display(),
            m.uid()
        );
    }
    if m.mode() & 0o077 != 0 {
        bail!(
            "the {what} {} has mode {:03o}, so other users can reach into it; cargo-gpu needs it private (700): {fix}",
            dir.display(),
            m.mode() & 0o777
        );
    }
    Ok(())
}

/// An exclusive advisory lock on a file, held until dropped.
pub struct Lock {
    _file: File,
}

/// Takes the lock on `path` (created if missing), waiting for other holders; gives up with an
/// error when `give_up()` says so (Ctrl-C), checked every few milliseconds.
pub fn lock(path: &Path, mut give_up: impl FnMut() -> Result<()>) -> Result<Lock> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .with_context(|| format!("failed to open the lock file {}", path.display()))?;
    loop {
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(Lock { _file: file }),
            Err(rustix::io::Errno::WOULDBLOCK) | Err(rustix::io::Errno::INTR) => {
                give_up()?;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                return Err(std::io::Error::from(e)).with_context(|| format!("failed to lock {}", path.display()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_a_link_instead_of_following_it() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let path = dir.path().join("record.toml");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert!(!std::fs::symlink_metadata(&path).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert!(!write_if_changed(&path, b"new").unwrap());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "no temp file left behind");
    }

    #[test]
    fn reads_refuse_links() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("f"), dir.path().join("l")).unwrap();
        assert_eq!(read_no_follow(&dir.path().join("f")).unwrap(), b"x");
        assert!(read_no_follow(&dir.path().join("l")).is_err());
    }

    #[test]
    fn private_folders_are_made_0700_and_open_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = private_dir(&dir.path().join("a/b"), "control folder").unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o700);
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = private_dir(&open, "control folder").unwrap_err().to_string();
        assert!(err.contains("has mode 777") && err.contains("private (700)"), "{err}");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(private_dir(&link, "control folder").unwrap_err().to_string().contains("is a link"));
    }

    #[test]
    fn a_lock_waits_for_its_holder_or_gives_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l");
        let held = lock(&path, || Ok(())).unwrap();
        let mut tries = 0;
        let err = lock(&path, || {
            tries += 1;
            if tries > 3 {
                bail!("gave up")
            }
            Ok(())
        });
        assert!(err.is_err());
        drop(held);
        assert!(lock(&path, || bail!("not needed")).is_ok());
    }
}
