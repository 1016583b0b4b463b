//! The project being built: its Cargo manifest read through `cargo metadata`, the
//! `[package.metadata.gpu]` table validated, and the command line laid over both, resolved into one
//! [`Project`] before any work starts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::arch::SmArch;
use crate::cmd::Cmd;
use crate::shell::Shell;

/// `[package.metadata.gpu]` as written in Cargo.toml. Unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GpuMetadata {
    /// Folder holding the `.cu` sources, relative to Cargo.toml (default `kernels`).
    pub kernels: Option<PathBuf>,
    /// Targets built when no `--target` is given.
    #[serde(default)]
    pub targets: Vec<SmArch>,
    /// Extra nvcc flags for every kernel.
    #[serde(default)]
    pub nvcc_flags: Vec<String>,
    /// Extra include folders, relative to Cargo.toml.
    #[serde(default)]
    pub include_dirs: Vec<PathBuf>,
    /// The binary target that is the host runner (default: the package's only binary).
    pub runner: Option<String>,
    /// Rust target triples to build the runner for: one, or a list for a package that runs on
    /// several machines (default: this machine's, and the remote's for `remote-run`).
    #[serde(default, deserialize_with = "one_or_many")]
    pub runner_target: Vec<String>,
    /// The oldest glibc the runner must start on (`"2.28"`; default [`DEFAULT_RUNNER_GLIBC`]).
    pub runner_glibc: Option<String>,
    /// The remote `cargo gpu remote-run` uses when neither `--remote` nor `CARGO_GPU_REMOTE` names one.
    pub remote: Option<String>,
    /// The CUDA toolchain this project builds with (`12.9`), installed by `cargo gpu toolchain
    /// install`; `CARGO_GPU_CUDA` overrides it.
    pub cuda: Option<String>,
    /// Files the tests read at run time, shipped with `cargo gpu test` and `exec` (globs relative
    /// to Cargo.toml, such as `tests/data/**`); `CARGO_MANIFEST_DIR` points at them there.
    #[serde(default)]
    pub test_files: Vec<String>,
    /// Instructions each kernel's SASS must have, per target: `hgemm = { sm_90a = ["HGMMA"] }`.
    #[serde(default)]
    pub expect: Expectations,
}

/// `[package.metadata.gpu.expect]`: kernel (source stem) -> target -> SASS instructions.
pub type Expectations = BTreeMap<String, BTreeMap<SmArch, Vec<String>>>;

/// Everything the build needs, resolved and validated.
#[derive(Debug, Clone)]
pub struct Project {
    pub name: String,
    pub version: String,
    pub manifest_path: PathBuf,
    pub root: PathBuf,
    /// Cargo's target directory (honours `CARGO_TARGET_DIR` and `.cargo/config.toml`).
    pub target_dir: PathBuf,
    pub kernels_dir: PathBuf,
    pub targets: Vec<SmArch>,
    pub nvcc_flags: Vec<String>,
    pub include_dirs: Vec<PathBuf>,
    pub runner: String,
    /// Why the package has no runner (no binary, or several and none named): an error for
    /// `build`, nothing for `exec` and `test`.
    pub runner_problem: Option<String>,
    /// The triples to build the runner for; none: this machine's.
    pub runner_targets: Vec<String>,
    /// The oldest glibc the runner must start on.
    pub runner_glibc: (u32, u32),
    /// `[package.metadata.gpu] remote`: this project's default remote.
    pub remote: Option<String>,
    /// `[package.metadata.gpu] cuda`: the pinned CUDA toolchain.
    pub cuda: Option<String>,
    /// `[package.metadata.gpu] test-files`: globs of the files the tests read at run time.
    pub test_files: Vec<String>,
    pub expect: Expectations,
}

/// The oldest glibc a runner starts on unless `runner-glibc` says otherwise. A plain `cargo
/// build` of a Rust program that loads libcuda with dlopen (cudarc's dynamic loading) needs
/// GLIBC_2.34 anyway: glibc 2.34 moved dlopen (with libdl and libpthread) into libc, and a build
/// against a newer glibc binds those symbols at 2.34. And 2.34 is what the common GPU images have
/// or pass: Ubuntu 22.04 (2.35) and 24.04 (2.39), Debian 12 (2.36), RHEL 9 (2.34), Amazon Linux
/// 2023 (2.34). So a plain build on such a machine already fits, and cargo-zigbuild is needed only
/// for an older floor (Ubuntu 20.04 has 2.31), another machine type, or a local glibc whose newer
/// symbols the build picked up.
pub const DEFAULT_RUNNER_GLIBC: (u32, u32) = (2, 34);

/// The oldest glibc zig links against.
const OLDEST_GLIBC: (u32, u32) = (2, 17);

/// `runner-target` as one triple or a list of them.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged, expecting = "a target triple or a list of target triples")]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(t) => vec![t],
        OneOrMany::Many(v) => v,
    })
}

/// Refuses a runner triple that cannot reach the GPU: the runner loads libcuda with dlopen, so it
/// links glibc dynamically; a static musl runner cannot.
pub fn check_runner_target(triple: &str, source: &str) -> Result<()> {
    if triple.ends_with("-linux-gnu") && triple.split('-').count() >= 3 {
        return Ok(());
    }
    let machine = crate::package::manifest::triple_machine(triple);
    bail!(
        "{source}: `{triple}` is not a glibc Linux target: the runner loads libcuda with dlopen, so it must link \
         glibc dynamically (a static musl runner cannot reach the GPU); use `{}`",
        crate::package::manifest::gnu_triple(machine)
    )
}

/// `runner-glibc`, checked: a version zig can link against.
fn parse_runner_glibc(text: &str, manifest_path: &Path) -> Result<(u32, u32)> {
    match crate::package::manifest::parse_version(text) {
        Some(v) if v >= OLDEST_GLIBC && v.0 == 2 => Ok(v),
        _ => bail!(
            "invalid `[package.metadata.gpu]` in {} at key `runner-glibc`: `{text}` is not a glibc version from 2.17 on (write it as \"2.28\")",
            manifest_path.display()
        ),
    }
}

/// `HGMMA`, `UTMALDG.MULTICAST`, `BAR.SYNC`: an opcode in capitals, its modifiers after dots.
fn is_instruction_name(s: &str) -> bool {
    let mut parts = s.split('.');
    let base = parts.next().unwrap_or_default();
    !base.is_empty()
        && base.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && parts.all(|m| !m.is_empty() && m.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
}

/// The cargo that ran us (`$CARGO`), or `cargo` from PATH.
pub fn cargo_program() -> PathBuf {
    std::env::var_os("CARGO").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("cargo"))
}

/// Finds Cargo.toml: the given path, or the nearest one from the current folder upwards.
pub fn locate_manifest(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        if p.file_name().map(|n| n != "Cargo.toml").unwrap_or(true) {
            bail!("the manifest path `{}` must point to a Cargo.toml", p.display());
        }
        if !p.is_file() {
            bail!("manifest path `{}` does not exist", p.display());
        }
        return std::path::absolute(p).with_context(|| format!("failed to resolve {}", p.display()));
    }
    let cwd = std::env::current_dir().context("failed to read the current directory")?;
    for dir in cwd.ancestors() {
        let candidate = dir.join("Cargo.toml");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "could not find `Cargo.toml` in `{}` or any parent directory: run this inside a project, pass --manifest-path, or make one with `cargo gpu new`",
        cwd.display()
    )
}

/// The files whose change can change `cargo metadata --no-deps` for this manifest.
fn metadata_inputs(manifest_path: &Path) -> Vec<PathBuf> {
    let mut files = vec![manifest_path.to_path_buf()];
    for dir in manifest_path.parent().into_iter().flat_map(Path::ancestors) {
        files.push(dir.join("Cargo.toml"));
        files.push(dir.join(".cargo/config.toml"));
        files.push(dir.join(".cargo/config"));
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    if let Some(home) = cargo_home {
        files.push(home.join("config.toml"));
        files.push(home.join("config"));
    }
    files
}

impl GpuMetadata {
    /// Parses the `gpu` value of `package.metadata`, naming the file and the key on error.
    pub fn from_value(value: &serde_json::Value, manifest_path: &Path) -> Result<GpuMetadata> {
        if value.is_null() {
            return Ok(GpuMetadata::default());
        }
        serde_path_to_error::deserialize(value).map_err(|e| {
            let key = e.path().to_string();
            let key = if key == "." { String::new() } else { format!(" at key `{key}`") };
            anyhow::anyhow!("invalid `[package.metadata.gpu]` in {}{key}: {}", manifest_path.display(), e.inner())
        })
    }
}

impl Project {
    /// Reads the project through `cargo metadata` and lays `cli_targets` over its configuration.
    pub fn load(shell: &Shell, manifest_path: Option<&Path>, cli_targets: &[String]) -> Result<Project> {
        let manifest_path = locate_manifest(manifest_path)?;
        let cmd = Cmd::new(cargo_program(), "read the project with `cargo metadata`")
            .args(["metadata", "--no-deps", "--format-version", "1", "--manifest-path"])
            .arg(&manifest_path);
        // `cargo metadata` costs as much as a no-op build; its answer depends only on the
        // manifests and cargo configs above the project and on the target-dir variables.
        let key = format!(
            "{cmd}\n{:?}\n{:?}",
            std::env::var_os("CARGO_TARGET_DIR"),
            std::env::var_os("CARGO_BUILD_TARGET_DIR")
        );
        let json: String = crate::cache::memo("metadata", &key, &metadata_inputs(&manifest_path), || {
            String::from_utf8(cmd.output(Some(shell))?.stdout).context("`cargo metadata` printed non-UTF-8")
        })?;
        let metadata: cargo_metadata::Metadata = serde_json::from_str(&json)
            .with_context(|| format!("failed to parse `cargo metadata` output for {}", manifest_path.display()))?;
        Project::from_metadata(&metadata, &manifest_path, cli_targets)
    }

    pub fn from_metadata(
        metadata: &cargo_metadata::Metadata,
        manifest_path: &Path,
        cli_targets: &[String],
    ) -> Result<Project> {
        let canonical = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
        let wanted = canonical(manifest_path);
        let package = metadata
            .packages
            .iter()
            .find(|p| canonical(p.manifest_path.as_std_path()) == wanted)
            .with_context(|| {
                format!(
                    "{} is a virtual workspace manifest: pass --manifest-path with the Cargo.toml of the package that holds the kernels",
                    manifest_path.display()
                )
            })?;
        let gpu = GpuMetadata::from_value(&package.metadata["gpu"], manifest_path)?;
        let root = manifest_path.parent().expect("a manifest path has a parent").to_path_buf();

        let targets: Vec<SmArch> = if cli_targets.is_empty() {
            gpu.targets.clone()
        } else {
            cli_targets
                .iter()
                .map(|t| t.parse::<SmArch>().map_err(|e| crate::exit::usage(format!("invalid --target: {e}"))))
                .collect::<Result<_>>()?
        };
        if targets.is_empty() {
            bail!(
                "no GPU targets to build: pass --target (e.g. --target sm_90a) or add `targets = [\"sm_90a\"]` to `[package.metadata.gpu]` in {}",
                manifest_path.display()
            );
        }
        let mut unique = Vec::new();
        for t in targets {
            if !unique.contains(&t) {
                unique.push(t);
            }
        }

        let bins: Vec<&str> = package.targets.iter().filter(|t| t.is_bin()).map(|t| t.name.as_str()).collect();
        // A crate with no binary (or several, none named) builds no package, but its tests and
        // binaries still run through `cargo gpu exec` and `test`: the problem waits for `build`.
        let (runner, runner_problem) = match &gpu.runner {
            Some(r) if bins.contains(&r.as_str()) => (r.clone(), None),
            Some(r) => bail!(
                "invalid `[package.metadata.gpu]` in {} at key `runner`: `{r}` is not a binary of package `{}` (binaries: {})",
                manifest_path.display(),
                package.name,
                if bins.is_empty() { "none".to_string() } else { bins.join(", ") }
            ),
            None => match bins.as_slice() {
                [one] => (one.to_string(), None),
                [] => (
                    String::new(),
                    Some(format!(
                        "package `{}` has no binary to use as the host runner: add src/main.rs (see `cargo gpu new`) or a [[bin]] target",
                        package.name
                    )),
                ),
                many => (
                    String::new(),
                    Some(format!(
                        "package `{}` has several binaries ({}): name the host runner with `runner = \"NAME\"` in `[package.metadata.gpu]` of {}",
                        package.name,
                        many.join(", "),
                        manifest_path.display()
                    )),
                ),
            },
        };

        for (kernel, targets) in &gpu.expect {
            for (target, instructions) in targets {
                if let Some(bad) = instructions.iter().find(|i| !is_instruction_name(i)) {
                    bail!(
                        "invalid `[package.metadata.gpu]` in {} at key `expect.{kernel}.{target}`: `{bad}` is not a SASS \
                         instruction name: write its opcode in capitals, with modifiers if they matter (`HGMMA`, \
                         `UTMALDG.MULTICAST`)",
                        manifest_path.display()
                    );
                }
            }
        }
        let source = format!("invalid `[package.metadata.gpu]` in {} at key `runner-target`", manifest_path.display());
        for t in &gpu.runner_target {
            check_runner_target(t, &source)?;
        }
        let runner_glibc = match &gpu.runner_glibc {
            Some(v) => parse_runner_glibc(v, manifest_path)?,
            None => DEFAULT_RUNNER_GLIBC,
        };
        let kernels_dir = root.join(gpu.kernels.clone().unwrap_or_else(|| PathBuf::from("kernels")));
        Ok(Project {
            name: package.name.to_string(),
            version: package.version.to_string(),
            manifest_path: manifest_path.to_path_buf(),
            target_dir: metadata.target_directory.clone().into_std_path_buf(),
            kernels_dir,
            targets: unique,
            nvcc_flags: gpu.nvcc_flags.clone(),
            include_dirs: gpu.include_dirs.iter().map(|d| root.join(d)).collect(),
            runner,
            runner_problem,
            runner_targets: gpu.runner_target.clone(),
            runner_glibc,
            remote: gpu.remote.clone(),
            cuda: gpu.cuda.clone(),
            test_files: gpu.test_files.clone(),
            expect: gpu.expect.clone(),
            root,
        })
    }

    /// The files the project was read from: while they are unchanged, the same command line in
    /// the same folder and environment reads the same project.
    pub fn inputs(&self) -> Vec<PathBuf> {
        metadata_inputs(&self.manifest_path)
    }

    /// `target/gpu/<profile>/<name>/`.
    pub fn package_dir(&self, profile: &str) -> PathBuf {
        self.target_dir.join("gpu").join(profile).join(&self.name)
    }

    /// Where fingerprints and other build state live: `target/gpu/<profile>/.build/<name>/`.
    pub fn build_state_dir(&self, profile: &str) -> PathBuf {
        self.target_dir.join("gpu").join(profile).join(".build").join(&self.name)
    }
}

impl Project {
    /// Where this project's run records go (see [`runs_dir`]).
    pub fn runs_dir(&self) -> PathBuf {
        env_runs_dir().unwrap_or_else(|| self.target_dir.join("gpu").join(crate::runs::RUNS_FOLDER))
    }
}

/// `$CARGO_TARGET_DIR/gpu/runs`, when that variable is set: it wins over every other place.
fn env_runs_dir() -> Option<PathBuf> {
    let t = std::env::var_os("CARGO_TARGET_DIR").filter(|t| !t.is_empty())?;
    Some(PathBuf::from(t).join("gpu").join(crate::runs::RUNS_FOLDER))
}

/// `target/gpu/runs` of the project: `CARGO_TARGET_DIR`, else the target folder of the package
/// being run (`<target>/gpu/<profile>/<name>`), else the project's (through `cargo metadata`,
/// only when a Cargo.toml is found), else `./target`.
pub fn runs_dir(shell: &Shell, manifest_path: Option<&Path>, package: Option<&Path>) -> PathBuf {
    if let Some(dir) = env_runs_dir() {
        return dir;
    }
    if let Some(gpu) = package.and_then(|p| std::path::absolute(p).ok()).and_then(|p| {
        let gpu = p.parent()?.parent()?.to_path_buf();
        (gpu.file_name()? == "gpu").then_some(gpu)
    }) {
        return gpu.join(crate::runs::RUNS_FOLDER);
    }
    if let Ok(m) = locate_manifest(manifest_path) {
        if let Ok(p) = Project::load(shell, Some(&m), &[]) {
            return p.runs_dir();
        }
    }
    PathBuf::from("target").join("gpu").join(crate::runs::RUNS_FOLDER)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<GpuMetadata> {
        GpuMetadata::from_value(&v, Path::new("/p/Cargo.toml"))
    }

    #[test]
    fn full_table_parses() {
        let g = parse(json!({
            "kernels": "cuda", "targets": ["sm_90a", "sm_100a"], "nvcc-flags": ["-std=c++20"],
            "include-dirs": ["include"], "runner": "bench", "runner-target": "x86_64-unknown-linux-gnu"
        }))
        .unwrap();
        assert_eq!(g.kernels, Some(PathBuf::from("cuda")));
        assert_eq!(g.targets.len(), 2);
        assert_eq!(g.nvcc_flags, vec!["-std=c++20"]);
        assert_eq!(g.runner.as_deref(), Some("bench"));
        assert_eq!(g.runner_target, ["x86_64-unknown-linux-gnu"]);
    }

    #[test]
    fn runner_targets_and_glibc_floor_parse() {
        let g = parse(
            json!({"runner-target": ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"], "runner-glibc": "2.28"}),
        )
        .unwrap();
        assert_eq!(g.runner_target.len(), 2);
        assert_eq!(
            parse_runner_glibc(g.runner_glibc.as_deref().unwrap(), Path::new("/p/Cargo.toml")).unwrap(),
            (2, 28)
        );
        let err = parse(json!({"runner-target": 3})).unwrap_err().to_string();
        assert!(err.contains("at key `runner-target`") && err.contains("a target triple or a list"), "{err}");
        for bad in ["2.16", "3.1", "new"] {
            let err = parse_runner_glibc(bad, Path::new("/p/Cargo.toml")).unwrap_err().to_string();
            assert!(err.contains("at key `runner-glibc`: `") && err.contains("from 2.17 on"), "{err}");
        }
        let err = check_runner_target("x86_64-unknown-linux-musl", "--runner-target").unwrap_err().to_string();
        assert!(
            err.contains("must link glibc dynamically") && err.ends_with("use `x86_64-unknown-linux-gnu`"),
            "{err}"
        );
        assert!(check_runner_target("aarch64-unknown-linux-gnu", "x").is_ok());
    }

    #[test]
    fn expectations_parse_per_kernel_and_target() {
        let g = parse(json!({"expect": {"hgemm": {"sm_90a": ["HGMMA", "UTMALDG.MULTICAST"]}}})).unwrap();
        assert_eq!(g.expect["hgemm"][&"sm_90a".parse::<SmArch>().unwrap()], ["HGMMA", "UTMALDG.MULTICAST"]);
        let err = parse(json!({"expect": {"hgemm": {"sm_99z": ["HGMMA"]}}})).unwrap_err().to_string();
        assert!(err.contains("at key `expect.hgemm.sm_99z`: `sm_99z` is not a GPU target"), "{err}");
        assert!(is_instruction_name("HGMMA") && is_instruction_name("UTMALDG.2D.MULTICAST"));
        assert!(!is_instruction_name("hgmma") && !is_instruction_name("HGMMA.") && !is_instruction_name(""));
    }

    #[test]
    fn missing_table_is_the_default() {
        let g = parse(serde_json::Value::Null).unwrap();
        assert!(g.targets.is_empty() && g.kernels.is_none());
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let err = parse(json!({"kernel": "k"})).unwrap_err().to_string();
        assert!(err.contains("invalid `[package.metadata.gpu]` in /p/Cargo.toml at key `kernel`"), "{err}");
        assert!(err.contains("unknown field `kernel`"), "{err}");
    }

    #[test]
    fn bad_value_names_the_key() {
        let err = parse(json!({"targets": ["sm_90a", "sm_99z"]})).unwrap_err().to_string();
        assert!(err.contains("at key `targets[1]`"), "{err}");
        assert!(err.contains("`sm_99z` is not a GPU target"), "{err}");
        let err = parse(json!({"targets": "sm_90a"})).unwrap_err().to_string();
        assert!(err.contains("at key `targets`") && err.contains("expected a sequence"), "{err}");
    }

    #[test]
    fn missing_manifest_path_is_explained() {
        let err = locate_manifest(Some(Path::new("/nonexistent/Cargo.toml"))).unwrap_err().to_string();
        assert_eq!(err, "manifest path `/nonexistent/Cargo.toml` does not exist");
    }
}
