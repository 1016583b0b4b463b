//! `manifest.toml`: what a package holds and what it needs to run. It travels with the package,
//! so a remote can be checked against it before anything is uploaded.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::arch::SmArch;
use crate::digest::sha256_file;

pub const MANIFEST_FILE: &str = "manifest.toml";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Manifest {
    pub package: PackageInfo,
    /// The host runners, one per target triple: a run picks the one for the remote's machine.
    #[serde(rename = "runner")]
    pub runners: Vec<RunnerEntry>,
    /// Every file of the package except the manifest, sorted by path.
    #[serde(default, rename = "file")]
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PackageInfo {
    pub name: String,
    pub version: String,
    /// `debug` (-G) or `release` (-O3 -lineinfo).
    pub profile: String,
    /// `git rev-parse HEAD` of the project, when it is in a git repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_revision: Option<String>,
    /// Whether the work tree had uncommitted changes when the package was built.
    #[serde(default)]
    pub git_dirty: bool,
    pub targets: Vec<SmArch>,
    pub nvcc_version: String,
    /// The oldest CUDA version the remote's driver must support to load every cubin (`12.8`).
    pub min_driver_cuda: String,
}

/// One `[[runner]]`: a build of the host runner for one target triple.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RunnerEntry {
    /// Its path inside the package: `bin/<name>`, or `bin/<triple>/<name>` when the package
    /// has several runners.
    pub path: String,
    /// The Rust target triple it was built for (`aarch64-unknown-linux-gnu`).
    pub triple: String,
    /// The oldest glibc it was built to start on (`2.34`).
    pub glibc_floor: String,
    /// The newest glibc symbol version it needs (`2.28`), if it links glibc.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glibc: Option<String>,
}

impl RunnerEntry {
    /// The machine it runs on, as `uname -m` names it.
    pub fn machine(&self) -> &str {
        triple_machine(&self.triple)
    }

    /// Its file name (`vector-add`), for messages.
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// The machine a Rust target triple runs on, as `uname -m` names it: the triple's first part.
pub fn triple_machine(triple: &str) -> &str {
    triple.split('-').next().unwrap_or(triple)
}

/// The glibc target triple of a machine as `uname -m` names it (`aarch64`).
pub fn gnu_triple(machine: &str) -> String {
    format!("{machine}-unknown-linux-gnu")
}

/// A glibc (`2.34`) or CUDA (`13.0`) version as a comparable pair; `2.2.5` is `(2, 2)`.
pub fn parse_version(v: &str) -> Option<(u32, u32)> {
    let mut parts = v.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().map(|m| m.parse().ok()).unwrap_or(Some(0))?;
    Some((major, minor))
}

/// `(2, 34)` as `2.34`.
pub fn glibc_text((major, minor): (u32, u32)) -> String {
    format!("{major}.{minor}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileEntry {
    /// Relative path with `/` separators (`kernels/vector_add.sm_90a.cubin`).
    pub path: String,
    pub size: u64,
    pub sha256: String,
    /// For cubins: the kernel source's stem and target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<SmArch>,
    /// Whether the file must be executable (the runner).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub executable: bool,
}

/// Whether a manifest path is a plain relative path that stays inside the package.
pub fn is_safe_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && path.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
        && !path.contains('\0')
}

impl Manifest {
    /// The package's files in `dir`, each checked against this manifest: (sha256, local file).
    pub fn verify(&self, dir: &Path) -> Result<Vec<(String, PathBuf)>> {
        let manifest = self;
        let mut files = Vec::new();
        for f in &manifest.files {
            if !is_safe_relative(&f.path) {
                bail!("the manifest of {} lists `{}`, which is not a plain relative path", dir.display(), f.path);
            }
            let path = dir.join(&f.path);
            let sha = sha256_file(&path).with_context(|| format!("failed to check package file {}", path.display()))?;
            if sha != f.sha256 {
                bail!(
                    "package file {} does not match {}/manifest.toml (sha256 {sha}, manifest says {}): rebuild the package",
                    path.display(),
                    dir.display(),
                    f.sha256
                );
            }
            files.push((f.sha256.clone(), path));
        }
        if manifest.runners.is_empty() {
            bail!("the manifest of {} names no runner: rebuild the package", dir.display());
        }
        for r in &manifest.runners {
            if !manifest.files.iter().any(|f| f.path == r.path) {
                bail!("the manifest of {} does not list its runner `{}`", dir.display(), r.path);
            }
        }
        Ok(files)
    }

    /// The runner for a machine (`uname -m`); for an unknown machine, the only runner.
    pub fn runner_for(&self, machine: Option<&str>) -> Option<&RunnerEntry> {
        match machine {
            Some(m) => self.runners.iter().find(|r| r.machine() == m),
            None if self.runners.len() == 1 => self.runners.first(),
            None => None,
        }
    }

    /// The files a run with `runner` needs: every file but the other runners.
    pub fn files_for<'a>(&'a self, runner: &'a RunnerEntry) -> impl Iterator<Item = &'a FileEntry> + 'a {
        self.files.iter().filter(move |f| f.path == runner.path || !self.runners.iter().any(|r| r.path == f.path))
    }

    /// `x86_64-unknown-linux-gnu, aarch64-unknown-linux-gnu`: the triples of its runners.
    pub fn runner_triples(&self) -> String {
        self.runners.iter().map(|r| r.triple.as_str()).collect::<Vec<_>>().join(", ")
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a manifest always serializes")
    }

    pub fn from_toml(text: &str) -> Result<Manifest> {
        Ok(toml::from_str(text)?)
    }

    pub fn read(package_dir: &Path) -> Result<Manifest> {
        let path = package_dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("failed to read package manifest {}", path.display()))?;
        Manifest::from_toml(&text).with_context(|| format!("failed to parse package manifest {}", path.display()))
    }

    /// A digest of the whole package: the manifest's own hash, which covers every file's hash.
    pub fn digest(&self) -> String {
        crate::digest::sha256_hex(self.to_toml().as_bytes())
    }

    pub fn cubins(&self) -> impl Iterator<Item = &FileEntry> {
        self.files.iter().filter(|f| f.target.is_some())
    }
}

/// A small package for tests: the runner `bin/demo` (sha256 "a" x 64) and one cubin
/// `kernels/k.sm_90a.cubin` (sha256 "b" x 64), whatever `targets` says.
#[cfg(test)]
impl Manifest {
    pub(crate) fn sample(targets: &[&str]) -> Manifest {
        Manifest {
            package: PackageInfo {
                name: "demo".into(),
                version: "0.1.0".into(),
                profile: "debug".into(),
                git_revision: Some("0123abcd".into()),
                git_dirty: true,
                targets: targets.iter().map(|t| t.parse().unwrap()).collect(),
                nvcc_version: "13.0.88".into(),
                min_driver_cuda: "13.0".into(),
            },
            runners: vec![RunnerEntry {
                path: "bin/demo".into(),
                triple: "x86_64-unknown-linux-gnu".into(),
                glibc_floor: "2.34".into(),
                glibc: Some("2.34".into()),
            }],
            files: vec![
                FileEntry {
                    path: "bin/demo".into(),
                    size: 3,
                    sha256: "a".repeat(64),
                    kernel: None,
                    target: None,
                    executable: true,
                },
                FileEntry {
                    path: "kernels/k.sm_90a.cubin".into(),
                    size: 2,
                    sha256: "b".repeat(64),
                    kernel: Some("k".into()),
                    target: Some("sm_90a".parse().unwrap()),
                    executable: false,
                },
            ],
        }
    }
}

/// The sample package with a second runner, for aarch64: both move to `bin/<triple>/demo`.
#[cfg(test)]
impl Manifest {
    pub(crate) fn sample_two_runners(targets: &[&str]) -> Manifest {
        let mut m = Manifest::sample(targets);
        let x86 = "bin/x86_64-unknown-linux-gnu/demo";
        m.runners[0].path = x86.into();
        m.files[0].path = x86.into();
        let arm = "bin/aarch64-unknown-linux-gnu/demo";
        m.runners.push(RunnerEntry {
            path: arm.into(),
            triple: "aarch64-unknown-linux-gnu".into(),
            glibc_floor: "2.28".into(),
            glibc: Some("2.28".into()),
        });
        m.files.push(FileEntry { path: arm.into(), sha256: "c".repeat(64), ..m.files[0].clone() });
        m.files.sort_by(|a, b| a.path.cmp(&b.path));
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest::sample(&["sm_90a", "sm_100a"])
    }

    #[test]
    fn round_trips_through_toml() {
        let m = sample();
        let text = m.to_toml();
        assert!(text.contains("[[file]]"), "{text}");
        assert!(text.contains("min-driver-cuda = \"13.0\""), "{text}");
        assert_eq!(Manifest::from_toml(&text).unwrap(), m);
        assert_eq!(m.cubins().count(), 1);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let text = sample().to_toml().replace("profile =", "colour = \"red\"\nprofile =");
        let err = format!("{:#}", Manifest::from_toml(&text).unwrap_err());
        assert!(err.contains("unknown field `colour`"), "{err}");
    }

    #[test]
    fn a_run_takes_the_runner_of_its_machine_and_leaves_the_others() {
        let m = Manifest::sample_two_runners(&["sm_90a"]);
        let text = m.to_toml();
        assert!(text.contains("[[runner]]\npath = \"bin/aarch64-unknown-linux-gnu/demo\"\ntriple = \"aarch64-unknown-linux-gnu\"\nglibc-floor = \"2.28\"\nglibc = \"2.28\""), "{text}");
        assert_eq!(Manifest::from_toml(&text).unwrap(), m);
        let arm = m.runner_for(Some("aarch64")).unwrap();
        assert_eq!(arm.name(), "demo");
        let files: Vec<&str> = m.files_for(arm).map(|f| f.path.as_str()).collect();
        assert_eq!(files, ["bin/aarch64-unknown-linux-gnu/demo", "kernels/k.sm_90a.cubin"]);
        assert_eq!(m.runner_for(Some("x86_64")).unwrap().triple, "x86_64-unknown-linux-gnu");
        assert!(m.runner_for(Some("riscv64")).is_none() && m.runner_for(None).is_none(), "no guess among several");
        assert_eq!(sample().runner_for(None).unwrap().path, "bin/demo");
        assert_eq!(m.runner_triples(), "x86_64-unknown-linux-gnu, aarch64-unknown-linux-gnu");
        assert_eq!(
            (parse_version("2.28"), parse_version("2.2.5"), parse_version("x")),
            (Some((2, 28)), Some((2, 2)), None)
        );
        assert_eq!(gnu_triple(triple_machine("aarch64-unknown-linux-gnu")), "aarch64-unknown-linux-gnu");
    }
}
