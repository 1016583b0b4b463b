//! `cargo gpu doctor`: what this machine has (GPUs, nvcc and the targets it builds, inspection
//! tools, ssh) and, for each target of the project, whether it runs here or needs a remote.

use std::fmt::Write as _;

use anyhow::Result;
use serde_json::json;

use crate::arch::SmArch;
use crate::cli::{DoctorArgs, GlobalOpts};
use crate::nvidia_smi::Gpu;
use crate::project::{locate_manifest, Project};
use crate::shell::Shell;
use crate::toolchain::{self, Nvcc};

/// Targets reported when not inside a project: the two datacenter targets this tool exists for.
const DEFAULT_TARGETS: [&str; 2] = ["sm_90a", "sm_100a"];

/// One sentence per target: builds here? runs here? or which remote it needs.
pub fn target_verdict(target: SmArch, gpus: &[Gpu], nvcc: Option<&Nvcc>) -> String {
    let build = match nvcc {
        None => "cannot be built here (no nvcc)".to_string(),
        Some(n) => match n.cannot_build(target) {
            None => format!("builds here (nvcc {})", n.short_version()),
            Some(why) => format!("cannot be built here: {why}"),
        },
    };
    let run = match gpus.iter().find(|g| target.runs_on(g.compute_cap)) {
        Some(g) => format!("runs on local GPU {} ({})", g.index, g.name),
        None => {
            let local = match gpus.first() {
                Some(g) => format!("local GPU {} is {}", g.name, g.compute_cap.base_arch()),
                None => "no local GPU".to_string(),
            };
            format!("{local}; {target} code needs a remote with {}", target.runs_where())
        }
    };
    format!("{target}: {build}; {run}")
}

pub fn exec(shell: &Shell, global: &GlobalOpts, args: &DoctorArgs) -> Result<i32> {
    if let Some(name) = &args.remote {
        let project =
            locate_manifest(global.manifest_path.as_deref()).and_then(|m| Project::load(shell, Some(&m), &[]));
        let (targets, pin) = match project {
            Ok(p) => (p.targets, p.cuda),
            Err(_) => (DEFAULT_TARGETS.iter().map(|t| t.parse().unwrap()).collect(), None),
        };
        let compiler = toolchain::find_compiler(pin.as_deref()).ok().and_then(|p| Nvcc::probe(shell, &p).ok());
        let remote = crate::config::UserConfig::load()?.remote(name)?;
        print!("{}", crate::remote::doctor::report(shell, &remote, &targets, compiler.as_ref().map(|n| &n.version))?);
        return Ok(crate::exit::SUCCESS);
    }
    let (gpus, gpu_note) = toolchain::local_gpus(shell);
    let pin = locate_manifest(global.manifest_path.as_deref())
        .and_then(|m| Project::load(shell, Some(&m), &[]))
        .ok()
        .and_then(|p| p.cuda);
    let nvcc_path = toolchain::find_compiler(pin.as_deref());
    let nvcc = match &nvcc_path {
        Ok(p) => Some(Nvcc::probe(shell, p)),
        Err(_) => None,
    };
    let nvcc_ok = nvcc.as_ref().and_then(|r| r.as_ref().ok());

    let (targets, target_source) = match locate_manifest(global.manifest_path.as_deref()) {
        Ok(m) => match Project::load(shell, Some(&m), &[]) {
            Ok(p) => (p.targets, format!("from {}", p.manifest_path.display())),
            Err(e) => (
                DEFAULT_TARGETS.iter().map(|t| t.parse().unwrap()).collect(),
                format!("defaults; the project could not be read: {e:#}"),
            ),
        },
        Err(_) => (DEFAULT_TARGETS.iter().map(|t| t.parse().unwrap()).collect(), "defaults; not in a project".into()),
    };

    let tools: Vec<(&str, Option<std::path::PathBuf>)> = vec![
        ("cuobjdump", toolchain::find_cuda_tool("cuobjdump")),
        ("nvdisasm", toolchain::find_cuda_tool("nvdisasm")),
        ("ssh", which::which("ssh").ok()),
    ];

    if shell.json() {
        shell.emit_json(&json!({
            "reason": "doctor",
            "gpus": gpus.iter().map(|g| json!({"index": g.index, "name": g.name, "compute_cap": g.compute_cap.to_string(), "driver": g.driver_version})).collect::<Vec<_>>(),
            "gpu_note": gpu_note,
            "nvcc": nvcc_ok.map(|n| json!({"path": n.path, "version": n.version.to_string(), "gpu_codes": n.gpu_codes, "builds": n.buildable()})),
            "tools": tools.iter().map(|(n, p)| (n.to_string(), json!(p))).collect::<serde_json::Map<_, _>>(),
            "targets": targets.iter().map(|t| json!({"target": t.to_string(), "verdict": target_verdict(*t, &gpus, nvcc_ok)})).collect::<Vec<_>>(),
        }));
        return Ok(crate::exit::SUCCESS);
    }

    let mut out = String::new();
    if gpus.is_empty() {
        let _ = writeln!(out, "GPU:       none{}", gpu_note.map(|n| format!(" ({n})")).unwrap_or_default());
    }
    for g in &gpus {
        let _ = writeln!(
            out,
            "GPU {}:     {} (compute capability {}, {}), driver {}",
            g.index,
            g.name,
            g.compute_cap,
            g.compute_cap.base_arch(),
            g.driver_version
        );
    }
    match (&nvcc_path, &nvcc) {
        (Err(e), _) => {
            let _ = writeln!(out, "nvcc:      not found: {e}");
        }
        (Ok(_), Some(Err(e))) => {
            let _ = writeln!(out, "nvcc:      unusable: {e:#}");
        }
        (Ok(_), Some(Ok(n))) => {
            match n.path.parent().filter(|_| n.is_nvrtc()) {
                Some(dir) => {
                    writeln!(out, "nvcc:      NVRTC {} (the CUDA 12 toolchain in {})", n.version, dir.display())
                }
                None => writeln!(out, "nvcc:      {} ({})", n.version, n.path.display()),
            }
            .ok();
            let builds = n.buildable();
            if !builds.is_empty() {
                let _ = writeln!(out, "           builds {}", builds.join(" "));
            }
        }
        (Ok(_), None) => {}
    }
    for (name, path) in &tools {
        let shown = path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "not found".into());
        let _ = writeln!(out, "{:<11}{shown}", format!("{name}:"));
    }
    let _ = writeln!(out, "targets ({target_source}):");
    for t in &targets {
        let _ = writeln!(out, "  {}", target_verdict(*t, &gpus, nvcc_ok));
    }
    print!("{out}");
    Ok(crate::exit::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::ComputeCap;

    fn gpu(name: &str, cc: &str) -> Gpu {
        Gpu {
            index: 0,
            name: name.into(),
            compute_cap: cc.parse::<ComputeCap>().unwrap(),
            driver_version: "580".into(),
        }
    }

    #[test]
    fn consumer_gpu_needs_a_remote_for_hopper_code() {
        let v = target_verdict("sm_90a".parse().unwrap(), &[gpu("NVIDIA GeForce RTX 5060 Ti", "12.0")], None);
        assert!(
            v.ends_with("local GPU NVIDIA GeForce RTX 5060 Ti is sm_120; sm_90a code needs a remote with compute capability 9.0"),
            "{v}"
        );
    }

    #[test]
    fn matching_gpu_runs_locally() {
        let v = target_verdict("sm_90a".parse().unwrap(), &[gpu("NVIDIA H100 80GB HBM3", "9.0")], None);
        assert!(v.ends_with("runs on local GPU 0 (NVIDIA H100 80GB HBM3)"), "{v}");
        let v = target_verdict("sm_100a".parse().unwrap(), &[], None);
        assert!(v.ends_with("no local GPU; sm_100a code needs a remote with compute capability 10.0"), "{v}");
    }
}
