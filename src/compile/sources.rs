//! What a build compiles: the profile (debug or release flags), the `.cu` sources found under the
//! kernels folder, and the (kernel, target) jobs with the cubins they give.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::arch::SmArch;

/// Debug (the default, as with cargo) or release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Debug,
    Release,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Debug => "debug",
            Profile::Release => "release",
        }
    }

    /// Device code flags. Never both `-G` and `-lineinfo`: nvcc warns that -G overrides it.
    pub fn nvcc_flags(self) -> &'static [&'static str] {
        match self {
            Profile::Debug => &["-G"],
            Profile::Release => &["-O3", "-lineinfo"],
        }
    }
}

/// One `.cu` file under the kernels folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelSource {
    /// File name without `.cu`: the cubin is `<stem>.<target>.cubin`.
    pub stem: String,
    /// Path relative to the project root, as shown to the user and passed to nvcc.
    pub rel: PathBuf,
}

/// Finds every `.cu` file below `dir`, sorted. Two files with the same stem are an error, since
/// their cubins would collide.
pub fn discover(root: &Path, dir: &Path) -> Result<Vec<KernelSource>> {
    if !dir.is_dir() {
        bail!(
            "kernels folder {} does not exist: put .cu files there, or set `kernels = \"DIR\"` in `[package.metadata.gpu]`",
            dir.display()
        );
    }
    let mut found: BTreeMap<String, PathBuf> = BTreeMap::new();
    // Links are followed: a project may link kernels it shares with another one.
    for entry in walkdir::WalkDir::new(dir).follow_links(true).sort_by_file_name() {
        let entry = entry.with_context(|| format!("failed to read kernels folder {}", dir.display()))?;
        let path = entry.path();
        if !entry.file_type().is_file() || path.extension().map(|e| e != "cu").unwrap_or(true) {
            continue;
        }
        let stem = path.file_stem().expect("a file has a name").to_string_lossy().into_owned();
        let rel = path.strip_prefix(root).unwrap_or(path).to_path_buf();
        if let Some(prev) = found.insert(stem.clone(), rel.clone()) {
            bail!(
                "two kernel sources share the name `{stem}`: {} and {}; rename one, since both would build {stem}.<target>.cubin",
                prev.display(),
                rel.display()
            );
        }
    }
    if found.is_empty() {
        bail!("no kernel sources (*.cu) found in {}", dir.display());
    }
    Ok(found.into_iter().map(|(stem, rel)| KernelSource { stem, rel }).collect())
}

/// One (kernel, target) pair.
#[derive(Debug, Clone)]
pub struct Job {
    pub kernel: KernelSource,
    pub target: SmArch,
}

impl Job {
    pub fn cubin_name(&self) -> String {
        format!("{}.{}.cubin", self.kernel.stem, self.target)
    }

    pub fn label(&self) -> String {
        format!("{} ({})", self.kernel.rel.file_name().unwrap_or_default().to_string_lossy(), self.target)
    }
}

/// A built cubin, fresh or just compiled.
#[derive(Debug, Clone)]
pub struct Built {
    pub job: Job,
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
    pub fresh: bool,
    /// What the cubin holds (`None` when cuobjdump or nvdisasm is missing).
    pub report: Option<crate::inspect::report::KernelReport>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_never_mix_debug_and_lineinfo() {
        assert_eq!(Profile::Debug.nvcc_flags(), &["-G"]);
        assert_eq!(Profile::Release.nvcc_flags(), &["-O3", "-lineinfo"]);
    }
}
