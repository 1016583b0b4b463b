//! CUDA toolchains installed from PyPI by `cargo gpu toolchain install`, one folder per version
//! under `<data>/toolchains/cuda-<version>/` (a venv), each with a record of what it holds.
//!
//! CUDA 13 wheels carry the whole nvcc. CUDA 12 wheels carry no nvcc driver, only ptxas, NVVM
//! and NVRTC (the same front end and optimizer as nvcc, as a library): a 12.x toolchain compiles
//! kernels through NVRTC (cargo-gpu's driver in `toolchain::nvrtc`). cuobjdump and nvdisasm exist on PyPI
//! from 13.2.51 only; they read the cubins of every release listed here.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::arch::SmArch;
use crate::shell::Shell;

/// How a toolchain compiles a kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compiler {
    /// The nvcc driver.
    Nvcc,
    /// NVRTC with the release's ptxas, through cargo-gpu's own driver.
    Nvrtc,
}

/// One installable CUDA release: the wheels that make its toolchain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    /// `12.9`, as a project pins it.
    pub version: &'static str,
    /// The compiler's own version (`12.9.86`).
    pub full: &'static str,
    pub compiler: Compiler,
    pub packages: &'static [&'static str],
}

const INSPECTION: [&str; 2] = ["nvidia-cuda-cuobjdump==13.2.51", "nvidia-cuda-nvdisasm==13.2.51"];

/// What `cargo gpu toolchain install` can install, oldest first.
pub const RELEASES: &[Release] = &[
    Release {
        version: "12.8",
        full: "12.8.93",
        compiler: Compiler::Nvrtc,
        packages: &["cuda-toolkit[nvcc,nvrtc,cudart,cccl]==12.8.2.0", INSPECTION[0], INSPECTION[1]],
    },
    Release {
        version: "12.9",
        full: "12.9.86",
        compiler: Compiler::Nvrtc,
        packages: &["cuda-toolkit[nvcc,nvrtc,cudart,cccl]==12.9.2.0", INSPECTION[0], INSPECTION[1]],
    },
    Release {
        version: "13.0",
        full: "13.0.88",
        compiler: Compiler::Nvcc,
        // compute-sanitizer 13.5.25 is the first wheel with the whole tool; it runs on 13.0 drivers.
        packages: &[
            "cuda-toolkit[nvcc,cccl]==13.0.3.0",
            INSPECTION[0],
            INSPECTION[1],
            "nvidia-cuda-sanitizer-api==13.5.25",
        ],
    },
];

/// The release `version` names (`12.9`, or `12.9.86`).
pub fn release(version: &str) -> Option<&'static Release> {
    RELEASES.iter().find(|r| r.version == version || r.full == version)
}

fn known_versions() -> String {
    RELEASES.iter().map(|r| r.version).collect::<Vec<_>>().join(", ")
}

/// The device headers' folder inside an NVRTC toolchain.
pub const HEADERS_DIR: &str = "nvrtc-include";

/// The C headers kernel files include for types, as device code sees them under NVRTC.
const DEVICE_HEADERS: &[(&str, &str)] = &[
    ("stdint.h", "#pragma once\n#include <cuda/std/cstdint>\nusing cuda::std::int8_t;\nusing cuda::std::int16_t;\nusing cuda::std::int32_t;\nusing cuda::std::int64_t;\nusing cuda::std::uint8_t;\nusing cuda::std::uint16_t;\nusing cuda::std::uint32_t;\nusing cuda::std::uint64_t;\nusing cuda::std::intptr_t;\nusing cuda::std::uintptr_t;\n"),
    ("cstdint", "#pragma once\n#include <stdint.h>\n#include <cuda/std/cstdint>\nnamespace std { using namespace cuda::std; }\n"),
    ("stddef.h", "#pragma once\n#include <cuda/std/cstddef>\nusing cuda::std::size_t;\nusing cuda::std::ptrdiff_t;\n"),
    ("cstddef", "#pragma once\n#include <stddef.h>\n"),
    ("stdlib.h", "#pragma once\n#include <stddef.h>\n"),
    ("cstdlib", "#pragma once\n#include <stddef.h>\n"),
    // printf is built into NVRTC.
    ("stdio.h", "#pragma once\n#include <stddef.h>\n"),
    ("cstdio", "#pragma once\n#include <stddef.h>\n"),
];

/// Writes the device headers into `dir` (at install).
pub fn write_device_headers(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    for (name, text) in DEVICE_HEADERS {
        std::fs::write(dir.join(name), text).with_context(|| format!("failed to write {}/{name}", dir.display()))?;
    }
    Ok(())
}

/// The record each installed toolchain keeps in its folder.
pub const RECORD: &str = "cargo-gpu-toolchain.toml";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Record {
    pub version: String,
    pub full_version: String,
    pub compiler: Compiler,
    pub packages: Vec<String>,
    /// Seconds since the Unix epoch.
    pub installed_at: u64,
}

/// An installed toolchain, found in its folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub dir: PathBuf,
    pub record: Record,
}

impl Installed {
    pub fn site_packages(&self) -> Result<PathBuf> {
        crate::pypi::site_packages(&self.dir)
            .with_context(|| format!("the toolchain in {} has no site-packages: reinstall it", self.dir.display()))
    }

    /// Where cuobjdump, nvdisasm (and for 13.x nvcc) are.
    pub fn bin_dir(&self) -> Result<PathBuf> {
        Ok(self.site_packages()?.join("nvidia/cu13/bin"))
    }

    /// The compiler a build runs: nvcc, or the record for an NVRTC toolchain (which
    /// [`crate::toolchain::Nvcc`] turns into cargo-gpu's own driver).
    pub fn compiler_path(&self) -> Result<PathBuf> {
        match self.record.compiler {
            Compiler::Nvcc => Ok(self.bin_dir()?.join("nvcc")),
            Compiler::Nvrtc => Ok(self.dir.join(RECORD)),
        }
    }

    pub fn semver(&self) -> Option<semver::Version> {
        semver::Version::parse(&self.record.full_version).ok()
    }
}

/// `<data>/toolchains`.
pub fn toolchains_dir() -> Result<PathBuf> {
    Ok(crate::pypi::data_dir()?.join("toolchains"))
}

fn folder_name(version: &str) -> String {
    format!("cuda-{version}")
}

/// Reads the toolchain in `dir`, if it holds a readable record.
pub fn read(dir: &Path) -> Option<Installed> {
    let text = std::fs::read_to_string(dir.join(RECORD)).ok()?;
    let record: Record = toml::from_str(&text).ok()?;
    Some(Installed { dir: dir.to_path_buf(), record })
}

/// Every installed toolchain, newest first.
pub fn list() -> Vec<Installed> {
    let Ok(dir) = toolchains_dir() else { return Vec::new() };
    let mut all: Vec<Installed> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("cuda-"))
        .filter_map(|e| read(&e.path()))
        .collect();
    all.sort_by_key(|t| std::cmp::Reverse(t.semver()));
    all
}

/// The installed toolchain of `version` (`12.9`).
pub fn find(version: &str) -> Option<Installed> {
    let dir = toolchains_dir().ok()?.join(folder_name(version));
    read(&dir).filter(|t| t.record.version == version)
}

/// The compiler of a project's `cuda = "12.9"` pin, or the error that says how to get it.
pub fn pinned_compiler(version: &str, source: &str) -> Result<PathBuf> {
    let Some(release) = release(version) else {
        bail!(
            "{source} asks for CUDA `{version}`, which cargo-gpu cannot install (it installs {}): pin one of those, or remove the pin and set CUDA_HOME",
            known_versions()
        );
    };
    match find(release.version) {
        Some(t) => t.compiler_path(),
        None => bail!(
            "{source} asks for CUDA {v}, which is not installed: run `cargo gpu toolchain install {v}`",
            v = release.version
        ),
    }
}

/// Installs the toolchain of `version`; an installed one is kept unless `force`.
pub fn install(shell: &Shell, version: &str, force: bool) -> Result<Installed> {
    let Some(release) = release(version) else {
        bail!("CUDA `{version}` cannot be installed: cargo-gpu installs {}", known_versions());
    };
    let toolchains = toolchains_dir()?;
    let dir = toolchains.join(folder_name(release.version));
    std::fs::create_dir_all(&toolchains).with_context(|| format!("failed to create {}", toolchains.display()))?;
    // One install at a time: a second waits, then finds the first one's toolchain.
    let _lock = crate::safe_fs::lock(&toolchains.join(".install.lock"), crate::exit::check_interrupt)?;
    if let Some(t) = read(&dir) {
        if !force {
            shell.status("Installed", format!("CUDA {} is already in {}", t.record.full_version, dir.display()));
            return Ok(t);
        }
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("failed to remove {}", dir.display()))?;
    }
    let what = format!("CUDA {}", release.version);
    crate::pypi::install(shell, &dir, release.packages, &what, |venv| finish(venv, release))?;
    let t = read(&dir).context("the new toolchain has no record")?;
    shell.status("Installed", format!("CUDA {} in {}", release.full, dir.display()));
    Ok(t)
}

/// Checks the new venv holds the compiler, adds what an NVRTC toolchain needs, and writes the
/// record last: a folder without one is not a toolchain.
fn finish(venv: &Path, release: &Release) -> Result<()> {
    let site = crate::pypi::site_packages(venv).context("the new venv has no site-packages")?;
    let needed: &[&str] = match release.compiler {
        Compiler::Nvcc => &["nvidia/cu13/bin/nvcc", "nvidia/cu13/bin/cuobjdump", "nvidia/cu13/bin/nvdisasm"],
        Compiler::Nvrtc => &[
            "nvidia/cuda_nvrtc/lib/libnvrtc.so.12",
            "nvidia/cuda_nvcc/bin/ptxas",
            "nvidia/cuda_runtime/include/cuda_runtime.h",
            "nvidia/cu13/bin/cuobjdump",
            "nvidia/cu13/bin/nvdisasm",
        ],
    };
    for rel in needed {
        if !site.join(rel).is_file() {
            bail!("the packages for CUDA {} installed no {rel}", release.version);
        }
    }
    if release.compiler == Compiler::Nvrtc {
        write_device_headers(&venv.join(HEADERS_DIR))?;
    }
    let record = Record {
        version: release.version.into(),
        full_version: release.full.into(),
        compiler: release.compiler,
        packages: release.packages.iter().map(|p| p.to_string()).collect(),
        installed_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    std::fs::write(venv.join(RECORD), toml::to_string(&record)?).context("failed to write the toolchain's record")
}

/// Removes the toolchain of `version`.
pub fn remove(version: &str) -> Result<PathBuf> {
    let name = release(version).map(|r| r.version).unwrap_or(version);
    if name.contains('/') || name.starts_with('.') {
        bail!("`{version}` is not a CUDA version");
    }
    let dir = toolchains_dir()?.join(folder_name(name));
    if !dir.exists() {
        bail!("CUDA {name} is not installed (see `cargo gpu toolchain list`)");
    }
    std::fs::remove_dir_all(&dir).with_context(|| format!("failed to remove {}", dir.display()))?;
    Ok(dir)
}

/// The newest release whose packages a driver of CUDA `driver` loads and that builds every one
/// of `targets`: what to pin when a remote's driver refuses the package.
pub fn newest_for_driver(driver: (u64, u64), targets: &[SmArch]) -> Option<&'static Release> {
    RELEASES.iter().rev().find(|r| {
        let Ok(v) = semver::Version::parse(r.full) else { return false };
        crate::arch::min_driver_cuda(&v, targets) <= driver && targets.iter().all(|t| t.unsupported_by(&v).is_none())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_is_sorted_and_pinned() {
        for w in RELEASES.windows(2) {
            let (a, b) = (semver::Version::parse(w[0].full).unwrap(), semver::Version::parse(w[1].full).unwrap());
            assert!(a < b, "oldest first");
        }
        for r in RELEASES {
            assert!(r.full.starts_with(&format!("{}.", r.version)));
            assert!(r.packages.iter().all(|p| p.contains("==")), "{r:?}: every wheel pinned");
        }
        assert_eq!(release("12.9.86").unwrap().version, "12.9");
        assert!(release("11.8").is_none());
    }

    #[test]
    fn a_driver_is_matched_with_the_newest_toolchain_it_loads() {
        let sm90a: SmArch = "sm_90a".parse().unwrap();
        let sm100a: SmArch = "sm_100a".parse().unwrap();
        assert_eq!(newest_for_driver((12, 8), &[sm90a]).unwrap().version, "12.9");
        assert_eq!(newest_for_driver((13, 0), &[sm90a, sm100a]).unwrap().version, "13.0");
        assert_eq!(newest_for_driver((12, 4), &[sm90a]).unwrap().version, "12.9", "minor-version compatibility");
        assert_eq!(newest_for_driver((12, 4), &[sm100a]), None, "sm_100a needs a 12.8 driver");
        assert_eq!(newest_for_driver((11, 8), &[sm90a]), None);
    }

    #[test]
    fn installed_toolchains_are_listed_newest_first_and_a_pin_names_the_install() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        for (v, full) in [("12.9", "12.9.86"), ("13.0", "13.0.88"), ("12.8", "12.8.93")] {
            let dir = home.join("toolchains").join(folder_name(v));
            std::fs::create_dir_all(&dir).unwrap();
            let r = Record {
                version: v.into(),
                full_version: full.into(),
                compiler: release(v).unwrap().compiler,
                packages: vec![],
                installed_at: 0,
            };
            std::fs::write(dir.join(RECORD), toml::to_string(&r).unwrap()).unwrap();
        }
        std::fs::create_dir_all(home.join("toolchains/cuda-12.6")).unwrap();
        let listed = crate::pypi::with_data_dir(&home, || {
            let names: Vec<String> = list().iter().map(|t| t.record.version.clone()).collect();
            let pinned = pinned_compiler("12.9", "Cargo.toml").unwrap();
            let missing = pinned_compiler("12.6", "Cargo.toml").unwrap_err().to_string();
            let unknown = pinned_compiler("11.2", "CARGO_GPU_CUDA").unwrap_err().to_string();
            (names, pinned, missing, unknown)
        });
        assert_eq!(listed.0, ["13.0", "12.9", "12.8"], "a folder without a record is no toolchain");
        assert_eq!(listed.1, home.join("toolchains/cuda-12.9").join(RECORD));
        assert!(listed.2.contains("cannot install"), "{}", listed.2);
        assert!(listed.3.starts_with("CARGO_GPU_CUDA asks for CUDA `11.2`"), "{}", listed.3);
    }

    #[test]
    fn device_headers_are_written() {
        let tmp = tempfile::tempdir().unwrap();
        write_device_headers(tmp.path()).unwrap();
        let stdint = std::fs::read_to_string(tmp.path().join("stdint.h")).unwrap();
        assert!(stdint.contains("using cuda::std::uint32_t;"), "{stdint}");
    }
}
