//! Who uses a remote's instance right now, so that several cargo-gpu processes can share one:
//! the first to arrive runs `start`, the last to leave runs `stop` (and closes the ssh master),
//! and nobody stops an instance under another's run. Each process holds an entry (its pid and
//! start time, so a reused pid is not mistaken for it) in a folder beside the ssh control
//! sockets; a lock orders arrivals and departures. A process that died without leaving
//! (`kill -9`, a crashed laptop) no longer counts.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::config::Remote;
use crate::safe_fs::{self, Lock};

/// This process as an entry name: `<pid>-<start time>`.
fn entry_name(pid: u32) -> Option<String> {
    Some(format!("{pid}-{}", start_time(pid)?))
}

/// A process's start time in clock ticks since boot (field 22 of `/proc/<pid>/stat`), which
/// tells a live process from a later one that got the same pid.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may itself hold spaces or parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether an entry names a process that is still alive.
fn is_live(entry: &str) -> bool {
    let Some((pid, started)) = entry.split_once('-') else { return false };
    match (pid.parse::<u32>(), started.parse::<u64>()) {
        (Ok(pid), Ok(started)) => start_time(pid) == Some(started),
        _ => false,
    }
}

/// The users of one remote's instance.
#[derive(Debug)]
pub struct Lease {
    users: PathBuf,
    lock: PathBuf,
    me: String,
}

impl Lease {
    /// The lease of `remote`'s instance, kept under the private folder `dir`.
    pub fn new(dir: &Path, remote: &Remote) -> Result<Lease> {
        let key = format!("{}\n{:?}\n{:?}", remote.name, remote.host, remote.start);
        let hash = &crate::digest::sha256_hex(key.as_bytes())[..16];
        let me = entry_name(std::process::id()).context("failed to read this process's start time from /proc")?;
        Ok(Lease {
            users: dir.join(format!("instance-{hash}.users")),
            lock: dir.join(format!("instance-{hash}.lock")),
            me,
        })
    }

    /// Takes the lock that orders arrivals and departures; `give_up` is asked while waiting.
    pub fn lock(&self, give_up: impl FnMut() -> Result<()>) -> Result<Lock> {
        safe_fs::lock(&self.lock, give_up)
    }

    /// The live users other than this process (dead ones are removed on the way). Call it
    /// holding the lock.
    pub fn others(&self, _lock: &Lock) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(&self.users) else { return Vec::new() };
        let mut live = Vec::new();
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == self.me {
                continue;
            }
            if is_live(&name) {
                live.push(name);
            } else {
                let _ = std::fs::remove_file(e.path());
            }
        }
        live.sort();
        live
    }

    /// Registers this process as a user. Call it holding the lock.
    pub fn join(&self, _lock: &Lock) -> Result<()> {
        safe_fs::private_dir(&self.users, "instance users folder")?;
        safe_fs::write_atomic(&self.users.join(&self.me), b"")
    }

    /// Unregisters this process. Call it holding the lock.
    pub fn leave(&self, _lock: &Lock) {
        let _ = std::fs::remove_file(self.users.join(&self.me));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(name: &str) -> Remote {
        let mut r = Remote::local();
        r.name = name.into();
        r
    }

    #[test]
    fn only_live_processes_count_and_a_reused_pid_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let lease = Lease::new(dir.path(), &remote("h100")).unwrap();
        let lock = lease.lock(|| Ok(())).unwrap();
        lease.join(&lock).unwrap();
        assert!(lease.others(&lock).is_empty(), "this process is not an other");
        // A live process (our parent), a dead one, and our own pid with another start time.
        let parent = rustix::process::getppid().map(|p| p.as_raw_nonzero().get() as u32).unwrap_or(1);
        let parent_entry = entry_name(parent).unwrap();
        let me = std::process::id();
        for name in [parent_entry.clone(), "999999999-1".to_string(), format!("{me}-1")] {
            std::fs::write(lease.users.join(name), "").unwrap();
        }
        assert_eq!(lease.others(&lock), [parent_entry]);
        assert!(!lease.users.join("999999999-1").exists(), "dead entries are cleared");
        lease.leave(&lock);
        assert!(!lease.users.join(&lease.me).exists());
        let other = Lease::new(dir.path(), &remote("b200")).unwrap();
        assert!(other.others(&lock).is_empty(), "each remote has its own users");
    }

    #[test]
    fn start_time_reads_past_a_command_name_with_spaces_and_parentheses() {
        assert!(start_time(std::process::id()).is_some());
        assert!(is_live(&entry_name(std::process::id()).unwrap()));
        assert!(!is_live("garbage"));
    }
}
