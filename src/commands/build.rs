//! `cargo gpu build`: compile every kernel for every target, build the runner, assemble the package.

use anyhow::Result;

use crate::cli::{BuildArgs, GlobalOpts};
use crate::compile::pipeline::{self, BuildOptions};
use crate::shell::Shell;

pub fn exec(shell: &Shell, global: &GlobalOpts, args: &BuildArgs) -> Result<i32> {
    let opts = BuildOptions {
        manifest_path: global.manifest_path.clone(),
        targets: args.targets.clone(),
        release: args.release,
        jobs: args.jobs,
        runner_targets: args.runner_targets.clone(),
        remote: None,
        early: true,
    };
    pipeline::build(shell, &opts)?;
    Ok(crate::exit::SUCCESS)
}
