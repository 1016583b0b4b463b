//! `cargo gpu runs [--cost]`: the recent runs recorded under `target/gpu/runs/`, or the cost ledger.
//! Also where that folder is, for every command that reads or writes run records.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::cli::{GlobalOpts, RunsArgs};
use crate::project::{locate_manifest, Project};
use crate::runs;
use crate::shell::Shell;

/// `target/gpu/runs` of the project: `CARGO_TARGET_DIR`, else the target folder of the package
/// being run (`<target>/gpu/<profile>/<name>`), else the project's (through `cargo metadata`,
/// only when a Cargo.toml is found), else `./target`.
pub fn runs_dir(shell: &Shell, global: &GlobalOpts, package: Option<&Path>) -> PathBuf {
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR").filter(|t| !t.is_empty()) {
        return PathBuf::from(t).join("gpu").join("runs");
    }
    if let Some(gpu) = package.and_then(|p| std::path::absolute(p).ok()).and_then(|p| {
        let gpu = p.parent()?.parent()?.to_path_buf();
        (gpu.file_name()? == "gpu").then_some(gpu)
    }) {
        return gpu.join("runs");
    }
    if let Ok(m) = locate_manifest(global.manifest_path.as_deref()) {
        if let Ok(p) = Project::load(shell, Some(&m), &[]) {
            return p.target_dir.join("gpu").join("runs");
        }
    }
    PathBuf::from("target").join("gpu").join("runs")
}

pub fn exec(shell: &Shell, global: &GlobalOpts, args: &RunsArgs) -> Result<i32> {
    let dir = runs_dir(shell, global, None);
    let records = runs::list(&dir)?;
    if shell.json() {
        for r in &records {
            shell.emit_json(&serde_json::json!({"reason": "gpu-run", "record": r}));
        }
        return Ok(crate::exit::SUCCESS);
    }
    if records.is_empty() {
        shell.note(format!("no runs recorded in {}", dir.display()));
        return Ok(crate::exit::SUCCESS);
    }
    print!("{}", if args.cost { runs::ledger(&records) } else { runs::table(&records) });
    Ok(crate::exit::SUCCESS)
}
