//! What ptxas says about a compile (`-Xptxas -v`): per function, registers, barriers, stack
//! frame and spills, and its coded advisories (`(C7509) Potential Performance Loss: ...`). The
//! build reads these out of nvcc's stderr so that the user sees them once, as warnings about a
//! kernel and target, and the rest of stderr (real warnings) as nvcc printed it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// ptxas's figures for one function.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtxasFunction {
    pub registers: Option<u32>,
    pub barriers: Option<u32>,
    pub stack_frame: u64,
    pub spill_stores: u64,
    pub spill_loads: u64,
}

/// A coded ptxas message (`C7509`), with the function it names, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Advisory {
    pub code: String,
    pub function: Option<String>,
    pub message: String,
}

impl Advisory {
    /// ptxas's own words: "Potential Performance Loss".
    pub fn costs_performance(&self) -> bool {
        self.message.contains("Potential Performance Loss")
    }

    /// Why a debug (`-G`) build gets this message and a release build does not, when that is so:
    /// `-G` turns `setmaxnreg` off and makes calls that serialise wgmma.
    pub fn debug_only_reason(&self) -> Option<&'static str> {
        match self.code.as_str() {
            "C7505" if self.message.contains("to allow debugging") => Some("-G ignores setmaxnreg"),
            "C7509" if self.message.contains("Extern calls") => Some("-G's calls serialise wgmma"),
            _ => None,
        }
    }
}

/// What ptxas said, and the stderr left once its info lines are taken out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtxasReport {
    pub functions: BTreeMap<String, PtxasFunction>,
    pub advisories: Vec<Advisory>,
}

/// Splits nvcc's stderr into ptxas's report and the other lines, which are shown as they are.
pub fn parse(stderr: &str) -> (PtxasReport, String) {
    let mut report = PtxasReport::default();
    let mut rest = Vec::new();
    let mut entry: Option<String> = None;
    let mut properties: Option<String> = None;
    for line in stderr.lines() {
        let Some(info) = line.strip_prefix("ptxas info").map(|l| l.trim_start().trim_start_matches(':').trim()) else {
            if let Some(name) = properties.take() {
                if line.contains("bytes stack frame") {
                    let f = report.functions.entry(name).or_default();
                    f.stack_frame = number_before(line, "bytes stack frame").unwrap_or(0);
                    f.spill_stores = number_before(line, "bytes spill stores").unwrap_or(0);
                    f.spill_loads = number_before(line, "bytes spill loads").unwrap_or(0);
                    continue;
                }
            }
            rest.push(line);
            continue;
        };
        properties = None;
        if let Some(name) = info.strip_prefix("Compiling entry function").and_then(quoted) {
            entry = Some(name.to_string());
        } else if let Some(name) = info.strip_prefix("Function properties for") {
            properties = Some(name.trim().to_string());
        } else if info.starts_with("Used ") {
            if let Some(name) = &entry {
                let f = report.functions.entry(name.clone()).or_default();
                f.registers = number_before(info, "registers").map(|n| n as u32);
                f.barriers = number_before(info, "barriers").map(|n| n as u32);
            }
        } else if let Some(coded) = info.strip_prefix('(') {
            if let Some((code, message)) = coded.split_once(')') {
                let message = message.trim().to_string();
                let function = message.rsplit("function '").next().filter(|_| message.contains("function '"));
                let function = function.and_then(|f| f.split('\'').next()).map(str::to_string);
                report.advisories.push(Advisory { code: code.to_string(), function, message });
            }
        }
    }
    (report, rest.join("\n"))
}

fn quoted(s: &str) -> Option<&str> {
    let start = s.find('\'')? + 1;
    Some(&s[start..start + s[start..].find('\'')?])
}

/// The number just before `label` in `0 bytes stack frame, 16 bytes spill stores`.
fn number_before(text: &str, label: &str) -> Option<u64> {
    let before = &text[..text.find(label)?];
    let word = before.trim_end().trim_end_matches("bytes").trim_end().rsplit([' ', ',']).next()?;
    word.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELEASE: &str = "ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'spill' for 'sm_90a'
ptxas info    : Function properties for spill
    48 bytes stack frame, 44 bytes spill stores, 44 bytes spill loads
ptxas info    : Used 32 registers, used 1 barriers, 48 bytes cumulative stack size
ptxas info    : Compile time = 12.5 ms
kernels/spill.cu(3): warning #177-D: variable \"x\" was declared but never referenced
";

    const DEBUG: &str = "ptxas info    : (C7505) Potential Performance Loss: 'setmaxnreg' ignored to allow debugging.
ptxas info    : (C7519) warpgroup.arrive is injected in around line 1547 by compiler to allow use of registers in GMMA in function 'hgemm_bf16_tn'
ptxas info    : (C7509) Potential Performance Loss: wgmma.mma_async instructions are serialized due to the presence of Extern calls in the function 'hgemm_bf16_tn'
";

    #[test]
    fn figures_are_read_and_other_lines_kept() {
        let (r, rest) = parse(RELEASE);
        assert_eq!(
            r.functions["spill"],
            PtxasFunction {
                registers: Some(32),
                barriers: Some(1),
                stack_frame: 48,
                spill_stores: 44,
                spill_loads: 44
            }
        );
        assert_eq!(rest, "kernels/spill.cu(3): warning #177-D: variable \"x\" was declared but never referenced");
    }

    #[test]
    fn advisories_name_code_and_function() {
        let (r, rest) = parse(DEBUG);
        assert!(rest.is_empty());
        let codes: Vec<_> = r.advisories.iter().map(|a| (a.code.as_str(), a.function.as_deref())).collect();
        assert_eq!(codes, [("C7505", None), ("C7519", Some("hgemm_bf16_tn")), ("C7509", Some("hgemm_bf16_tn"))]);
        assert!(r.advisories[0].costs_performance() && !r.advisories[1].costs_performance());
        let costly: Vec<_> = r.advisories.iter().filter(|a| a.costs_performance()).collect();
        assert_eq!(costly.len(), 2);
        assert!(costly.iter().all(|a| a.debug_only_reason().is_some()));
        let other = Advisory {
            code: "C7510".into(),
            function: None,
            message: "Potential Performance Loss: wgmma.mma_async instructions are serialized due to insufficient register resources".into(),
        };
        assert_eq!(other.debug_only_reason(), None);
    }
}
