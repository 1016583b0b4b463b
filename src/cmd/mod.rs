//! Child processes: the [`Cmd`] type (a command with its purpose, shown as a shell-quoted line,
//! checked, failing with its stderr's tail) and its streaming execution.

mod command;
mod exec;

pub use command::{describe_status, quote, tail_lines, Cmd, CmdError};
pub use exec::{pass_through, Ended, ExecOptions, Running, Sink, StdinFeed, StdoutTaker};
