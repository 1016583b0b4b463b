//! `Cmd`: the one way this crate describes and runs a child process. A `Cmd` carries a one-line
//! purpose, shows itself as the exact shell-quoted command line (printed under `-v`; errors show
//! it with secrets masked), checks the exit status by default and, on failure, reports the
//! command, the status and the tail of stderr. Short captured runs live here; streaming ones in
//! `exec.rs`.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};

use anyhow::{Context, Result};

use crate::shell::Shell;

/// How many lines of a failed command's stderr go into the error.
const STDERR_TAIL_LINES: usize = 40;

#[derive(Debug, Clone)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    envs: Vec<(OsString, Option<OsString>)>,
    cwd: Option<PathBuf>,
    purpose: String,
    stdin: Option<Vec<u8>>,
    /// What errors show instead of the command line (a hook by name, not its secrets).
    shown: Option<String>,
}

/// A child process that ran and did not succeed. Typed so that callers can tell a transport
/// failure (ssh's 255) from the remote program's own exit code.
#[derive(Debug)]
pub struct CmdError {
    pub purpose: String,
    pub command: String,
    pub status: ExitStatus,
    pub stderr_tail: String,
}

impl fmt::Display for CmdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = format!("failed to {}: `{}` {}", self.purpose, self.command, describe_status(self.status));
        if !self.stderr_tail.trim().is_empty() {
            text.push_str(&format!("\n--- stderr\n{}", self.stderr_tail.trim_end()));
        }
        // A hook's own output may echo the key it was given.
        f.write_str(&crate::redact::scrub(&text))
    }
}

impl std::error::Error for CmdError {}

pub fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => format!("ended with {status}"),
    }
}

impl Cmd {
    /// A command and why it is run, phrased to follow "failed to": `Cmd::new("nvcc", "query the nvcc version")`.
    pub fn new(program: impl AsRef<OsStr>, purpose: impl Into<String>) -> Cmd {
        Cmd {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            envs: Vec::new(),
            cwd: None,
            purpose: purpose.into(),
            stdin: None,
            shown: None,
        }
    }

    /// Shows the command as `text` in errors and records; the full line still prints under `-v`.
    pub fn shown_as(mut self, text: impl Into<String>) -> Cmd {
        self.shown = Some(text.into());
        self
    }

    /// The command as errors and records show it: [`Cmd::shown_as`]'s text, else the command line
    /// with secrets masked (see [`crate::redact::words`]).
    pub fn public_line(&self) -> String {
        if let Some(s) = &self.shown {
            return crate::redact::scrub(s);
        }
        let words: Vec<String> =
            std::iter::once(&self.program).chain(&self.args).map(|w| w.to_string_lossy().into_owned()).collect();
        crate::redact::words(&words).join(" ")
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Cmd {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Cmd {
        self.envs.push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Cmd {
        self.envs.push((key.as_ref().to_owned(), None));
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Cmd {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    pub fn stdin_bytes(mut self, bytes: impl Into<Vec<u8>>) -> Cmd {
        self.stdin = Some(bytes.into());
        self
    }

    pub fn program(&self) -> &OsStr {
        &self.program
    }

    pub fn get_args(&self) -> &[OsString] {
        &self.args
    }

    /// Whether it is only a program and its arguments: no environment change, folder or input.
    pub fn is_plain(&self) -> bool {
        self.envs.is_empty() && self.cwd.is_none() && self.stdin.is_none()
    }

    /// The environment variables this command removes from the child's environment.
    pub fn removed_envs(&self) -> Vec<&OsStr> {
        self.envs.iter().filter(|(_, v)| v.is_none()).map(|(k, _)| k.as_os_str()).collect()
    }

    pub fn purpose(&self) -> &str {
        &self.purpose
    }

    /// The `std::process::Command` this describes.
    fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args);
        for (k, v) in &self.envs {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        if let Some(dir) = &self.cwd {
            c.current_dir(dir);
        }
        c
    }

    pub(super) fn log(&self, shell: Option<&Shell>) {
        if let Some(shell) = shell {
            shell.verbose("Running", format!("`{self}`"));
        }
    }

    fn spawn_error(&self, err: std::io::Error) -> anyhow::Error {
        let hint = if err.kind() == std::io::ErrorKind::NotFound {
            format!(": {} was not found", self.program.to_string_lossy())
        } else {
            String::new()
        };
        anyhow::Error::new(err).context(format!(
            "failed to {}: could not start `{}`{hint}",
            self.purpose,
            self.public_line()
        ))
    }

    /// Runs to completion capturing stdout and stderr; does not check the status.
    pub fn output_unchecked(&self, shell: Option<&Shell>) -> Result<Output> {
        self.log(shell);
        let mut c = self.command();
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        c.stdin(if self.stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        let mut child = c.spawn().map_err(|e| self.spawn_error(e))?;
        if let Some(bytes) = &self.stdin {
            let mut stdin = child.stdin.take().expect("stdin was piped");
            let bytes = bytes.clone();
            // A writer thread, so a child that fills its stdout before reading stdin cannot deadlock us.
            let writer = std::thread::spawn(move || stdin.write_all(&bytes));
            let out = child.wait_with_output();
            let _ = writer.join();
            return out.with_context(|| format!("failed to {}: lost `{}`", self.purpose, self.public_line()));
        }
        child.wait_with_output().with_context(|| format!("failed to {}: lost `{}`", self.purpose, self.public_line()))
    }

    /// Runs to completion capturing output; a non-zero status is a [`CmdError`].
    pub fn output(&self, shell: Option<&Shell>) -> Result<Output> {
        let out = self.output_unchecked(shell)?;
        if !out.status.success() {
            return Err(self.failure(out.status, &out.stderr).into());
        }
        Ok(out)
    }

    /// Runs to completion and returns stdout as text; a non-zero status is a [`CmdError`].
    pub fn read(&self, shell: Option<&Shell>) -> Result<String> {
        let out = self.output(shell)?;
        String::from_utf8(out.stdout)
            .with_context(|| format!("failed to {}: `{}` printed non-UTF-8 output", self.purpose, self.public_line()))
    }

    /// Spawns with the given stdio set up by the caller (see `exec.rs`).
    pub(super) fn spawn(&self, shell: Option<&Shell>, configure: impl FnOnce(&mut Command)) -> Result<Child> {
        self.log(shell);
        let mut c = self.command();
        configure(&mut c);
        c.spawn().map_err(|e| self.spawn_error(e))
    }

    /// The error for this command having ended with `status`, keeping the tail of its stderr.
    pub fn failure(&self, status: ExitStatus, stderr: &[u8]) -> CmdError {
        CmdError {
            purpose: self.purpose.clone(),
            command: self.public_line(),
            status,
            stderr_tail: tail_lines(&String::from_utf8_lossy(stderr), STDERR_TAIL_LINES),
        }
    }
}

/// The last `n` lines of `text`.
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// One shell word, quoted only when it must be (`arch=compute_90a,code=sm_90a` stays bare): the
/// same quoting as every remote shell word, see [`crate::quote::quote`].
pub fn quote(word: &OsStr) -> String {
    crate::quote::quote(&word.to_string_lossy())
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        if let Some(dir) = &self.cwd {
            write!(f, "cd {} && ", quote(dir.as_os_str()))?;
        }
        for (k, v) in &self.envs {
            if let Some(v) = v {
                write!(f, "{}={} ", k.to_string_lossy(), quote(v))?;
            }
        }
        for word in std::iter::once(&self.program).chain(&self.args) {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            f.write_str(&quote(word))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_as_a_shell_command_line() {
        let c = Cmd::new("nvcc", "compile").args(["-o", "out dir/x.cubin", "it's.cu"]).env("A", "b c");
        assert_eq!(c.to_string(), r#"A='b c' nvcc -o 'out dir/x.cubin' 'it'\''s.cu'"#);
    }

    #[test]
    fn failure_reports_command_status_and_stderr_tail() {
        let c = Cmd::new("sh", "run a failing script").args(["-c", "echo one >&2; echo two >&2; exit 3"]);
        let err = c.output(None).unwrap_err();
        let cmd_err = err.downcast_ref::<CmdError>().expect("typed error");
        assert_eq!(cmd_err.status.code(), Some(3));
        let text = err.to_string();
        assert!(text.starts_with("failed to run a failing script: `sh -c"), "{text}");
        assert!(text.contains("exited with status 3"), "{text}");
        assert!(text.contains("one\ntwo"), "{text}");
    }

    #[test]
    fn missing_program_names_itself() {
        let err = Cmd::new("no-such-program-xyz", "do nothing").output(None).unwrap_err();
        assert!(format!("{err:#}").contains("no-such-program-xyz was not found"), "{err:#}");
    }

    #[test]
    fn stdin_is_fed_and_output_captured() {
        let out = Cmd::new("cat", "echo stdin").stdin_bytes(b"hello".to_vec()).read(None).unwrap();
        assert_eq!(out, "hello");
    }

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(quote(OsStr::new("arch=compute_90a,code=sm_90a")), "arch=compute_90a,code=sm_90a");
        assert_eq!(quote(OsStr::new("")), "''");
        assert_eq!(quote(OsStr::new("$(x)")), "'$(x)'");
        assert_eq!(quote(OsStr::new("a b")), "'a b'");
    }

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail_lines("a", 5), "a");
    }
}
