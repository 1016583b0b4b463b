//! `cargo gpu runs [--cost]`: the recent runs recorded under `target/gpu/runs/`, or the cost ledger.

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
    print!("{}", if args.cost { runs::ledger(&records) } else { runs::table(&records) });
    Ok(crate::exit::SUCCESS)
}
