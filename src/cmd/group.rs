//! A streamed child in a process group of its own: how it is started and how it is killed, for
//! [`super::exec`] and for the child started early ([`super::early`]).

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// A streamed child's process group and stdio: its own group, stdin piped only when fed.
pub(super) fn configure(c: &mut Command, has_stdin: bool, inherit_stderr: bool) {
    c.process_group(0);
    c.stdin(if has_stdin { Stdio::piped() } else { Stdio::null() });
    // Piped even when passed through, so a dropped connection cannot garble our terminal.
    c.stdout(Stdio::piped());
    c.stderr(if inherit_stderr { Stdio::inherit() } else { Stdio::piped() });
}

/// Kills a child's whole process group (a hook's own children, `sh -c 'a; b'`, must not outlive
/// it), then the child itself; the caller reaps it.
pub(super) fn kill_group(pid: u32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}
