//! `cargo gpu toolchain list|install|remove`: CUDA compilers from PyPI, one folder per version
//! in the data folder, and which one the project builds with.

use std::fmt::Write as _;

use anyhow::Result;
use serde_json::json;

use crate::cli::{GlobalOpts, ToolchainAction, ToolchainArgs};
use crate::project::{locate_manifest, Project};
use crate::shell::Shell;
use crate::toolchain::installed::{self, Compiler};
use crate::toolchain::{self, Nvcc, CUDA_PIN_ENV};

pub fn exec(shell: &Shell, global: &GlobalOpts, args: &ToolchainArgs) -> Result<i32> {
    match &args.action {
        ToolchainAction::List => list(shell, global),
        ToolchainAction::Install { versions, force } => {
            for v in versions {
                installed::install(shell, v, *force)?;
            }
            Ok(crate::exit::SUCCESS)
        }
        ToolchainAction::Remove { versions } => {
            for v in versions {
                let dir = installed::remove(v)?;
                shell.status("Removed", dir.display().to_string());
            }
            Ok(crate::exit::SUCCESS)
        }
    }
}

fn compiler_name(c: Compiler) -> &'static str {
    match c {
        Compiler::Nvcc => "nvcc",
        Compiler::Nvrtc => "NVRTC",
    }
}

/// The project's pin and where it comes from, when there is one.
fn pin(project: Option<&Project>) -> Option<(String, String)> {
    if let Some(v) = std::env::var(CUDA_PIN_ENV).ok().filter(|v| !v.is_empty()) {
        return Some((v, CUDA_PIN_ENV.to_string()));
    }
    let p = project?;
    p.cuda.clone().map(|v| (v, format!("`cuda` in {}", p.manifest_path.display())))
}

fn list(shell: &Shell, global: &GlobalOpts) -> Result<i32> {
    let all = installed::list();
    let dir = installed::toolchains_dir()?;
    let project =
        locate_manifest(global.manifest_path.as_deref()).ok().and_then(|m| Project::load(shell, Some(&m), &[]).ok());
    let pin = pin(project.as_ref());
    let chosen = toolchain::find_compiler(project.as_ref().and_then(|p| p.cuda.as_deref()));
    let nvcc = chosen.as_ref().ok().map(|p| Nvcc::probe(shell, p));
    let targets = project.as_ref().map(|p| p.targets.clone()).unwrap_or_default();

    if shell.json() {
        shell.emit_json(&json!({
            "reason": "toolchains",
            "dir": dir,
            "releases": installed::RELEASES.iter().map(|r| {
                let t = all.iter().find(|t| t.record.version == r.version);
                json!({"version": r.version, "full_version": r.full, "compiler": compiler_name(r.compiler), "installed": t.map(|t| &t.dir)})
            }).collect::<Vec<_>>(),
            "pin": pin.as_ref().map(|(v, from)| json!({"version": v, "from": from})),
            "uses": match &nvcc {
                Some(Ok(n)) => json!({"path": n.path, "version": n.version.to_string(), "min_driver_cuda": fmt_pair(n.min_driver_cuda(&targets))}),
                Some(Err(e)) => json!({"error": format!("{e:#}")}),
                None => json!({"error": chosen.as_ref().err().map(|e| format!("{e:#}"))}),
            },
        }));
        return Ok(crate::exit::SUCCESS);
    }

    let mut out = String::new();
    let _ = writeln!(out, "CUDA toolchains in {}:", dir.display());
    for r in installed::RELEASES.iter().rev() {
        let state = match all.iter().find(|t| t.record.version == r.version) {
            Some(_) => "installed".to_string(),
            None => format!("installable: cargo gpu toolchain install {}", r.version),
        };
        let _ = writeln!(out, "  {:<6} {:<9} {:<6} {state}", r.version, r.full, compiler_name(r.compiler));
    }
    let pinned = pin.map(|(v, from)| format!(" (pinned to {v} by {from})")).unwrap_or_default();
    match (&chosen, &nvcc) {
        (Ok(_), Some(Ok(n))) => {
            let (maj, min) = n.min_driver_cuda(&targets);
            let kind = if n.is_nvrtc() { "NVRTC" } else { "nvcc" };
            let _ = writeln!(
                out,
                "{} builds with {kind} {}{pinned}: {}\n  its packages load on drivers of CUDA {maj}.{min} or newer",
                if project.is_some() { "This project" } else { "A build here" },
                n.version,
                n.path.display()
            );
        }
        (Ok(p), Some(Err(e))) => {
            let _ = writeln!(out, "The compiler at {} does not answer{pinned}: {e:#}", p.display());
        }
        (Err(e), _) => {
            let _ = writeln!(out, "No compiler for this project{pinned}: {e:#}");
        }
        (Ok(_), None) => {}
    }
    print!("{out}");
    Ok(crate::exit::SUCCESS)
}

fn fmt_pair((a, b): (u64, u64)) -> String {
    format!("{a}.{b}")
}
