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
    /// `scale_rows.cu:9`, from `The exception was triggered at PC 0x... scale_rows (scale_rows.cu:9)`:
    /// the faulting instruction's line (the frames show where the warp stopped, often later).
    pub triggered_at: Option<String>,
    /// The frames, `#0` first.
    pub backtrace: Vec<String>,
    /// `i = 256`, the lines after the backtrace.
    pub locals: Vec<String>,
}

impl Session {
    /// The `file:line` of the faulting instruction, else of the innermost frame that has one.
    pub fn line(&self) -> Option<String> {
        if let Some(at) = &self.triggered_at {
            return Some(at.clone());
        }
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
        } else if let Some(rest) = line.strip_prefix("The exception was triggered at PC ") {
            let at = rest.rsplit_once('(').and_then(|(_, at)| at.strip_suffix(')')).filter(|at| at.contains(':'));
            if let Some(at) = at {
                s.triggered_at.get_or_insert_with(|| escape::line(at));
            }
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

    /// As cuda-gdb 13.0 printed it on an H200 for the fault-oob fixture (the faulting line is 9;
    /// the warp stopped at 11).
    const SESSION: &str = "\
[Thread debugging using libthread_db enabled]
[Detaching after fork from child process 6092]
[New Thread 0x7fffeadde6c0 (LWP 6100)]
loaded scale_rows.sm_90a.cubin on NVIDIA H200 (compute capability 9.0, driver CUDA 13.0)

CUDA Exception: Warp Illegal Address
The exception was triggered at PC 0x7ffddb7a1c00  scale_rows  (scale_rows.cu:9)

Thread 1 \"fault-oob\" received signal CUDA_EXCEPTION_14, Warp Illegal Address.
[Switching focus to CUDA kernel 0, grid 2, block (272,0,0), thread (128,0,0), device 0, sm 0, warp 22, lane 0]
0x00007ffddb7a1c30 in scale_rows<<<(4096,1,1),(256,1,1)>>> (in=0x302000000, out=0x302400000, n=1048576) at kernels/scale_rows.cu:11
11\t}
#0  0x00007ffddb7a1c30 in scale_rows<<<(4096,1,1),(256,1,1)>>> (in=0x302000000, out=0x302400000, n=1048576) at kernels/scale_rows.cu:11
i = 69760
";

    #[test]
    fn the_backtrace_the_line_and_the_locals() {
        let s = parse(SESSION);
        assert_eq!(s.exception.as_deref(), Some("CUDA Exception: Warp Illegal Address"));
        assert!(s.focus.as_deref().unwrap().starts_with("CUDA kernel 0, grid 2, block (272,0,0), thread (128,0,0)"));
        assert_eq!(s.backtrace.len(), 1);
        assert_eq!(s.line().as_deref(), Some("scale_rows.cu:9"), "the faulting line, not where the warp stopped");
        assert_eq!(s.locals, ["i = 69760"]);
        // Without the exception's own line, the innermost frame's.
        let frames_only = parse(&SESSION.replace("The exception was triggered", "Triggered"));
        assert_eq!(frames_only.line().as_deref(), Some("kernels/scale_rows.cu:11"));
        let hostile = parse("#0  k () at /x\x1b[2J.cu:3\n");
        assert_eq!(hostile.line().as_deref(), Some("/x\\e[2J.cu:3"));
        assert_eq!(parse("No stack.\n"), Session::default());
    }
}
