//! The external tools: the CUDA compiler (found, versioned, asked what it can build), the
//! inspection tools beside it (cuobjdump, nvdisasm), nvidia-smi and ssh; the toolchains
//! `cargo gpu toolchain install` puts in the data folder ([`installed`]) and the NVRTC driver of
//! the CUDA 12 ones ([`nvrtc`]). Finding the compiler follows one order: `$CARGO_GPU_NVCC`, the
//! project's `cuda` pin (`$CARGO_GPU_CUDA` overrides it), `$CUDA_HOME/bin`, `/usr/local/cuda/bin`,
//! the installed toolchains (newest first), `PATH`, then the compiler that an older
//! `scripts/setup.sh` installed into the checkout this binary was built from.

pub mod installed;
pub mod nvrtc;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use semver::Version;

use crate::arch::{self, SmArch};
use crate::cmd::Cmd;
use crate::nvidia_smi::{parse_gpu_query, Gpu};
use crate::shell::Shell;

/// The CUDA compiler this build uses: nvcc, or an installed CUDA 12 toolchain's NVRTC through
/// cargo-gpu's own driver (then `path` is the toolchain's record).
#[derive(Debug, Clone)]
pub struct Nvcc {
    pub path: PathBuf,
    pub version: Version,
    /// Real architectures from `nvcc --list-gpu-code` (`sm_90`, `sm_100`, ...); empty when the
    /// nvcc is too old to answer, in which case the arch table decides alone.
    pub gpu_codes: Vec<String>,
}

/// The checkout this binary was built from. `scripts/setup.sh` installs the CUDA compiler into its
/// `.venv-cuda/` when it finds none, then `cargo install --path .` builds from it: remembering the
/// folder lets a new shell find that compiler without `CUDA_HOME`.
const CHECKOUT: &str = env!("CARGO_MANIFEST_DIR");

/// Where `scripts/setup.sh` puts the CUDA compiler inside its venv (pip's `nvidia-cuda-nvcc` for
/// CUDA 13), below `lib/python3.N/`.
const VENV_NVCC: &str = "site-packages/nvidia/cu13/bin/nvcc";

/// The venv that `scripts/setup.sh` made: `$CARGO_GPU_CUDA_VENV`, else `.venv-cuda` in the checkout
/// this binary was built from.
pub fn setup_venv() -> PathBuf {
    match std::env::var_os("CARGO_GPU_CUDA_VENV").filter(|v| !v.is_empty()) {
        Some(v) => PathBuf::from(v),
        None => Path::new(CHECKOUT).join(".venv-cuda"),
    }
}

/// nvcc inside `venv` (`lib/python3*/site-packages/nvidia/cu13/bin/nvcc`), if it is there. Several
/// Python versions are tried in name order, so the answer does not depend on directory order.
pub fn venv_nvcc(venv: &Path) -> Option<PathBuf> {
    let mut pythons: Vec<PathBuf> = std::fs::read_dir(venv.join("lib"))
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .map(|e| e.path())
        .collect();
    pythons.sort();
    pythons.into_iter().map(|p| p.join(VENV_NVCC)).find(|p| p.is_file())
}

/// Where nvcc was looked for, in order, for the error when it was not found.
fn search_order(venv: &Path) -> String {
    format!(
        "$CARGO_GPU_NVCC, $CUDA_HOME/bin, $CUDA_PATH/bin, /usr/local/cuda/bin, the toolchains in {}, PATH and \
         {}/lib/python3*/{}",
        installed::toolchains_dir().map(|d| d.display().to_string()).unwrap_or_else(|_| "the data folder".into()),
        venv.display(),
        VENV_NVCC.trim_end_matches("/nvcc")
    )
}

/// Candidate folders for CUDA tools, in search order.
pub fn cuda_bin_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(home) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            dirs.push(PathBuf::from(home).join("bin"));
        }
    }
    dirs.push(PathBuf::from("/usr/local/cuda/bin"));
    dirs
}

/// The environment variable that overrides a project's `cuda` pin.
pub const CUDA_PIN_ENV: &str = "CARGO_GPU_CUDA";

/// Finds the compiler without running it, for a build without a project pin.
pub fn find_nvcc() -> Result<PathBuf> {
    find_compiler(None)
}

/// Finds the compiler without running it: `pin` is the project's `cuda = "12.9"`, which
/// `$CARGO_GPU_CUDA` overrides.
pub fn find_compiler(pin: Option<&str>) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("CARGO_GPU_NVCC").filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("CARGO_GPU_NVCC is set to `{}`, which does not exist", p.display());
        }
        return Ok(p);
    }
    match std::env::var(CUDA_PIN_ENV).ok().filter(|v| !v.is_empty()) {
        Some(v) => return installed::pinned_compiler(v.trim(), CUDA_PIN_ENV),
        None => {
            if let Some(v) = pin {
                return installed::pinned_compiler(v, "the project's `cuda` pin ([package.metadata.gpu])");
            }
        }
    }
    for dir in cuda_bin_dirs() {
        let p = dir.join("nvcc");
        if p.is_file() {
            return Ok(p);
        }
    }
    if let Some(t) = installed::list().into_iter().next() {
        return t.compiler_path();
    }
    if let Ok(p) = which::which("nvcc") {
        return Ok(p);
    }
    // Last, so that any toolkit the user chose wins over the one set-up installed for them.
    let venv = setup_venv();
    venv_nvcc(&venv).ok_or_else(|| {
        anyhow::anyhow!(
            "no CUDA compiler (nvcc) found: looked in {}. Run `cargo gpu toolchain install 13.0` (no root needed), \
             or install the CUDA toolkit (12.8 or newer builds sm_90a and sm_100a) and set CUDA_HOME, or point \
             CARGO_GPU_NVCC at nvcc",
            search_order(&venv)
        )
    })
}

/// The installed toolchain a compiler path belongs to, when it is an NVRTC one's record.
fn nvrtc_toolchain(path: &Path) -> Option<&Path> {
    (path.file_name()? == installed::RECORD).then(|| path.parent()).flatten()
}

/// Finds a CUDA tool (cuobjdump, nvdisasm): beside nvcc first, then the usual places.
pub fn find_cuda_tool(name: &str) -> Option<PathBuf> {
    let beside_nvcc = find_nvcc().ok().and_then(|n| match nvrtc_toolchain(&n) {
        Some(dir) => installed::read(dir)?.bin_dir().ok().map(|d| d.join(name)),
        None => n.parent().map(|d| d.join(name)),
    });
    beside_nvcc
        .into_iter()
        .chain(cuda_bin_dirs().into_iter().map(|d| d.join(name)))
        .find(|p| p.is_file())
        .or_else(|| which::which(name).ok())
}

/// Parses `nvcc --version` output (`... release 13.0, V13.0.88`).
pub fn parse_nvcc_version(text: &str) -> Option<Version> {
    let v = text.lines().rev().find_map(|l| {
        let idx = l.find(", V")?;
        Some(l[idx + 3..].trim().to_string())
    })?;
    let mut parts = v.split('.').map(|p| p.parse::<u64>().ok());
    let major = parts.next()??;
    let minor = parts.next()??;
    let patch = parts.next().flatten().unwrap_or(0);
    Some(Version::new(major, minor, patch))
}

impl Nvcc {
    /// Finds the compiler (see [`find_compiler`]) and asks its version and targets, once per
    /// process.
    pub fn get(shell: &Shell, pin: Option<&str>) -> Result<&'static Nvcc> {
        static NVCC: OnceLock<Nvcc> = OnceLock::new();
        if let Some(n) = NVCC.get() {
            return Ok(n);
        }
        let n = Nvcc::probe(shell, &find_compiler(pin)?)?;
        Ok(NVCC.get_or_init(|| n))
    }

    /// The command that runs this compiler: nvcc itself, or this program as the NVRTC driver of
    /// the toolchain.
    pub fn invoke(&self, purpose: impl Into<String>) -> Cmd {
        invoke(&self.path, purpose)
    }

    /// Whether this is an installed CUDA 12 toolchain's NVRTC.
    pub fn is_nvrtc(&self) -> bool {
        nvrtc_toolchain(&self.path).is_some()
    }

    /// Asks nvcc its version and targets, remembering the answer while the binary is unchanged.
    pub fn probe(shell: &Shell, path: &Path) -> Result<Nvcc> {
        let key = path.display().to_string();
        let (version, gpu_codes): (String, Vec<String>) =
            crate::cache::memo("nvcc", &key, &[path.to_path_buf()], || {
                let n = Nvcc::probe_uncached(shell, path)?;
                Ok((n.version.to_string(), n.gpu_codes))
            })?;
        let version = Version::parse(&version).context("failed to read the cached nvcc version")?;
        Ok(Nvcc { path: path.to_path_buf(), version, gpu_codes })
    }

    pub fn probe_uncached(shell: &Shell, path: &Path) -> Result<Nvcc> {
        let out = invoke(path, "query the nvcc version").arg("--version").read(Some(shell))?;
        let version = parse_nvcc_version(&out).with_context(|| {
            format!("failed to read the version from `{} --version`, which printed:\n{}", path.display(), out.trim())
        })?;
        let gpu_codes =
            match invoke(path, "list the GPU targets nvcc supports").arg("--list-gpu-code").read(Some(shell)) {
                Ok(list) => list.split_whitespace().map(str::to_string).collect(),
                Err(_) => Vec::new(),
            };
        Ok(Nvcc { path: path.to_path_buf(), version, gpu_codes })
    }

    /// `13.0.88` as `13.0`.
    pub fn short_version(&self) -> String {
        format!("{}.{}", self.version.major, self.version.minor)
    }

    /// Why this nvcc cannot build `target`, if it cannot.
    pub fn cannot_build(&self, target: SmArch) -> Option<String> {
        if let Some(why) = target.unsupported_by(&self.version) {
            return Some(why);
        }
        let base = target.compute_cap().base_arch().to_string();
        if !self.gpu_codes.is_empty() && !self.gpu_codes.contains(&base) {
            return Some(format!(
                "{target} is not supported by nvcc {} at {} (`nvcc --list-gpu-code` lists {})",
                self.version,
                self.path.display(),
                self.gpu_codes.join(" ")
            ));
        }
        None
    }

    /// Every target this nvcc builds, sorted by architecture (`sm_90 sm_90a sm_100 sm_100a sm_100f
    /// ...`). `nvcc --list-gpu-code` names only plain targets; the `a` and `f` forms, and the plain
    /// ones this tool knows, are kept when [`Nvcc::cannot_build`] allows them, so this list and
    /// the build agree. Plain targets nvcc lists that this tool has no row for are nvcc's answer and
    /// stay. Empty when nvcc gave no list.
    pub fn buildable(&self) -> Vec<String> {
        if self.gpu_codes.is_empty() {
            return Vec::new();
        }
        let mut out: Vec<String> =
            SmArch::all().into_iter().filter(|t| self.cannot_build(*t).is_none()).map(|t| t.to_string()).collect();
        for code in &self.gpu_codes {
            if code.parse::<SmArch>().is_err() && !out.contains(code) {
                out.push(code.clone());
            }
        }
        out.sort_by(|a, b| {
            let key = |c: &str| (arch::code_order(c).is_none(), arch::code_order(c));
            key(a).cmp(&key(b)).then_with(|| a.cmp(b))
        });
        out
    }

    /// The oldest driver CUDA version that loads this compiler's cubins for `targets` (the rule
    /// is [`arch::min_driver_cuda`]'s).
    pub fn min_driver_cuda(&self, targets: &[SmArch]) -> (u64, u64) {
        arch::min_driver_cuda(&self.version, targets)
    }
}

/// The command that runs the compiler at `path` (see [`Nvcc::invoke`]).
fn invoke(path: &Path, purpose: impl Into<String>) -> Cmd {
    match nvrtc_toolchain(path) {
        Some(dir) => {
            let me = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("cargo-gpu"));
            Cmd::new(me, purpose).arg(nvrtc::DRIVER_ARG).arg("--toolchain").arg(dir)
        }
        None => Cmd::new(path, purpose),
    }
}

/// What the local machine says about its GPUs. No nvidia-smi, or one that finds no device, is a
/// normal answer (`Ok(vec![])`), with the reason kept for `doctor`.
pub fn local_gpus(shell: &Shell) -> (Vec<Gpu>, Option<String>) {
    let Ok(smi) = which::which("nvidia-smi") else {
        return (Vec::new(), Some("nvidia-smi not found (no NVIDIA driver installed)".into()));
    };
    let cmd = Cmd::new(smi, "query the local GPUs")
        .args(["--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader"]);
    match cmd.output_unchecked(Some(shell)) {
        Ok(out) if out.status.success() => match parse_gpu_query(&String::from_utf8_lossy(&out.stdout)) {
            Ok(gpus) => (gpus, None),
            Err(e) => (Vec::new(), Some(format!("{e:#}"))),
        },
        Ok(out) => {
            let text = String::from_utf8_lossy(if out.stdout.is_empty() { &out.stderr } else { &out.stdout });
            (Vec::new(), Some(format!("nvidia-smi found no usable GPU: {}", text.trim())))
        }
        Err(e) => (Vec::new(), Some(format!("{e:#}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nvcc_versions() {
        let text = "nvcc: NVIDIA (R) Cuda compiler driver\nCopyright (c) 2005-2025 NVIDIA Corporation\n\
                    Built on Wed_Aug_20_01:58:59_PM_PDT_2025\nCuda compilation tools, release 13.0, V13.0.88\n\
                    Build cuda_13.0.r13.0/compiler.36424714_0\n";
        assert_eq!(parse_nvcc_version(text), Some(Version::new(13, 0, 88)));
        assert_eq!(
            parse_nvcc_version("Cuda compilation tools, release 12.4, V12.4.131"),
            Some(Version::new(12, 4, 131))
        );
        assert_eq!(parse_nvcc_version("garbage"), None);
    }

    #[test]
    fn driver_floor_follows_toolkit_and_targets() {
        let nvcc = Nvcc { path: "nvcc".into(), version: Version::new(13, 0, 88), gpu_codes: vec![] };
        assert_eq!(nvcc.min_driver_cuda(&["sm_90a".parse().unwrap()]), (13, 0));
        let old = Nvcc { version: Version::new(12, 8, 0), ..nvcc };
        assert_eq!(old.min_driver_cuda(&["sm_90a".parse().unwrap()]), (12, 0));
        assert_eq!(old.min_driver_cuda(&["sm_100a".parse().unwrap()]), (12, 8));
    }

    fn nvcc_listing(version: Version, codes: &str) -> Nvcc {
        Nvcc { path: "nvcc".into(), version, gpu_codes: codes.split_whitespace().map(str::to_string).collect() }
    }

    #[test]
    fn buildable_targets_add_a_and_f_forms_and_sort_by_architecture() {
        // nvcc 13.0.88's own order, which puts sm_110 before sm_103.
        let n = nvcc_listing(
            Version::new(13, 0, 88),
            "sm_75 sm_80 sm_86 sm_87 sm_88 sm_89 sm_90 sm_100 sm_110 sm_103 sm_120 sm_121",
        );
        assert_eq!(
            n.buildable().join(" "),
            "sm_75 sm_80 sm_86 sm_87 sm_88 sm_89 sm_90 sm_90a sm_100 sm_100a sm_100f sm_103 sm_103a sm_103f \
             sm_110 sm_110a sm_110f sm_120 sm_120a sm_120f sm_121 sm_121a sm_121f"
        );
        // 12.8: no families yet, no sm_103; a plain target outside the table (sm_52) is kept.
        let old = nvcc_listing(Version::new(12, 8, 61), "sm_90 sm_52 sm_120 sm_100 sm_101");
        assert_eq!(old.buildable().join(" "), "sm_52 sm_90 sm_90a sm_100 sm_100a sm_101 sm_101a sm_120 sm_120a");
        for t in old.buildable() {
            if let Ok(t) = t.parse::<SmArch>() {
                assert_eq!(old.cannot_build(t), None, "{t} is listed, so the build must accept it");
            }
        }
        assert!(nvcc_listing(Version::new(10, 0, 0), "").buildable().is_empty());
    }

    #[test]
    fn setup_venv_compiler_is_found_under_any_python3() {
        let tmp = tempfile::tempdir().unwrap();
        let venv = tmp.path().join(".venv-cuda");
        assert_eq!(venv_nvcc(&venv), None);
        std::fs::create_dir_all(venv.join("lib/python3.12/site-packages/nvidia/cu12/bin")).unwrap();
        std::fs::write(venv.join("lib/python3.12/site-packages/nvidia/cu12/bin/nvcc"), "").unwrap();
        assert_eq!(venv_nvcc(&venv), None, "only the cu13 compiler that setup.sh installs");
        let nvcc = venv.join("lib/python3.11/site-packages/nvidia/cu13/bin/nvcc");
        std::fs::create_dir_all(nvcc.parent().unwrap()).unwrap();
        std::fs::write(&nvcc, "").unwrap();
        assert_eq!(venv_nvcc(&venv), Some(nvcc));
    }

    #[test]
    fn the_checkout_venv_is_the_last_place_named() {
        let order = search_order(Path::new("/src/cargo-gpu/.venv-cuda"));
        assert!(
            order.ends_with("PATH and /src/cargo-gpu/.venv-cuda/lib/python3*/site-packages/nvidia/cu13/bin"),
            "{order}"
        );
        assert!(Path::new(CHECKOUT).join("Cargo.toml").is_file(), "CHECKOUT is this crate's folder");
    }

    #[test]
    fn list_gpu_code_is_the_authority() {
        let nvcc = Nvcc { path: "nvcc".into(), version: Version::new(13, 0, 88), gpu_codes: vec!["sm_90".into()] };
        assert!(nvcc.cannot_build("sm_90a".parse().unwrap()).is_none());
        let why = nvcc.cannot_build("sm_100a".parse().unwrap()).unwrap();
        assert!(why.contains("not supported by nvcc 13.0.88"), "{why}");
    }
}
