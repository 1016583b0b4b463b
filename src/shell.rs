//! What the user reads: cargo-style status lines, warnings and errors on stderr; machine output
//! (`--message-format json`) on stdout. One `Shell` is made from the command line and passed down.

use std::io::{IsTerminal, Write};

/// How machine-readable results are printed on stdout (`--message-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum MessageFormat {
    #[default]
    Human,
    /// One JSON object per artifact on stdout
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

/// `1.5 GiB`, `480 B`: a size as people read it.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[derive(Debug, Clone)]
pub struct Shell {
    verbosity: Verbosity,
    format: MessageFormat,
    color: bool,
}

const GREEN: &str = "\x1b[1;32m";
const CYAN: &str = "\x1b[1;36m";
const YELLOW: &str = "\x1b[1;33m";
const RED: &str = "\x1b[1;31m";
const RESET: &str = "\x1b[0m";

impl Shell {
    pub fn new(verbosity: Verbosity, format: MessageFormat) -> Shell {
        let color = match std::env::var("CARGO_TERM_COLOR").as_deref() {
            Ok("always") => true,
            Ok("never") => false,
            _ => std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        };
        Shell { verbosity, format, color }
    }

    /// Whether text for people on stdout may be coloured: `CARGO_TERM_COLOR` as for stderr, else
    /// only on a terminal and without `NO_COLOR`.
    pub fn stdout_color(&self) -> bool {
        match std::env::var("CARGO_TERM_COLOR").as_deref() {
            Ok("always") => true,
            Ok("never") => false,
            _ => std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    /// Text for people on stdout: a command's result, such as `inspect`'s.
    pub fn out(&self, text: impl AsRef<str>) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", text.as_ref().trim_end_matches('\n'));
    }

    pub fn verbosity(&self) -> Verbosity {
        self.verbosity
    }

    pub fn is_verbose(&self) -> bool {
        self.verbosity == Verbosity::Verbose
    }

    pub fn json(&self) -> bool {
        self.format == MessageFormat::Json
    }

    /// Whether a progress bar may be drawn (a terminal, not quiet, not verbose, not JSON).
    pub fn progress_allowed(&self) -> bool {
        self.verbosity == Verbosity::Normal && std::io::stderr().is_terminal()
    }

    fn line(&self, color: &str, label: &str, message: &str, right_align: bool) {
        // Whatever a message quotes (a hook's output, an ssh error), no secret is shown.
        let message = crate::redact::scrub(message);
        let label = if right_align { format!("{label:>12}") } else { label.to_string() };
        let mut err = std::io::stderr().lock();
        let _ = if self.color {
            writeln!(err, "{color}{label}{RESET} {message}")
        } else {
            writeln!(err, "{label} {message}")
        };
    }

    /// `   Compiling vector_add.cu (sm_90a)`: a step of the work, hidden by `-q`.
    pub fn status(&self, label: &str, message: impl AsRef<str>) {
        if self.verbosity != Verbosity::Quiet {
            self.line(GREEN, label, message.as_ref(), true);
        }
    }

    /// A line shown only with `-v`, such as the command line of a child process.
    pub fn verbose(&self, label: &str, message: impl AsRef<str>) {
        if self.verbosity == Verbosity::Verbose {
            self.line(CYAN, label, message.as_ref(), true);
        }
    }

    /// Plain text on stderr that belongs to the output (tool diagnostics), hidden by nothing.
    pub fn text(&self, message: impl AsRef<str>) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{}", message.as_ref().trim_end());
    }

    pub fn warn(&self, message: impl AsRef<str>) {
        self.line(YELLOW, "warning:", message.as_ref(), false);
    }

    pub fn note(&self, message: impl AsRef<str>) {
        if self.verbosity != Verbosity::Quiet {
            self.line(CYAN, "note:", message.as_ref(), false);
        }
    }

    /// Prints an error with its cause chain, the way cargo does.
    pub fn error(&self, err: &anyhow::Error) {
        self.line(RED, "error:", &err.to_string(), false);
        let causes: Vec<String> = err.chain().skip(1).map(|c| crate::redact::scrub(&c.to_string())).collect();
        if !causes.is_empty() {
            let mut out = std::io::stderr().lock();
            let _ = writeln!(out, "\nCaused by:");
            for cause in causes {
                for (i, line) in cause.lines().enumerate() {
                    let lead = if i == 0 { "  " } else { "    " };
                    let _ = writeln!(out, "{lead}{line}");
                }
            }
        }
    }

    /// One JSON object on stdout, for `--message-format json`.
    pub fn emit_json(&self, value: &serde_json::Value) {
        if self.json() {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{value}");
        }
    }
}
