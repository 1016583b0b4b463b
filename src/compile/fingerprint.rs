//! Freshness, as make has it: a cubin is fresh when its fingerprint records the same nvcc command
//! line and nvcc version, and every file nvcc said it read (`-MD`) still has the size and
//! modification time it had. Touching a header therefore recompiles exactly the kernels that
//! include it; toolkit and system headers stay out (the nvcc version stands for them).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepStamp {
    pub path: PathBuf,
    pub size: u64,
    pub mtime_ns: u128,
}

/// What one compile depended on and produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub command: String,
    pub nvcc_version: String,
    pub deps: Vec<DepStamp>,
    pub output: DepStamp,
    pub output_sha256: String,
}

/// Size and modification time of a file, `None` when it does not exist.
pub fn stamp(path: &Path) -> Option<DepStamp> {
    let (size, mtime_ns) = crate::cache::file_stamp(path)?;
    Some(DepStamp { path: path.to_path_buf(), size, mtime_ns })
}

impl Fingerprint {
    pub fn load(path: &Path) -> Option<Fingerprint> {
        let text = std::fs::read_to_string(path).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        crate::safe_fs::write_atomic(path, &serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("failed to write fingerprint {}", path.display()))
    }

    /// Whether this fingerprint still describes `output` built by `command` with nvcc `version`:
    /// the same command and version, the output untouched, every dependency unchanged.
    pub fn holds(&self, command: &str, version: &str, output: &Path) -> bool {
        self.command == command
            && self.nvcc_version == version
            && stamp(output).as_ref() == Some(&self.output)
            && self.deps.iter().all(|d| stamp(&d.path).as_ref() == Some(d))
    }
}

/// The project files among the prerequisites nvcc listed: relative ones taken from `root`,
/// toolkit and system headers left out, each stamped now.
pub fn project_deps(depfile_text: &str, root: &Path, nvcc: &Path) -> Result<Vec<DepStamp>> {
    let system = system_include_roots(nvcc);
    let mut deps = Vec::new();
    for dep in parse_depfile(depfile_text) {
        let abs = if dep.is_absolute() { dep } else { root.join(dep) };
        if system.iter().any(|r| abs.starts_with(r)) {
            continue;
        }
        deps.push(stamp(&abs).with_context(|| format!("failed to stat kernel dependency {}", abs.display()))?);
    }
    Ok(deps)
}

/// Folders whose headers belong to the toolkit or the system compiler, not to the project. They
/// stay out of fingerprints: the nvcc version and path already stand for them, and a kernel that
/// includes CCCL would otherwise record (and stat on every build) hundreds of headers.
pub fn system_include_roots(nvcc: &Path) -> Vec<PathBuf> {
    let mut roots = vec![PathBuf::from("/usr/include"), PathBuf::from("/usr/lib/gcc")];
    if let Some(toolkit) = nvcc.parent().and_then(Path::parent) {
        roots.push(toolkit.to_path_buf());
        if let Ok(real) = toolkit.canonicalize() {
            roots.push(real);
        }
    }
    roots
}

/// The prerequisites of a make rule as nvcc writes it with `-MD` (`out : a.cu \` ...).
pub fn parse_depfile(text: &str) -> Vec<PathBuf> {
    let joined = text.replace("\\\n", " ").replace("\\\r\n", " ");
    let Some((_, deps)) = joined.split_once(": ") else { return Vec::new() };
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = deps.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&' ') => {
                cur.push(' ');
                chars.next();
            }
            c if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(PathBuf::from(std::mem::take(&mut cur)));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(PathBuf::from(cur));
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depfile_lists_prerequisites() {
        let text = "out.cubin : kernels/a.cu \\\n    /usr/include/x\\ y.h \\\n    kernels/common.cuh\n";
        assert_eq!(
            parse_depfile(text),
            vec![
                PathBuf::from("/usr/include/x y.h"),
                PathBuf::from("kernels/a.cu"),
                PathBuf::from("kernels/common.cuh")
            ]
        );
        assert!(parse_depfile("").is_empty());
    }

    #[test]
    fn toolkit_and_system_headers_are_not_project_dependencies() {
        let roots = system_include_roots(Path::new("/opt/cuda-13.0/bin/nvcc"));
        let system = |p: &str| roots.iter().any(|r| Path::new(p).starts_with(r));
        assert!(system("/opt/cuda-13.0/bin/..//include/cuda_runtime.h"));
        assert!(system("/usr/include/stdio.h"));
        assert!(system("/usr/lib/gcc/x86_64-linux-gnu/12/include/stddef.h"));
        assert!(!system("/home/me/proj/kernels/common.cuh"));
        assert!(!system("/opt/cuda-13.0-extra/x.h"));
    }

    #[test]
    fn a_fingerprint_holds_until_a_dependency_or_the_output_changes() {
        let dir = tempfile::tempdir().unwrap();
        let (src, out) = (dir.path().join("k.cu"), dir.path().join("k.cubin"));
        std::fs::write(&src, "a").unwrap();
        std::fs::write(&out, "cubin").unwrap();
        let fp = Fingerprint {
            command: "nvcc k.cu".into(),
            nvcc_version: "13.0.88".into(),
            deps: vec![stamp(&src).unwrap()],
            output: stamp(&out).unwrap(),
            output_sha256: String::new(),
        };
        let path = dir.path().join("k.json");
        fp.save(&path).unwrap();
        let fp = Fingerprint::load(&path).unwrap();
        assert!(fp.holds("nvcc k.cu", "13.0.88", &out));
        assert!(!fp.holds("nvcc -O3 k.cu", "13.0.88", &out));
        assert!(!fp.holds("nvcc k.cu", "13.5.0", &out));
        std::fs::write(&src, "bb").unwrap();
        assert!(!fp.holds("nvcc k.cu", "13.0.88", &out));
    }
}
