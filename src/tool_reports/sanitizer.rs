//! compute-sanitizer's report: every line starts with `=========`; an error is a line at the
//! first indent (`Invalid __global__ write of size 4 bytes`, `Error: Race reported between ...`)
//! followed by more indented lines (`at scale_rows+0x1d0 in /src/kernels/scale_rows.cu:9`,
//! `by thread (1,0,0) in block (0,0,0)`, `Address 0x... is out of bounds`); the report ends with
//! `ERROR SUMMARY: N errors` (`RACECHECK SUMMARY: ...` for racecheck).

use crate::escape;

/// One error the sanitizer reported.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Finding {
    /// `Invalid __global__ write of size 4 bytes`.
    pub what: String,
    pub kernel: Option<String>,
    /// `/src/kernels/scale_rows.cu:9`.
    pub location: Option<String>,
    /// `(1,0,0)`.
    pub thread: Option<String>,
    pub block: Option<String>,
    /// The other lines of the error, host backtrace left out: the address and how far past which
    /// allocation, the other access of a race.
    pub details: Vec<String>,
}

/// What a report says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub findings: Vec<Finding>,
    /// `ERROR SUMMARY: 1024 errors`.
    pub summary: Option<String>,
    /// `Program hit CUDA_ERROR_LAUNCH_FAILED (error 719) ... on CUDA API call to cuStreamSynchronize.`
    pub api_errors: Vec<String>,
}

impl Report {
    /// The first error that names a source line, else the first error.
    pub fn first(&self) -> Option<&Finding> {
        self.findings.iter().find(|f| f.location.is_some()).or(self.findings.first())
    }
}

/// At most this many errors are kept: the report of a faulting grid can hold one per thread.
const MAX_FINDINGS: usize = 100;

/// Reads a compute-sanitizer report (its `--log-file`, or its lines mixed into other output).
pub fn parse(text: &str) -> Report {
    let mut r = Report::default();
    // Inside a host backtrace: its frames are left out until the next error.
    let mut in_backtrace = false;
    for raw in text.lines() {
        let Some(rest) = raw.strip_prefix("=========") else { continue };
        let body = rest.trim();
        if body.is_empty() {
            continue;
        }
        let indent = rest.len() - rest.trim_start().len();
        if indent <= 1 {
            in_backtrace = false;
            if body.starts_with("COMPUTE-SANITIZER") || body.starts_with("Target application returned") {
                continue;
            }
            if body.contains("SUMMARY:") {
                r.summary.get_or_insert_with(|| escape::line(body));
                continue;
            }
            if body.starts_with("Program hit ") {
                if r.api_errors.len() < MAX_FINDINGS {
                    r.api_errors.push(escape::line(body));
                }
                continue;
            }
            if r.findings.len() >= MAX_FINDINGS {
                continue;
            }
            let mut f = Finding { what: escape::line(body), ..Finding::default() };
            if let Some((kernel, location)) = located(body) {
                f.kernel = kernel;
                f.location = Some(location);
            }
            r.findings.push(f);
            continue;
        }
        if body.starts_with("Saved host backtrace") || body.starts_with("Host Frame") {
            in_backtrace = true;
        }
        let Some(f) = r.findings.last_mut().filter(|_| !in_backtrace) else { continue };
        if let Some(at) = body.strip_prefix("at ") {
            if f.location.is_none() {
                if let Some((kernel, location)) = located(body) {
                    f.kernel = kernel;
                    f.location = Some(location);
                } else {
                    f.kernel = kernel_of(at.split(" in ").next().unwrap_or(at)).map(escape::line);
                }
                continue;
            }
        }
        if let Some(by) = body.strip_prefix("by thread ") {
            if let Some((thread, block)) = by.split_once(" in block ") {
                f.thread = Some(escape::line(thread.trim()));
                f.block = Some(escape::line(block.trim()));
                continue;
            }
        }
        if f.details.len() < 8 {
            f.details.push(escape::line(body));
        }
    }
    r
}

/// The kernel of `scale_rows+0x1d0` (compute-sanitizer 2024 and later) or
/// `scale_rows():0x1d0` (2022-2023); none for a bare `0x1d0` (before 2022).
fn kernel_of(at: &str) -> Option<&str> {
    let at = at.trim();
    let k = match at.rsplit_once("+0x") {
        Some((k, _)) => k,
        None => at.rsplit_once(":0x").map(|(k, _)| k).unwrap_or(at),
    };
    let k = k.trim();
    (!k.is_empty() && !k.starts_with("0x")).then_some(k)
}

/// The kernel and `file:line` of `... at KERNEL+0xOFF in FILE:LINE [...]`, of
/// `at KERNEL():0xOFF in FILE:LINE`, and of `at 0xOFF in FILE:LINE:KERNEL(ARGS)` (older
/// compute-sanitizers put the kernel after the line).
fn located(text: &str) -> Option<(Option<String>, String)> {
    let (before, after) = text.rsplit_once(" in ")?;
    let after = after.rsplit_once(" [").map(|(a, _)| a).unwrap_or(after).trim();
    let parts: Vec<&str> = after.split(':').collect();
    let i = (1..parts.len()).find(|&i| !parts[i].is_empty() && parts[i].bytes().all(|b| b.is_ascii_digit()))?;
    let file = parts[..i].join(":");
    if file.is_empty() {
        return None;
    }
    let location = format!("{file}:{}", parts[i]);
    let trailing = parts[i + 1..].join(":");
    let at = format!(" {before}").rsplit_once(" at ").map(|(_, k)| k.to_string()).unwrap_or_default();
    let kernel = kernel_of(&at)
        .map(str::to_string)
        .or_else(|| (!trailing.trim().is_empty()).then(|| trailing.trim().to_string()));
    Some((kernel.map(|k| escape::line(&k)), escape::line(&location)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like compute-sanitizer 2025's memcheck report of an out-of-bounds write.
    pub const MEMCHECK: &str = "\
========= COMPUTE-SANITIZER
========= Invalid __global__ write of size 4 bytes
=========     at scale_rows+0x1d0 in /home/dev/fault-oob/kernels/scale_rows.cu:9
=========     by thread (1,0,0) in block (0,0,0)
=========     Address 0x7f1e2a400000 is out of bounds
=========     and is 4,190,208 bytes after the nearest allocation at 0x7f1e2a001000 of size 4,194,304 bytes
=========     Saved host backtrace up to driver entry point at kernel launch time
=========         Host Frame: cuLaunchKernel [0x2f5a1b] in libcuda.so.1
=========         Host Frame: main [0x1234] in fault-oob
=========
========= Invalid __global__ write of size 4 bytes
=========     at scale_rows+0x1d0 in /home/dev/fault-oob/kernels/scale_rows.cu:9
=========     by thread (2,0,0) in block (0,0,0)
=========     Address 0x7f1e2a800000 is out of bounds
=========
========= Program hit CUDA_ERROR_LAUNCH_FAILED (error 719) due to \"unspecified launch failure\" on CUDA API call to cuStreamSynchronize.
=========     Saved host backtrace up to driver entry point at error
=========
========= Target application returned an error
========= ERROR SUMMARY: 1023 errors
";

    #[test]
    fn memcheck_names_the_line_thread_block_and_allocation() {
        let r = parse(MEMCHECK);
        assert_eq!(r.findings.len(), 2);
        let f = r.first().unwrap();
        assert_eq!(f.what, "Invalid __global__ write of size 4 bytes");
        assert_eq!(f.kernel.as_deref(), Some("scale_rows"));
        assert_eq!(f.location.as_deref(), Some("/home/dev/fault-oob/kernels/scale_rows.cu:9"));
        assert_eq!((f.thread.as_deref(), f.block.as_deref()), (Some("(1,0,0)"), Some("(0,0,0)")));
        assert_eq!(
            f.details,
            [
                "Address 0x7f1e2a400000 is out of bounds",
                "and is 4,190,208 bytes after the nearest allocation at 0x7f1e2a001000 of size 4,194,304 bytes"
            ]
        );
        assert_eq!(r.summary.as_deref(), Some("ERROR SUMMARY: 1023 errors"));
        assert!(r.api_errors[0].starts_with("Program hit CUDA_ERROR_LAUNCH_FAILED (error 719)"));
    }

    #[test]
    fn racecheck_names_both_accesses() {
        let r = parse(
            "========= COMPUTE-SANITIZER\n\
             ========= Error: Race reported between Write access at block_sum(const float *, float *)+0x2b0 in /src/kernels/block_sum.cu:13\n\
             =========     and Read access at block_sum(const float *, float *)+0x290 in /src/kernels/block_sum.cu:13 [7936 hazards]\n\
             =========\n\
             ========= RACECHECK SUMMARY: 1 hazard displayed (1 error, 0 warnings)\n",
        );
        let f = r.first().unwrap();
        assert_eq!(f.kernel.as_deref(), Some("block_sum(const float *, float *)"));
        assert_eq!(f.location.as_deref(), Some("/src/kernels/block_sum.cu:13"));
        assert!(f.what.starts_with("Error: Race reported between Write access"));
        assert_eq!(f.details, ["and Read access at block_sum(const float *, float *)+0x290 in /src/kernels/block_sum.cu:13 [7936 hazards]"]);
        assert_eq!(r.summary.as_deref(), Some("RACECHECK SUMMARY: 1 hazard displayed (1 error, 0 warnings)"));
    }

    #[test]
    fn older_formats_are_read_too() {
        // compute-sanitizer 2022-2023: the kernel, then its offset after a colon.
        let r = parse(
            "========= Invalid __global__ write of size 4 bytes\n\
             =========     at unaligned_kernel():0x160 in /src/memcheck_demo.cu:6\n\
             =========     by thread (0,0,0) in block (0,0,0)\n",
        );
        let f = r.first().unwrap();
        assert_eq!(
            (f.kernel.as_deref(), f.location.as_deref()),
            (Some("unaligned_kernel()"), Some("/src/memcheck_demo.cu:6"))
        );
        // Before 2022: a bare offset, the kernel after the line.
        let r = parse(
            "========= ERROR: Race reported between Read access at 0x6360 in /src/convolution.cu:123:convolution(pixel const*, int)\n\
             =========     and Write access at 0x1fe0 in /src/convolution.cu:63:convolution(pixel const*, int) [1088 hazards]\n",
        );
        let f = r.first().unwrap();
        assert_eq!(f.location.as_deref(), Some("/src/convolution.cu:123"));
        assert_eq!(f.kernel.as_deref(), Some("convolution(pixel const*, int)"));
        // No line information: the kernel alone.
        let r = parse("========= Invalid __global__ read of size 4 bytes\n=========     at k+0x10\n");
        assert_eq!((r.first().unwrap().kernel.as_deref(), r.first().unwrap().location.as_deref()), (Some("k"), None));
    }

    #[test]
    fn hostile_text_is_escaped_and_bounded() {
        let mut text =
            String::from("========= Invalid write\x1b]0;pwned\x07\n=========     at k+0x1 in /x\x1b[2J.cu:3\n");
        for _ in 0..1000 {
            text.push_str("========= Invalid __global__ read of size 4 bytes\n");
        }
        let r = parse(&text);
        assert_eq!(r.findings.len(), MAX_FINDINGS);
        assert_eq!(r.findings[0].what, "Invalid write\\e]0;pwned\\x07");
        assert_eq!(r.findings[0].location.as_deref(), Some("/x\\e[2J.cu:3"));
        assert_eq!(parse("no sanitizer here\n"), Report::default());
    }
}
