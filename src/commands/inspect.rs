//! `cargo gpu inspect`: compile the kernels that are stale (not the runner, not the package),
//! then show per kernel and target what the cubin holds, the findings that cost money if missed,
//! and, when asked, the SASS or what changed since the previous build.

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::cli::{GlobalOpts, InspectArgs};
use crate::compile::pipeline;
use crate::compile::sources::{self, Profile};
use crate::inspect::report::{self, KernelReport, Tools};
use crate::inspect::{expect, text, warnings};
use crate::project::Project;
use crate::shell::Shell;

pub fn exec(shell: &Shell, global: &GlobalOpts, args: &InspectArgs) -> Result<i32> {
    let project = Project::load(shell, global.manifest_path.as_deref(), &args.targets)?;
    let profile = if args.release { Profile::Release } else { Profile::Debug };
    let stems: Vec<String> =
        sources::discover(&project.root, &project.kernels_dir)?.into_iter().map(|k| k.stem).collect();
    // A kernel source's name picks its cubins; any other name must be a kernel function's.
    let only = args.kernel.as_deref().filter(|k| stems.iter().any(|s| s == k));
    let function = args.kernel.as_deref().filter(|_| only.is_none());
    let (built, _) = pipeline::compile_kernels(shell, &project, profile, None, only, false)?;
    let tools = Tools::find()?;
    let state_dir = project.build_state_dir(profile.name());
    let color = shell.stdout_color();
    let mut shown = 0;
    for b in &built {
        let report = b.report.as_ref().context("the build made no report on this cubin")?;
        let wanted = |name: &str| function.map_or(true, |f| f == name);
        let functions: Vec<_> = report.entries().filter(|f| wanted(&f.name)).collect();
        if functions.is_empty() {
            continue;
        }
        shown += 1;
        let label = b.job.label();
        let expected = expect::expected(&project.expect, &b.job.kernel.stem, b.job.target);
        let findings = warnings::findings(&b.job.kernel.stem, b.job.target, report, expected);
        let missing = expect::missing(&project.expect, &[(b.job.kernel.stem.as_str(), b.job.target, report)]);
        let (_, previous_path) = report::paths(&state_dir, &b.job.cubin_name());
        let changes = args.diff.then(|| {
            KernelReport::load(&previous_path)
                .map(|p| report::diff(&p, report).into_iter().filter(|c| wanted(&c.function)).collect::<Vec<_>>())
        });
        let listing = if args.sass {
            let sass = tools.disassemble_with_lines(&b.path).read(Some(shell))?;
            Some(text::sass_listing(&sass, wanted, &project.root, color && !shell.json()))
        } else {
            None
        };
        if shell.json() {
            let mut v = json!({
                "reason": "gpu-inspect", "kernel": b.job.kernel.stem, "source": project.root.join(&b.job.kernel.rel),
                "target": b.job.target.to_string(), "profile": profile.name(), "cubin": b.path, "sha256": b.sha256,
                "functions": functions.iter().map(|f| json!({
                    "name": f.name, "registers": f.registers, "shared_bytes": f.shared, "local_bytes": f.local,
                    "stack_bytes": f.stack, "spill_store_bytes": f.spill_stores, "spill_load_bytes": f.spill_loads,
                    "barriers": f.barriers, "max_threads": f.max_threads, "trap_only": f.trap_only,
                    "census": f.census(), "instructions": f.total(), "opcodes": f.opcodes,
                })).collect::<Vec<_>>(),
                "findings": findings, "expect_missing": missing,
            });
            if let Some(changes) = &changes {
                v["diff"] = match changes {
                    Some(c) => json!({ "previous": true, "changes": c }),
                    None => json!({ "previous": false, "changes": [] }),
                };
            }
            if let Some(l) = &listing {
                v["sass"] = json!(l);
            }
            shell.emit_json(&v);
        } else {
            let mut out = format!("{label}, {} build", profile.name());
            for f in &functions {
                out.push('\n');
                out.push_str(&text::function(f));
            }
            if let Some(changes) = &changes {
                out.push('\n');
                out.push_str(&match changes {
                    None => "  no previous build of this kernel and target to compare with".to_string(),
                    Some(c) if c.is_empty() => "  unchanged since the previous build".to_string(),
                    Some(c) => format!("  changed since the previous build:\n{}", text::changes(c)),
                });
            }
            if let Some(l) = &listing {
                out.push_str(l);
            }
            shell.out(out + "\n");
        }
        warnings::show(shell, &label, &findings);
        for m in &missing {
            shell.warn(format!(
                "{label}: no `{}` in the SASS, which `[package.metadata.gpu.expect]` requires: `cargo gpu build` fails",
                m.instruction
            ));
        }
    }
    if shown == 0 {
        match function {
            Some(f) => bail!(
                "no kernel source or kernel function is called `{f}` (kernel sources: {}); run `cargo gpu inspect` to list every kernel function",
                stems.join(", ")
            ),
            None => bail!("no kernel functions in the cubins built"),
        }
    }
    Ok(crate::exit::SUCCESS)
}
