//! cargo-zigbuild and zig, the runner's linker when the runner must start on an older glibc than
//! this machine's or on another machine type: zig links against the glibc version asked for
//! (`--target aarch64-unknown-linux-gnu.2.28`) from its own stubs, so no cross sysroot is needed.
//! Both come from PyPI (the `cargo-zigbuild` and `ziglang` wheels), pinned, installed on first
//! use into `<data>/zigbuild-<version>/` without root (see `pypi`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::cmd::Cmd;
use crate::shell::Shell;

/// The pinned wheels, checked together with rustc 1.95: x86_64 and aarch64 runners of the
/// kernels-example linked against glibc 2.28.
pub const CARGO_ZIGBUILD_VERSION: &str = "0.22.3";
pub const ZIG_VERSION: &str = "0.14.1";

/// An installed cargo-zigbuild and the zig it uses.
#[derive(Debug, Clone)]
pub struct Zigbuild {
    /// `bin/cargo-zigbuild` of the venv.
    pub program: PathBuf,
    /// `ziglang/zig` in its site-packages, handed to cargo-zigbuild as `CARGO_ZIGBUILD_ZIG_PATH`
    /// (it would otherwise look for `zig` on PATH, then run `python3 -m ziglang` with whatever
    /// python3 is on PATH).
    pub zig: PathBuf,
}

impl Zigbuild {
    /// `cargo-zigbuild zigbuild`, with the zig of this install.
    pub fn command(&self, purpose: impl Into<String>) -> Cmd {
        Cmd::new(&self.program, purpose).arg("zigbuild").env("CARGO_ZIGBUILD_ZIG_PATH", &self.zig)
    }
}

fn install_dir() -> Result<PathBuf> {
    Ok(crate::pypi::data_dir()?.join(format!("zigbuild-{CARGO_ZIGBUILD_VERSION}-zig-{ZIG_VERSION}")))
}

/// The install in `venv`, when both programs are there.
fn found(venv: &Path) -> Option<Zigbuild> {
    let program = venv.join("bin/cargo-zigbuild");
    let zig = crate::pypi::site_packages(venv)?.join("ziglang/zig");
    (program.is_file() && zig.is_file()).then_some(Zigbuild { program, zig })
}

/// cargo-zigbuild, installed from PyPI on first use (one process at a time installs it).
pub fn get(shell: &Shell) -> Result<Zigbuild> {
    let dir = install_dir()?;
    if let Some(z) = found(&dir) {
        return Ok(z);
    }
    let parent = dir.parent().context("an install folder has a parent")?;
    std::fs::create_dir_all(parent).with_context(|| format!("failed to create {}", parent.display()))?;
    let _lock = crate::safe_fs::lock(&parent.join(".zigbuild.lock"), crate::exit::check_interrupt)?;
    if let Some(z) = found(&dir) {
        return Ok(z);
    }
    if dir.exists() {
        // Something else with its name, not a whole install: replaced.
        std::fs::remove_dir_all(&dir).with_context(|| format!("failed to remove {}", dir.display()))?;
    }
    let packages = [format!("cargo-zigbuild=={CARGO_ZIGBUILD_VERSION}"), format!("ziglang=={ZIG_VERSION}")];
    let packages: Vec<&str> = packages.iter().map(String::as_str).collect();
    let what = format!("cargo-zigbuild {CARGO_ZIGBUILD_VERSION} with zig {ZIG_VERSION}, the runner's cross-linker");
    crate::pypi::install(shell, &dir, &packages, &what, |venv| {
        found(venv).map(|_| ()).with_context(|| {
            format!("the wheels of {what} installed no bin/cargo-zigbuild or ziglang/zig into {}", venv.display())
        })
    })?;
    shell.status(
        "Installed",
        format!("cargo-zigbuild {CARGO_ZIGBUILD_VERSION} and zig {ZIG_VERSION} in {}", dir.display()),
    );
    found(&dir).with_context(|| format!("the new install in {} is incomplete", dir.display()))
}

/// The files whose change can change which toolchain rustup picks in `project_root`.
fn toolchain_inputs(project_root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in project_root.ancestors() {
        files.push(dir.join("rust-toolchain.toml"));
        files.push(dir.join("rust-toolchain"));
    }
    let rustup_home = std::env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".rustup")));
    files.extend(rustup_home.map(|h| h.join("settings.toml")));
    files
}

/// `rustc --print sysroot` in the project, so that its rust-toolchain.toml picks the toolchain as
/// cargo's will; remembered while the files that choose the toolchain stay the same, so that a
/// no-op cross build spawns no rustc.
fn sysroot(shell: &Shell, project_root: &Path) -> Result<PathBuf> {
    let rustc = std::env::var_os("RUSTC").filter(|r| !r.is_empty()).unwrap_or_else(|| "rustc".into());
    let key = format!("{rustc:?}\n{:?}\n{}", std::env::var_os("RUSTUP_TOOLCHAIN"), project_root.display());
    let text: String = crate::cache::memo("sysroot", &key, &toolchain_inputs(project_root), || {
        Cmd::new(&rustc, "find the Rust sysroot")
            .args(["--print", "sysroot"])
            .current_dir(project_root)
            .read(Some(shell))
    })?;
    Ok(PathBuf::from(text.trim()))
}

/// Makes sure Rust's standard library for `triple` (another machine's: this one's is always
/// there) is installed, which a cross build links: with `rustup target add` when rustup is there,
/// else the error names what to do.
pub fn ensure_target_std(shell: &Shell, project_root: &Path, triple: &str) -> Result<()> {
    let std_dir = sysroot(shell, project_root)?.join("lib/rustlib").join(triple);
    if std_dir.is_dir() {
        return Ok(());
    }
    if which::which("rustup").is_err() {
        bail!(
            "the Rust standard library for {triple} is not installed (no {}): run `rustup target add {triple}`, or add that target to this Rust installation",
            std_dir.display()
        );
    }
    shell.status("Installing", format!("the Rust standard library for {triple} (`rustup target add {triple}`)"));
    Cmd::new("rustup", format!("install the Rust standard library for {triple}"))
        .args(["target", "add", triple])
        .current_dir(project_root)
        .output(Some(shell))
        .with_context(|| {
            format!("could not install the Rust standard library for {triple}: run `rustup target add {triple}`")
        })?;
    Ok(())
}
