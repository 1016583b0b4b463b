//! Child processes: the [`Cmd`] type (a command with its purpose, shown as a shell-quoted line,
//! checked, failing with its stderr's tail), its streaming execution, and the one child started
//! before the command line is read.

mod command;
pub mod early;
mod exec;
mod group;

pub use command::{describe_status, quote, tail_lines, Cmd, CmdError};
pub use exec::{line_taker, pass_through, Ended, ExecOptions, Running, Sink, StdinFeed, StdoutTaker};
