//! A cuda-gdb batch session (`-ex run -ex bt -ex 'info locals'`) after a kernel fault: the CUDA
//! exception it stopped at (`CUDA Exception: Warp Illegal Address`), the kernel, block and thread
//! it switched focus to, the backtrace (`#0  0x... in scale_rows<<<...>>> (...) at x.cu:9`) and
//! the locals that follow it.

use crate::escape;

/// What the session shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Session {
    /// `CUDA Exception: Warp Illegal Address`.
    pub exception: Option<String>,
    /// `CUDA kernel 0, grid 1, block (1,0,0), thread (0,0,0), device 0, sm 0, warp 0, lane 0`.
    pub focus: Option<String>,
    /// The frames, `#0` first.
    pub backtrace: Vec<String>,
    /// `i = 256`, the lines after the backtrace.
    pub locals: Vec<String>,
}

impl Session {
    /// The `file:line` of the innermost frame that has one.
    pub fn line(&self) -> Option<String> {
        self.backtrace.iter().find_map(|f| {
            let at = f.rsplit_once(" at ")?.1.trim();
            let (file, line) = at.rsplit_once(':')?;
            (!file.is_empty() && !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit())).then(|| at.to_string())
        })
    }
}

const MAX_LINES: usize = 64;

pub fn parse(text: &str) -> Session {
    let mut s = Session::default();
    let mut after_bt = false;
    for raw in text.lines() {
        let line = raw.trim();
        if let Some(i) = line.find("CUDA Exception: ") {
            s.exception.get_or_insert_with(|| escape::line(line[i..].trim_end_matches('.')));
        } else if let Some(focus) = line.strip_prefix("[Switching focus to ").and_then(|f| f.strip_suffix(']')) {
            s.focus.get_or_insert_with(|| escape::line(focus));
        } else if line.starts_with('#') && line[1..].starts_with(|c: char| c.is_ascii_digit()) {
            if s.backtrace.len() < MAX_LINES {
                s.backtrace.push(escape::line(line));
            }
            after_bt = true;
        } else if after_bt && line.contains(" = ") && s.locals.len() < MAX_LINES {
            s.locals.push(escape::line(line));
        } else if after_bt && !raw.starts_with(' ') && !line.is_empty() && !s.locals.is_empty() {
            after_bt = false;
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like cuda-gdb 13's batch session on a kernel that writes out of bounds.
    const SESSION: &str = "\
[Thread debugging using libthread_db enabled]
[New Thread 0x7ffff5bff000 (LWP 4243)]
[Detaching after fork from child process 4244]

CUDA Exception: Warp Illegal Address
The exception was triggered at PC 0x7fffd3a8f4d0  scale_rows  (scale_rows.cu:9)

Thread 1 \"fault-oob\" received signal CUDA_EXCEPTION_14, Warp Illegal Address.
[Switching focus to CUDA kernel 0, grid 1, block (1,0,0), thread (0,0,0), device 0, sm 2, warp 0, lane 0]
0x00007fffd3a8f4e0 in scale_rows<<<(4096,1,1),(256,1,1)>>> (in=0x7fffc6000000, out=0x7fffc6400000, n=1048576) at /home/dev/fault-oob/kernels/scale_rows.cu:9
9\t        out[i * n] = 2.0f * in[i]; // FAULT HERE
#0  0x00007fffd3a8f4e0 in scale_rows<<<(4096,1,1),(256,1,1)>>> (in=0x7fffc6000000, out=0x7fffc6400000, n=1048576) at /home/dev/fault-oob/kernels/scale_rows.cu:9
i = 256
";

    #[test]
    fn the_backtrace_the_line_and_the_locals() {
        let s = parse(SESSION);
        assert_eq!(s.exception.as_deref(), Some("CUDA Exception: Warp Illegal Address"));
        assert!(s.focus.as_deref().unwrap().starts_with("CUDA kernel 0, grid 1, block (1,0,0), thread (0,0,0)"));
        assert_eq!(s.backtrace.len(), 1);
        assert_eq!(s.line().as_deref(), Some("/home/dev/fault-oob/kernels/scale_rows.cu:9"));
        assert_eq!(s.locals, ["i = 256"]);
        let hostile = parse("#0  k () at /x\x1b[2J.cu:3\n");
        assert_eq!(hostile.line().as_deref(), Some("/x\\e[2J.cu:3"));
        assert_eq!(parse("No stack.\n"), Session::default());
    }
}
