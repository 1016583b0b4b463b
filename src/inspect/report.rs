//! The report on one cubin (one kernel source, one target): per function its resources (from
//! `cuobjdump -res-usage`, the ELF and ptxas), its SASS opcodes and whether it only traps, and
//! ptxas's advisories. The build makes it when it compiles the cubin and keeps it beside the
//! cubin's fingerprint, with the report of the build before, so that a no-op build, `inspect`
//! and `inspect --diff` run no tool at all.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::cmd::Cmd;
use crate::inspect::ptxas::{Advisory, PtxasReport};
use crate::inspect::{resources, sass};
use crate::shell::Shell;

/// One function of a cubin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionReport {
    pub name: String,
    /// A kernel, as opposed to a device function it calls.
    pub entry: bool,
    pub registers: u32,
    /// Static shared memory, bytes (dynamic shared memory is chosen at launch).
    pub shared: u64,
    /// Local memory per thread, bytes.
    pub local: u64,
    /// Stack per thread, bytes.
    pub stack: u64,
    pub spill_stores: u64,
    pub spill_loads: u64,
    pub barriers: u32,
    /// From `__launch_bounds__`, when it is given.
    pub max_threads: Option<u32>,
    pub trap_only: bool,
    /// Every opcode with its modifiers, NOPs left out, and its count.
    pub opcodes: BTreeMap<String, u32>,
}

impl FunctionReport {
    pub fn census(&self) -> BTreeMap<String, u32> {
        sass::census(&self.opcodes)
    }

    pub fn total(&self) -> u32 {
        sass::total(&self.opcodes)
    }

    /// The figures `--diff` compares, by name.
    fn figures(&self) -> BTreeMap<String, u64> {
        let mut f: BTreeMap<String, u64> = [
            ("registers", self.registers as u64),
            ("shared", self.shared),
            ("local", self.local),
            ("stack", self.stack),
            ("spill stores", self.spill_stores),
            ("spill loads", self.spill_loads),
            ("barriers", self.barriers as u64),
            ("max threads", self.max_threads.unwrap_or(0) as u64),
            ("trap only", self.trap_only as u64),
            ("instructions", self.total() as u64),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        f.extend(self.census().into_iter().map(|(k, v)| (k, v as u64)));
        f
    }
}

/// The report on one cubin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelReport {
    /// The cubin's sha256: the report describes that cubin and no other.
    pub sha256: String,
    /// `debug` or `release`.
    pub profile: String,
    pub functions: Vec<FunctionReport>,
    pub advisories: Vec<Advisory>,
}

impl KernelReport {
    pub fn entries(&self) -> impl Iterator<Item = &FunctionReport> {
        self.functions.iter().filter(|f| f.entry)
    }

    /// Whether the cubin's SASS, any function, has an instruction `expected` names (`HGMMA`,
    /// `UTMALDG.MULTICAST`).
    pub fn has_instruction(&self, expected: &str) -> bool {
        self.functions.iter().any(|f| f.opcodes.keys().any(|op| sass::names(expected, op)))
    }

    pub fn load(path: &Path) -> Option<KernelReport> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }

    /// Writes the report; a report on another cubin already there becomes `previous`, the
    /// build before this one that `--diff` compares with.
    pub fn save(&self, path: &Path, previous: &Path) -> Result<()> {
        if let Some(old) = KernelReport::load(path) {
            if old.sha256 != self.sha256 {
                match std::fs::rename(path, previous) {
                    // Another build of the same project (one per test under nextest) moved it first.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    r => r.with_context(|| format!("failed to keep the previous report as {}", previous.display()))?,
                }
            }
        }
        crate::safe_fs::write_atomic(path, &serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("failed to write the kernel report {}", path.display()))
    }
}

/// Where the report on the cubin `cubin_name` (`hgemm.sm_90a.cubin`) is kept in a build's state
/// folder, and where the report of the build before it is.
pub fn paths(state_dir: &Path, cubin_name: &str) -> (PathBuf, PathBuf) {
    (state_dir.join(format!("{cubin_name}.report.json")), state_dir.join(format!("{cubin_name}.report.prev.json")))
}

/// The tools the report needs, found beside nvcc.
#[derive(Debug, Clone)]
pub struct Tools {
    pub cuobjdump: PathBuf,
    pub nvdisasm: PathBuf,
}

impl Tools {
    /// Both tools, or an error that says what to install.
    pub fn find() -> Result<Tools> {
        let find = |name: &str, package: &str| {
            crate::toolchain::find_cuda_tool(name).with_context(|| {
                format!(
                    "no `{name}` found beside nvcc, in $CUDA_HOME/bin, /usr/local/cuda/bin or PATH: it reads the \
                     cubins for `cargo gpu inspect`, the build's warnings and `expect`; install the CUDA toolkit's \
                     {name} (`pip install {package}` into the toolkit's venv, or your distribution's CUDA package)"
                )
            })
        };
        Ok(Tools {
            cuobjdump: find("cuobjdump", "nvidia-cuda-cuobjdump")?,
            nvdisasm: find("nvdisasm", "nvidia-cuda-nvdisasm")?,
        })
    }

    /// `nvdisasm -c -ndf CUBIN`: the SASS without line information (the census needs none) and
    /// without the data-flow analysis, which only annotates and takes a third of the time.
    pub fn disassemble(&self, cubin: &Path) -> Cmd {
        Cmd::new(&self.nvdisasm, format!("disassemble {}", cubin.display())).args(["-c", "-ndf"]).arg(cubin)
    }

    /// `nvdisasm -c -ndf -gi CUBIN`: the SASS with the `.cu` lines it came from, inlined calls included.
    pub fn disassemble_with_lines(&self, cubin: &Path) -> Cmd {
        Cmd::new(&self.nvdisasm, format!("disassemble {} with source lines", cubin.display()))
            .args(["-c", "-ndf", "-gi"])
            .arg(cubin)
    }

    pub fn res_usage(&self, cubin: &Path) -> Cmd {
        Cmd::new(&self.cuobjdump, format!("read the resource usage of {}", cubin.display()))
            .arg("-res-usage")
            .arg(cubin)
    }
}

/// Makes the report on `cubin` from the cubin and from what ptxas said when it built it.
pub fn analyse(shell: &Shell, tools: &Tools, cubin: &Path, profile: &str, ptxas: &PtxasReport) -> Result<KernelReport> {
    let bytes = std::fs::read(cubin).with_context(|| format!("failed to read {}", cubin.display()))?;
    let functions = sass::parse(&tools.disassemble(cubin).read(Some(shell))?);
    let usage = resources::parse_res_usage(&tools.res_usage(cubin).read(Some(shell))?);
    let info = resources::nv_info(&bytes).with_context(|| format!("failed to read the ELF of {}", cubin.display()))?;
    let functions = functions
        .into_iter()
        .map(|f| {
            let u = usage.get(&f.name).cloned().unwrap_or_default();
            let i = info.get(&f.name).cloned().unwrap_or_default();
            let p = ptxas.functions.get(&f.name).cloned().unwrap_or_default();
            FunctionReport {
                registers: u.registers,
                shared: u.shared,
                local: u.local,
                stack: u.stack,
                spill_stores: p.spill_stores,
                spill_loads: p.spill_loads,
                barriers: i.barriers.max(p.barriers.unwrap_or(0)),
                max_threads: i.max_threads,
                trap_only: f.trap_only,
                entry: f.entry,
                opcodes: f.opcodes,
                name: f.name,
            }
        })
        .collect();
    Ok(KernelReport {
        sha256: crate::digest::sha256_hex(&bytes),
        profile: profile.to_string(),
        functions,
        advisories: ptxas.advisories.clone(),
    })
}

/// One figure of one function that differs between two builds (`None`: the function is new or gone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub function: String,
    pub figure: String,
    pub before: Option<u64>,
    pub after: Option<u64>,
}

/// What changed from `before` to `after`, kernel functions only, figure by figure.
pub fn diff(before: &KernelReport, after: &KernelReport) -> Vec<Change> {
    let map = |r: &KernelReport| -> BTreeMap<String, BTreeMap<String, u64>> {
        r.entries().map(|f| (f.name.clone(), f.figures())).collect()
    };
    let (b, a) = (map(before), map(after));
    let mut names: Vec<&String> = b.keys().chain(a.keys()).collect();
    names.sort();
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        match (b.get(name), a.get(name)) {
            (Some(bf), Some(af)) => {
                let mut figures: Vec<&String> = bf.keys().chain(af.keys()).collect();
                figures.sort();
                figures.dedup();
                for fig in figures {
                    let (x, y) = (bf.get(fig).copied().unwrap_or(0), af.get(fig).copied().unwrap_or(0));
                    if x != y {
                        out.push(Change {
                            function: name.clone(),
                            figure: fig.clone(),
                            before: Some(x),
                            after: Some(y),
                        });
                    }
                }
            }
            (before, after) => out.push(Change {
                function: name.clone(),
                figure: "function".into(),
                before: before.map(|_| 1),
                after: after.map(|_| 1),
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn function(name: &str, registers: u32, ops: &[(&str, u32)]) -> FunctionReport {
        FunctionReport {
            name: name.into(),
            entry: true,
            registers,
            opcodes: ops.iter().map(|(o, n)| (o.to_string(), *n)).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn diff_names_each_changed_figure_and_new_functions() {
        let before = KernelReport {
            sha256: "a".into(),
            functions: vec![function("g", 160, &[("HGMMA.64x256x16.F32.BF16", 8), ("EXIT", 1)])],
            ..Default::default()
        };
        let after = KernelReport {
            sha256: "b".into(),
            functions: vec![function("g", 168, &[("HGMMA.64x256x16.F32.BF16", 8), ("EXIT", 2)]), function("h", 4, &[])],
            ..Default::default()
        };
        let changes: Vec<_> =
            diff(&before, &after).into_iter().map(|c| (c.function, c.figure, c.before, c.after)).collect();
        assert_eq!(
            changes,
            [
                ("g".into(), "instructions".into(), Some(9), Some(10)),
                ("g".into(), "registers".into(), Some(160), Some(168)),
                ("h".into(), "function".into(), None, Some(1)),
            ]
        );
        assert!(diff(&after, &after).is_empty());
    }

    #[test]
    fn saving_a_report_on_another_cubin_keeps_the_old_one_as_previous() {
        let dir = tempfile::tempdir().unwrap();
        let (path, prev) = (dir.path().join("r.json"), dir.path().join("r.prev.json"));
        let one = KernelReport { sha256: "1".into(), ..Default::default() };
        one.save(&path, &prev).unwrap();
        one.save(&path, &prev).unwrap();
        assert!(!prev.exists(), "the same cubin again is not a new build");
        let two = KernelReport { sha256: "2".into(), ..Default::default() };
        two.save(&path, &prev).unwrap();
        assert_eq!(KernelReport::load(&prev), Some(one));
        assert_eq!(KernelReport::load(&path), Some(two));
    }
}
