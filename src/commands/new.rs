//! `cargo gpu new` and `cargo gpu init`: write a project from an embedded template (made a git
//! repository as `cargo new` does), or add `[package.metadata.gpu]`, kernels and a runner to an
//! existing crate. Neither overwrites anything: every file is checked before the first one is
//! written.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::arch::{SmArch, Variant};
use crate::cli::{GlobalOpts, InitArgs, NewArgs};
use crate::manifest_edit;
use crate::shell::Shell;
use crate::templates::{self, Template, Vars};
use crate::toolchain;
use crate::vcs;

/// The template's targets; for the basic one, those of the local GPUs, else sm_90a.
pub fn targets_for(shell: &Shell, template: &Template) -> Result<(Vec<SmArch>, String)> {
    if !template.targets.is_empty() {
        let targets = template.targets.iter().map(|t| t.parse()).collect::<Result<Vec<SmArch>>>()?;
        return Ok((targets, format!("the {} template", template.name)));
    }
    let (gpus, _) = toolchain::local_gpus(shell);
    let mut targets: Vec<SmArch> = gpus.iter().map(|g| g.compute_cap.suggested_arch()).collect();
    targets.sort();
    targets.dedup();
    if targets.is_empty() {
        Ok((vec![SmArch::new(9, 0, Variant::Specific)], "no local GPU; Hopper".into()))
    } else {
        let names: Vec<&str> = gpus.iter().map(|g| g.name.as_str()).collect();
        Ok((targets, format!("the local GPU: {}", names.join(", "))))
    }
}

/// Refuses when any of `files` already exists below `root`.
fn refuse_existing(root: &Path, files: &[(PathBuf, String)]) -> Result<()> {
    let existing: Vec<String> =
        files.iter().filter(|(p, _)| root.join(p).exists()).map(|(p, _)| p.display().to_string()).collect();
    if !existing.is_empty() {
        bail!(
            "refusing to overwrite {} in {}: {}",
            plural(existing.len(), "file"),
            root.display(),
            existing.join(", ")
        );
    }
    Ok(())
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn write_files(root: &Path, files: &[(PathBuf, String)]) -> Result<()> {
    for (rel, text) in files {
        let path = root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("failed to create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("failed to write {}", path.display()))?;
    }
    Ok(())
}

fn targets_text(targets: &[SmArch]) -> String {
    targets.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ")
}

pub fn exec_new(shell: &Shell, _global: &GlobalOpts, args: &NewArgs) -> Result<i32> {
    let template = templates::find(&args.template)?;
    let name = match &args.name {
        Some(n) => n.clone(),
        None => match args.path.file_name() {
            Some(n) => n.to_string_lossy().into_owned(),
            None => bail!("cannot take a package name from {}: name it with --name", args.path.display()),
        },
    };
    if let Err(e) = templates::check_crate_name(&name) {
        let hint = if args.name.is_none() {
            "it comes from the folder name: choose another with --name"
        } else {
            "choose another --name"
        };
        bail!("{e} ({hint})");
    }
    if args.path.exists() {
        bail!(
            "refusing to overwrite {}: it already exists (use `cargo gpu init` inside an existing crate)",
            args.path.display()
        );
    }
    let vcs = vcs::plan(shell, args.vcs, &args.path)?;
    let (targets, why) = targets_for(shell, template)?;
    let mut files = templates::project_files(
        template,
        &Vars { name: name.clone(), targets: targets.clone(), expect: template.expect },
    )?;
    if vcs.writes_gitignore() {
        files.push((PathBuf::from(".gitignore"), vcs::GITIGNORE.to_string()));
    }
    write_files(&args.path, &files)?;
    vcs::apply(shell, vcs, &args.path)?;
    shell.status(
        "Created",
        format!(
            "`{}` project `{name}` for {} ({why}) in {}",
            template.name,
            targets_text(&targets),
            args.path.display()
        ),
    );
    shell.note(format!("next: cd {} && cargo gpu build && cargo gpu remote-run", args.path.display()));
    Ok(crate::exit::SUCCESS)
}

/// `.cargo/config.toml` of the crate at `root` with cargo-gpu as the host's target runner.
fn write_target_runner(shell: &Shell, root: &Path, remote: Option<&str>) -> Result<()> {
    let path = root.join(".cargo/config.toml");
    let existing = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("failed to read {}", path.display())),
    };
    let mut runner: Vec<String> = vec!["cargo-gpu".into(), "exec".into()];
    if let Some(r) = remote {
        runner.extend(["--remote".to_string(), r.to_string()]);
    }
    runner.push("--".into());
    let triple = crate::compile::runner::HOST_TRIPLE;
    let edited = manifest_edit::set_target_runner(&existing, &path, triple, &runner)?;
    std::fs::create_dir_all(root.join(".cargo"))
        .with_context(|| format!("failed to create {}/.cargo", root.display()))?;
    std::fs::write(&path, edited).with_context(|| format!("failed to write {}", path.display()))?;
    shell.status(
        "Runner",
        format!(
            "{}: cargo test, cargo run and cargo nextest run now run through `{}`",
            path.display(),
            runner.join(" ")
        ),
    );
    Ok(())
}

pub fn exec_init(shell: &Shell, global: &GlobalOpts, args: &InitArgs) -> Result<i32> {
    let template = templates::find(&args.template)?;
    let manifest_path = match (&args.path, &global.manifest_path) {
        (Some(dir), _) => dir.join("Cargo.toml"),
        (None, Some(m)) => m.clone(),
        (None, None) => std::env::current_dir().context("failed to read the current folder")?.join("Cargo.toml"),
    };
    if !manifest_path.is_file() {
        bail!("{} does not exist: run `cargo gpu init` in a crate, or `cargo gpu new NAME`", manifest_path.display());
    }
    let root = manifest_path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let manifest = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("failed to read {}", manifest_path.display()))?;
    if args.runner {
        write_target_runner(shell, &root, args.remote.as_deref())?;
        if manifest_edit::has_gpu_metadata(&manifest) {
            return Ok(crate::exit::SUCCESS);
        }
    }
    let (targets, why) = targets_for(shell, template)?;
    let edited = manifest_edit::init_manifest(&manifest, &manifest_path, &targets, template.expect)?;
    let files = templates::init_files(template);
    refuse_existing(&root, &files)?;
    write_files(&root, &files)?;
    std::fs::write(&manifest_path, edited).with_context(|| format!("failed to write {}", manifest_path.display()))?;
    shell.status(
        "Added",
        format!(
            "[package.metadata.gpu] for {} ({why}), kernels/ and the runner `{}` (src/bin/{}/) from the `{}` template",
            targets_text(&targets),
            templates::INIT_RUNNER,
            templates::INIT_RUNNER,
            template.name
        ),
    );
    shell.note("next: cargo gpu build && cargo gpu remote-run");
    Ok(crate::exit::SUCCESS)
}
