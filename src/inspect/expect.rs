//! `[package.metadata.gpu.expect]`: the instructions a project says its SASS must have, per
//! kernel and target (`hgemm = { sm_90a = ["HGMMA", "UTMALDG"] }`). A build whose SASS lacks one
//! fails, naming the kernel, the target and the instruction: a GEMM that lost its wgmma is found
//! here, not by timing it on a rented GPU.

use std::path::Path;

use anyhow::{bail, Result};

use crate::arch::SmArch;
use crate::inspect::report::KernelReport;
use crate::project::Expectations;

/// An expected instruction a cubin's SASS lacks.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Missing {
    pub kernel: String,
    pub target: SmArch,
    pub instruction: String,
}

/// What `expect` asks of `kernel` on `target`.
pub fn expected<'a>(expect: &'a Expectations, kernel: &str, target: SmArch) -> &'a [String] {
    expect.get(kernel).and_then(|t| t.get(&target)).map(Vec::as_slice).unwrap_or(&[])
}

/// Every expected instruction missing from the cubins built: `(kernel, target, report)`.
/// Targets not built are not checked.
pub fn missing(expect: &Expectations, built: &[(&str, SmArch, &KernelReport)]) -> Vec<Missing> {
    let mut out = Vec::new();
    for (kernel, target, report) in built {
        for instruction in expected(expect, kernel, *target) {
            if !report.has_instruction(instruction) {
                out.push(Missing { kernel: kernel.to_string(), target: *target, instruction: instruction.clone() });
            }
        }
    }
    out
}

/// Fails when `expect` names a kernel the project does not have, or when a built cubin lacks an
/// expected instruction.
pub fn check(
    expect: &Expectations,
    kernels: &[&str],
    built: &[(&str, SmArch, &KernelReport)],
    manifest_path: &Path,
) -> Result<()> {
    if let Some(unknown) = expect.keys().find(|k| !kernels.contains(&k.as_str())) {
        bail!(
            "`[package.metadata.gpu.expect]` in {} names kernel `{unknown}`, but no kernel source is called \
             `{unknown}.cu` (kernels: {})",
            manifest_path.display(),
            kernels.join(", ")
        );
    }
    let missing = missing(expect, built);
    if missing.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = missing
        .iter()
        .map(|m| format!("kernel `{}` for {} has no `{}` in its SASS", m.kernel, m.target, m.instruction))
        .collect();
    let first = &missing[0];
    bail!(
        "{} (expected by `[package.metadata.gpu.expect]` in {}): the compiler dropped or replaced {}; see what the \
         SASS has with `cargo gpu inspect {} --target {} --sass`",
        lines.join("; "),
        manifest_path.display(),
        if missing.len() == 1 { "it" } else { "them" },
        first.kernel,
        first.target
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::report::FunctionReport;

    #[test]
    fn a_missing_instruction_is_named_with_kernel_and_target() {
        let sm90: SmArch = "sm_90a".parse().unwrap();
        let sm100: SmArch = "sm_100a".parse().unwrap();
        let mut expect = Expectations::new();
        expect.insert("hgemm".into(), [(sm90, vec!["HGMMA".into(), "UTMALDG.MULTICAST".into()])].into());
        let f = FunctionReport {
            name: "g".into(),
            entry: true,
            opcodes: [("HGMMA.64x256x16.F32.BF16".to_string(), 8), ("UTMALDG.2D".to_string(), 2)].into(),
            ..Default::default()
        };
        let r = KernelReport { functions: vec![f], ..Default::default() };
        let built = [("hgemm", sm90, &r), ("hgemm", sm100, &r)];
        let m = missing(&expect, &built);
        assert_eq!(m, [Missing { kernel: "hgemm".into(), target: sm90, instruction: "UTMALDG.MULTICAST".into() }]);
        let err = check(&expect, &["hgemm"], &built, Path::new("Cargo.toml")).unwrap_err().to_string();
        assert!(err.starts_with("kernel `hgemm` for sm_90a has no `UTMALDG.MULTICAST` in its SASS"), "{err}");
        let err = check(&expect, &["other"], &built, Path::new("Cargo.toml")).unwrap_err().to_string();
        assert!(err.contains("names kernel `hgemm`, but no kernel source is called `hgemm.cu`"), "{err}");
    }
}
