//! `cargo gpu runs [--cost]`: the recent runs recorded under `target/gpu/runs/` and a summary of
//! each sweep among them, or the cost ledger.

use anyhow::Result;

use crate::cli::{GlobalOpts, RunsArgs};
use crate::runs;
use crate::shell::Shell;

pub fn exec(shell: &Shell, global: &GlobalOpts, args: &RunsArgs) -> Result<i32> {
    let dir = crate::project::runs_dir(shell, global.manifest_path.as_deref(), None);
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
    if args.cost {
        print!("{}", runs::ledger(&records));
    } else {
        print!("{}{}", runs::table(&records), runs::sweep_table(&records, &dir));
    }
    Ok(crate::exit::SUCCESS)
}
