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
    /// The runner's path inside the package (`bin/vector-add`).
    pub runner: String,
    /// The Rust target triple the runner was built for.
    pub runner_triple: String,
    /// The newest glibc symbol version the runner needs (`2.34`), if it links glibc.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_glibc: Option<String>,
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
        if !manifest.files.iter().any(|f| f.path == manifest.package.runner) {
            bail!("the manifest of {} does not list its runner `{}`", dir.display(), manifest.package.runner);
        }
        Ok(files)
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
                runner: "bin/demo".into(),
                runner_triple: "x86_64-unknown-linux-gnu".into(),
                runner_glibc: Some("2.34".into()),
            },
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
}
