//! The tools' reports of one run, printed: after `remote-run` brings them back, and again by
//! `cargo gpu logs`. Each says where its full report is.

use std::path::Path;

use crate::shell::Shell;
use crate::tool_reports::files::{
    AUTOSANITIZE_REPORT, GDB_OUTPUT, NCU_CSV, NCU_LOG, NCU_REPORT, NCU_TEXT, REPORT_FILES, SANITIZER_REPORT,
};
use crate::tool_reports::{gdb, ncu, sanitizer};

/// The report files present in `run_dir` (see [`REPORT_FILES`]).
pub fn present(run_dir: &Path) -> Vec<String> {
    REPORT_FILES
        .iter()
        .filter(|f| std::fs::symlink_metadata(run_dir.join(f)).is_ok_and(|m| m.is_file()))
        .map(|f| f.to_string())
        .collect()
}

/// The short names `cargo gpu runs` lists for a run's reports: `sanitizer`, `memcheck` (the
/// rerun after a fault), `profile`, `cuda-gdb`.
pub fn short_names(reports: &[String]) -> String {
    let mut v = Vec::new();
    for (file, name) in [
        (SANITIZER_REPORT, "sanitizer"),
        (AUTOSANITIZE_REPORT, "memcheck"),
        (NCU_REPORT, "profile"),
        (GDB_OUTPUT, "cuda-gdb"),
    ] {
        if reports.iter().any(|r| r == file) {
            v.push(name);
        }
    }
    if v.is_empty() {
        "-".into()
    } else {
        v.join(",")
    }
}

fn read(path: &Path) -> Option<String> {
    crate::safe_fs::read_no_follow(path).ok().map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Prints what the reports in `run_dir` say; `shown` is that folder as the user should read it,
/// and `clock_control` the clock setting ncu ran with (`None` when the user's own `--ncu-args`
/// chose it).
pub fn print(shell: &Shell, run_dir: &Path, shown: &Path, clock_control: Option<&str>) {
    let full = |f: &str| shown.join(f).display().to_string();
    if let Some(text) = read(&run_dir.join(SANITIZER_REPORT)) {
        print_sanitizer(shell, "Sanitizer", &sanitizer::parse(&text), &full(SANITIZER_REPORT));
    }
    if let Some(text) = read(&run_dir.join(AUTOSANITIZE_REPORT)) {
        print_sanitizer(shell, "Memcheck", &sanitizer::parse(&text), &full(AUTOSANITIZE_REPORT));
    }
    if let Some(text) = read(&run_dir.join(GDB_OUTPUT)) {
        let s = gdb::parse(&text);
        let head = match (&s.exception, s.line()) {
            (Some(e), Some(l)) => format!("{e} at {l}"),
            (Some(e), None) => e.clone(),
            (None, Some(l)) => format!("stopped at {l}"),
            (None, None) => "no CUDA exception seen".into(),
        };
        shell.status("Debugger", format!("cuda-gdb: {head} (session in {})", full(GDB_OUTPUT)));
        if let Some(focus) = &s.focus {
            shell.text(format!("    focus: {focus}"));
        }
        for frame in &s.backtrace {
            shell.text(format!("    {frame}"));
        }
        for local in &s.locals {
            shell.text(format!("      {local}"));
        }
    }
    let csv = read(&run_dir.join(NCU_CSV));
    let log = read(&run_dir.join(NCU_LOG));
    if csv.is_none() && log.is_none() {
        return;
    }
    let kernels = csv.as_deref().map(ncu::summarize).unwrap_or_default();
    let clock = match clock_control {
        Some(c) => {
            format!("clocks not locked (--clock-control {c}: the GPU's own clocks, as the kit's timings see them)")
        }
        None => "clocks as --ncu-args set them".into(),
    };
    if kernels.is_empty() {
        shell.warn(format!("ncu profiled no kernel ({clock}); its log is {}", full(NCU_LOG)));
        for line in log
            .as_deref()
            .unwrap_or("")
            .lines()
            .filter(|l| l.contains("==ERROR==") || l.contains("==WARNING=="))
            .take(5)
        {
            shell.text(format!("    {}", crate::escape::line(line)));
        }
        return;
    }
    shell.status(
        "Profile",
        format!(
            "{} kernel{}, {clock}; report {} (details in {} and {})",
            kernels.len(),
            if kernels.len() == 1 { "" } else { "s" },
            full(NCU_REPORT),
            NCU_TEXT,
            NCU_CSV
        ),
    );
    for k in &kernels {
        shell.text(format!("    {}", k.line()));
    }
}

fn print_sanitizer(shell: &Shell, label: &str, r: &sanitizer::Report, full: &str) {
    let summary = r.summary.clone().unwrap_or_else(|| "no summary".into());
    let Some(f) = r.first() else {
        shell.status(label, format!("{summary} (report in {full})"));
        return;
    };
    let at = match (&f.location, &f.kernel) {
        // racecheck's "Race reported between Read access at k+0x7b0 in x.cu:13" names it already.
        (Some(l), _) if f.what.contains(l.as_str()) => String::new(),
        (Some(l), Some(k)) => format!(" at {l} in {k}"),
        (Some(l), None) => format!(" at {l}"),
        (None, Some(k)) => format!(" in {k} (no line: build with -G or -lineinfo)"),
        (None, None) => String::new(),
    };
    shell.status(label, format!("{summary}; the first: {}{at} (report in {full})", f.what));
    if let (Some(t), Some(b)) = (&f.thread, &f.block) {
        shell.text(format!("    by thread {t} in block {b}"));
    }
    for d in &f.details {
        shell.text(format!("    {d}"));
    }
}
