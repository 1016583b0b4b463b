//! A child started before the command line is read: `cargo gpu build` starts the runner's cargo
//! build as its first act, from the command that the last run with the same command line,
//! folder, environment and `cargo-gpu` computed, while those files it was computed from are
//! unchanged (see [`crate::cache::recall`]). Reading the command line and the project then
//! overlaps cargo's own start instead of delaying it.
//!
//! The early child is only a guess: [`adopt`] hands it over when the command computed the usual
//! way is the very same, and otherwise kills its process group and reaps it, so that the command
//! is then started as it always is. [`discard`] does the same to a child nobody adopted.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Child;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::cmd::command::Cmd;
use crate::cmd::group::{configure, kill_group};

/// The cache entries' kind (see [`crate::cache`]).
const KIND: &str = "early";

/// A command as remembered: one with no environment changes, folder or input of its own (the
/// runner's cargo build), started with stdin closed, stdout piped and stderr inherited. Words in
/// UTF-8 only: they are read back as plain JSON strings, quickly, before anything else runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Remembered {
    program: String,
    args: Vec<String>,
}

impl Remembered {
    /// `None` for a command that cannot be remembered.
    fn of(cmd: &Cmd) -> Option<Remembered> {
        let word = |w: &std::ffi::OsStr| w.to_str().map(str::to_string);
        let args = cmd.get_args().iter().map(|a| word(a)).collect::<Option<_>>()?;
        Some(Remembered { program: word(cmd.program())?, args }).filter(|_| cmd.is_plain())
    }
}

struct Early {
    /// The digest of this run's command line, folder, environment and executable.
    key: String,
    /// What the last run with the same key remembered.
    remembered: Option<Remembered>,
    /// The child started from it, while nobody has adopted or discarded it.
    child: Option<Child>,
}

static EARLY: Mutex<Option<Early>> = Mutex::new(None);

/// Everything the command computed from `argv` can depend on besides the remembered files: the
/// command line, the folder, the whole environment and this very executable, as a digest (the
/// environment may hold secrets; the cache holds only its digest).
fn key(argv: &[OsString]) -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let mut text = format!("{}\n{:?}\n", env!("CARGO_PKG_VERSION"), crate::cache::file_stamp(&exe)?);
    text.push_str(&format!("{:?}\n", std::env::current_dir().ok()?));
    for arg in argv {
        text.push_str(&format!("{arg:?}\n"));
    }
    for (k, v) in std::env::vars_os() {
        text.push_str(&format!("{k:?}={v:?}\n"));
    }
    Some(crate::digest::sha256_hex(text.as_bytes()))
}

/// Starts the command that the last run with this command line remembered, if any and if the
/// files it was computed from are unchanged. The Ctrl-C handler must be installed first: the
/// child, in its own process group, is stopped by whoever adopts or discards it.
pub fn start(argv: &[OsString]) {
    let Some(key) = key(argv) else { return };
    let remembered: Option<Remembered> = crate::cache::recall(KIND, &key);
    let child = remembered.as_ref().and_then(|r| {
        Cmd::new(&r.program, "start the remembered command early")
            .args(&r.args)
            .spawn(None, |c| configure(c, false, true))
            .ok()
    });
    *EARLY.lock().expect("no panics while held") = Some(Early { key, remembered, child });
}

/// The early child, if it runs `cmd` exactly; an early child that runs anything else is killed
/// and reaped first. `inputs`: the files `cmd` was computed from, remembered with it for the next
/// run with the same command line.
pub(super) fn adopt(cmd: &Cmd, inputs: &[PathBuf]) -> Option<Child> {
    let mut early = EARLY.lock().expect("no panics while held");
    let early = early.as_mut()?;
    let wanted = Remembered::of(cmd);
    let child = early.child.take();
    let adopted = match child {
        Some(child) if wanted.is_some() && early.remembered == wanted => Some(child),
        Some(child) => {
            stop(child);
            None
        }
        None => None,
    };
    if let Some(wanted) = wanted.filter(|w| early.remembered.as_ref() != Some(w)) {
        crate::cache::remember(KIND, &early.key, inputs, wanted);
    }
    adopted
}

/// Kills and reaps an early child that was not adopted.
pub fn discard() {
    let child = EARLY.lock().expect("no panics while held").as_mut().and_then(|e| e.child.take());
    if let Some(child) = child {
        stop(child);
    }
}

fn stop(mut child: Child) {
    kill_group(child.id());
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plain_command_is_remembered() {
        let plain = Cmd::new("cargo", "build").args(["build", "--bin", "r"]);
        let r = Remembered::of(&plain).expect("a program and its arguments");
        assert_eq!((r.program.as_str(), r.args.len()), ("cargo", 3));
        assert_eq!(Remembered::of(&plain.clone().env("A", "b")), None);
        assert_eq!(Remembered::of(&plain.clone().current_dir("/p")), None);
        assert_eq!(Remembered::of(&plain.stdin_bytes(b"x".to_vec())), None);
    }
}
