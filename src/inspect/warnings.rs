//! The warnings that cost money if missed, made from a kernel report: registers spilled in a
//! release build, ptxas's "Potential Performance Loss" advisories (in a debug build, which of
//! them `-G` alone causes), and a kernel whose SASS for the target is only a trap. The build
//! shows them when it compiles the cubin, `inspect` whenever it is asked: never ptxas's raw lines.

use serde::Serialize;

use crate::arch::SmArch;
use crate::inspect::report::KernelReport;
use crate::shell::Shell;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Warning,
    Note,
}

/// One finding about one kernel and target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub level: Level,
    /// `spill`, `performance`, `debug-only` or `trap`.
    pub kind: &'static str,
    pub function: Option<String>,
    pub message: String,
}

/// The findings on one cubin of `kernel` (its source's stem) for `target`. `expected` is what
/// the project's `expect` asks of this kernel and target: listing `BPT` there says a trap-only
/// stub is intended.
pub fn findings(kernel: &str, target: SmArch, report: &KernelReport, expected: &[String]) -> Vec<Finding> {
    let release = report.profile == "release";
    let mut out = Vec::new();
    if release {
        for f in report.entries().filter(|f| f.spill_stores > 0 || f.spill_loads > 0) {
            out.push(Finding {
                level: Level::Warning,
                kind: "spill",
                function: Some(f.name.clone()),
                message: format!(
                    "`{}` spills registers to local memory: {} bytes stored and {} bytes loaded per thread at {} registers; \
                     keep fewer values live, or allow more registers (`__launch_bounds__`, `-maxrregcount`)",
                    f.name, f.spill_stores, f.spill_loads, f.registers
                ),
            });
        }
    }
    let costly: Vec<_> = report.advisories.iter().filter(|a| a.costs_performance()).collect();
    let (debug_only, real): (Vec<_>, Vec<_>) =
        costly.into_iter().partition(|a| !release && a.debug_only_reason().is_some());
    for a in real {
        let hint = if release { "" } else { " (a debug -G build; check that `--release` has it too)" };
        out.push(Finding {
            level: Level::Warning,
            kind: "performance",
            function: a.function.clone(),
            message: format!("ptxas {}: {}{hint}", a.code, a.message),
        });
    }
    if !debug_only.is_empty() {
        let mut reasons: Vec<String> =
            debug_only.iter().map(|a| format!("{} ({})", a.code, a.debug_only_reason().unwrap_or_default())).collect();
        reasons.sort();
        reasons.dedup();
        out.push(Finding {
            level: Level::Note,
            kind: "debug-only",
            function: None,
            message: format!(
                "ptxas reports a potential performance loss that a debug (-G) build is expected to have: {}; \
                 it does not apply to `--release`",
                reasons.join(", ")
            ),
        });
    }
    let stub_declared = expected.iter().any(|e| e == "BPT" || e == "BPT.TRAP");
    let traps: Vec<&str> = report.entries().filter(|f| f.trap_only).map(|f| f.name.as_str()).collect();
    if !traps.is_empty() && !stub_declared {
        out.push(Finding {
            level: Level::Warning,
            kind: "trap",
            function: (traps.len() == 1).then(|| traps[0].to_string()),
            message: format!(
                "{} only {} on {target}: the source has no code for this target (an `#if` on the architecture?), so a \
                 launch fails at run time. Build for a target the kernel supports, or, if the stub is intended, say so \
                 with `{kernel} = {{ {target} = [\"BPT\"] }}` under `[package.metadata.gpu.expect]`",
                traps.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", "),
                if traps.len() == 1 { "traps" } else { "trap" },
            ),
        });
    }
    out
}

/// ptxas's other coded messages (`C7519 warpgroup.arrive is injected ...`): shown with `-v` only.
pub fn show_other_advisories(shell: &Shell, label: &str, report: &KernelReport) {
    for a in report.advisories.iter().filter(|a| !a.costs_performance()) {
        shell.verbose("ptxas", format!("{label}: ({}) {}", a.code, a.message));
    }
}

/// Prints findings the way cargo prints rustc's, each naming its kernel source and target.
pub fn show(shell: &Shell, label: &str, findings: &[Finding]) {
    for f in findings {
        match f.level {
            Level::Warning => shell.warn(format!("{label}: {}", f.message)),
            Level::Note => shell.note(format!("{label}: {}", f.message)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::ptxas::Advisory;
    use crate::inspect::report::FunctionReport;

    fn report(profile: &str, f: FunctionReport, advisories: Vec<Advisory>) -> KernelReport {
        KernelReport { sha256: "x".into(), profile: profile.into(), functions: vec![f], advisories }
    }

    fn setmaxnreg() -> Advisory {
        Advisory {
            code: "C7505".into(),
            function: None,
            message: "Potential Performance Loss: 'setmaxnreg' ignored to allow debugging.".into(),
        }
    }

    #[test]
    fn spills_warn_in_release_only() {
        let f =
            FunctionReport { name: "k".into(), entry: true, spill_stores: 44, spill_loads: 40, ..Default::default() };
        let w = findings("k", "sm_90a".parse().unwrap(), &report("release", f.clone(), vec![]), &[]);
        assert_eq!(w.len(), 1);
        assert!(w[0].message.contains("44 bytes stored and 40 bytes loaded"), "{}", w[0].message);
        assert!(findings("k", "sm_90a".parse().unwrap(), &report("debug", f, vec![]), &[]).is_empty());
    }

    #[test]
    fn debug_only_advisories_are_one_note_and_warnings_in_release() {
        let f = FunctionReport { name: "k".into(), entry: true, ..Default::default() };
        let debug = findings(
            "k",
            "sm_90a".parse().unwrap(),
            &report("debug", f.clone(), vec![setmaxnreg(), setmaxnreg()]),
            &[],
        );
        assert_eq!(debug.len(), 1);
        assert_eq!(debug[0].level, Level::Note);
        assert!(
            debug[0].message.contains("C7505 (-G ignores setmaxnreg)")
                && debug[0].message.contains("does not apply to `--release`")
        );
        let release = findings("k", "sm_90a".parse().unwrap(), &report("release", f, vec![setmaxnreg()]), &[]);
        assert_eq!((release[0].level, release[0].kind), (Level::Warning, "performance"));
    }

    #[test]
    fn a_trap_only_kernel_warns_unless_the_stub_is_declared() {
        let f = FunctionReport { name: "hgemm_bf16_tn".into(), entry: true, trap_only: true, ..Default::default() };
        let r = report("release", f, vec![]);
        let w = findings("hgemm", "sm_120a".parse().unwrap(), &r, &[]);
        assert_eq!(w.len(), 1);
        assert!(w[0].message.starts_with("`hgemm_bf16_tn` only traps on sm_120a"), "{}", w[0].message);
        assert!(w[0].message.contains("hgemm = { sm_120a = [\"BPT\"] }"), "{}", w[0].message);
        assert!(findings("hgemm", "sm_120a".parse().unwrap(), &r, &["BPT".into()]).is_empty());
    }
}
