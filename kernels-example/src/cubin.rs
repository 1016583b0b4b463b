//! Finding the kernels directory and choosing the cubin a GPU can run.
//!
//! `cargo gpu` names its outputs `<kernel>.<target>.cubin`, one per `--target`. A target is
//! `sm_XY` (plain), `sm_XYa` (arch-specific) or `sm_XYf` (family), X the major (one or two digits)
//! and Y the one-digit minor of the compute capability.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::fail::{Exit, Failure};

/// A device's compute capability, `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capability {
    pub major: u32,
    pub minor: u32,
}

impl Capability {
    /// The plain target name of this capability, e.g. `sm_90`.
    pub fn sm(self) -> String {
        format!("sm_{}{}", self.major, self.minor)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Variant {
    Plain,
    Family,
    ArchSpecific,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub major: u32,
    pub minor: u32,
    pub variant: Variant,
}

impl Target {
    pub fn parse(s: &str) -> Option<Target> {
        let rest = s.strip_prefix("sm_")?;
        let (digits, variant) = match rest.as_bytes().last()? {
            b'a' => (&rest[..rest.len() - 1], Variant::ArchSpecific),
            b'f' => (&rest[..rest.len() - 1], Variant::Family),
            _ => (rest, Variant::Plain),
        };
        if !(2..=3).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.starts_with('0') {
            return None;
        }
        let (major, minor) = digits.split_at(digits.len() - 1);
        Some(Target { major: major.parse().ok()?, minor: minor.parse().ok()?, variant })
    }

    /// Arch-specific code uses features of exactly one chip; family code runs on later minors of
    /// the same major, and so does plain code.
    pub fn runs_on(self, cc: Capability) -> bool {
        match self.variant {
            Variant::ArchSpecific => self.major == cc.major && self.minor == cc.minor,
            Variant::Family | Variant::Plain => self.major == cc.major && cc.minor >= self.minor,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let suffix = match self.variant {
            Variant::Plain => "",
            Variant::Family => "f",
            Variant::ArchSpecific => "a",
        };
        write!(f, "sm_{}{}{}", self.major, self.minor, suffix)
    }
}

/// One `<kernel>.<target>.cubin` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cubin {
    pub path: PathBuf,
    pub kernel: String,
    pub target: Target,
}

impl Cubin {
    /// `None` for files that do not follow the naming scheme.
    pub fn from_path(path: &Path) -> Option<Cubin> {
        let name = path.file_name()?.to_str()?;
        let (kernel, target) = name.strip_suffix(".cubin")?.rsplit_once('.')?;
        if kernel.is_empty() {
            return None;
        }
        Some(Cubin { path: path.to_path_buf(), kernel: kernel.to_string(), target: Target::parse(target)? })
    }

    pub fn file_name(&self) -> String {
        format!("{}.{}.cubin", self.kernel, self.target)
    }
}

/// The best cubin for `cc`: arch-specific first (it can use everything the chip has), then family,
/// then plain; within a kind the highest minor, which may use more features.
pub fn choose(cubins: &[Cubin], cc: Capability) -> Option<&Cubin> {
    cubins.iter().filter(|c| c.target.runs_on(cc)).max_by_key(|c| (c.target.variant, c.target.minor))
}

/// Where the cubins are, and how that was decided (for error messages).
#[derive(Debug)]
pub struct KernelDir {
    pub path: PathBuf,
    pub origin: String,
}

pub const KERNELS_ENV: &str = "CARGO_GPU_KERNELS";

/// `$CARGO_GPU_KERNELS`, else `../kernels` from the directory of this executable, which is where
/// the `cargo gpu` package layout (`bin/`, `kernels/`) puts them.
pub fn kernel_dir() -> Result<KernelDir, Failure> {
    if let Some(dir) = std::env::var_os(KERNELS_ENV) {
        return Ok(KernelDir { path: PathBuf::from(dir), origin: format!("set by {KERNELS_ENV}") });
    }
    let exe = std::env::current_exe()
        .map_err(|e| Failure::new(Exit::NoKernel, format!("failed to find the path of this executable: {e}")))?;
    let bin_dir = exe.parent().unwrap_or(Path::new("/"));
    let path = bin_dir.parent().unwrap_or(bin_dir).join("kernels");
    let origin =
        format!("../kernels relative to the runner {}; set {KERNELS_ENV} to use another directory", exe.display());
    Ok(KernelDir { path, origin })
}

/// All cubins of `kernel` in `dir`, oldest architecture first.
pub fn scan(dir: &KernelDir, kernel: &str) -> Result<Vec<Cubin>, Failure> {
    if !dir.path.is_dir() {
        return Err(Failure::new(
            Exit::NoKernel,
            format!("kernels directory {} does not exist ({})", dir.path.display(), dir.origin),
        ));
    }
    let entries = std::fs::read_dir(&dir.path).map_err(|e| {
        Failure::new(Exit::NoKernel, format!("failed to read kernels directory {}: {e}", dir.path.display()))
    })?;
    let mut cubins: Vec<Cubin> = entries
        .filter_map(|entry| Cubin::from_path(&entry.ok()?.path()))
        .filter(|cubin| cubin.kernel == kernel)
        .collect();
    cubins.sort_by_key(|c| (c.target.major, c.target.minor, c.target.variant));
    Ok(cubins)
}

/// Says what the package has, what this GPU needs, and which target to build.
pub fn no_match_message(kernel: &str, cubins: &[Cubin], dir: &Path, device: &str, cc: Capability) -> String {
    let have = if cubins.is_empty() {
        format!("the package has no {kernel}.<target>.cubin in {}", dir.display())
    } else {
        let targets: Vec<String> = cubins.iter().map(|c| c.target.to_string()).collect();
        format!("the package has {kernel} for {}", targets.join(", "))
    };
    format!(
        "no cubin for this GPU: {have}, but {device} is compute capability {cc} ({}); rebuild with --target {}a",
        cc.sm(),
        cc.sm()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn cc(major: u32, minor: u32) -> Capability {
        Capability { major, minor }
    }

    fn cubins(names: &[&str]) -> Vec<Cubin> {
        names.iter().map(|n| Cubin::from_path(Path::new(n)).expect(n)).collect()
    }

    fn chosen(names: &[&str], on: Capability) -> Option<String> {
        choose(&cubins(names), on).map(Cubin::file_name)
    }

    #[test]
    fn parses_targets() {
        let t = |major, minor, variant| Some(Target { major, minor, variant });
        assert_eq!(Target::parse("sm_90a"), t(9, 0, Variant::ArchSpecific));
        assert_eq!(Target::parse("sm_100a"), t(10, 0, Variant::ArchSpecific));
        assert_eq!(Target::parse("sm_90"), t(9, 0, Variant::Plain));
        assert_eq!(Target::parse("sm_120"), t(12, 0, Variant::Plain));
        assert_eq!(Target::parse("sm_103f"), t(10, 3, Variant::Family));
        assert_eq!(Target::parse("sm_86"), t(8, 6, Variant::Plain));
        for bad in ["sm_9", "sm_1000", "sm_90b", "sm_", "sm_a", "compute_90", "sm_09", "sm_9x0", "SM_90"] {
            assert_eq!(Target::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn targets_print_back() {
        for name in ["sm_90a", "sm_100a", "sm_100f", "sm_120", "sm_89"] {
            assert_eq!(Target::parse(name).unwrap().to_string(), name);
        }
    }

    #[test]
    fn parses_file_names() {
        let c = Cubin::from_path(Path::new("/pkg/kernels/vector_add.sm_100a.cubin")).unwrap();
        assert_eq!(c.kernel, "vector_add");
        assert_eq!(c.target, Target { major: 10, minor: 0, variant: Variant::ArchSpecific });
        assert_eq!(c.file_name(), "vector_add.sm_100a.cubin");
        // Dots in the kernel name belong to the kernel; the target is the last part.
        assert_eq!(Cubin::from_path(Path::new("my.kernel.sm_90.cubin")).unwrap().kernel, "my.kernel");
        for bad in ["vector_add.cubin", "vector_add.sm_90a.ptx", ".sm_90a.cubin", "vector_add.sm_90z.cubin"] {
            assert_eq!(Cubin::from_path(Path::new(bad)), None, "{bad}");
        }
    }

    #[test]
    fn arch_specific_runs_only_on_its_chip() {
        let sm_90a = Target::parse("sm_90a").unwrap();
        assert!(sm_90a.runs_on(cc(9, 0)));
        assert!(!sm_90a.runs_on(cc(9, 1)));
        assert!(!sm_90a.runs_on(cc(10, 0)));
        let sm_100f = Target::parse("sm_100f").unwrap();
        assert!(sm_100f.runs_on(cc(10, 3)));
        assert!(!sm_100f.runs_on(cc(12, 0)));
        assert!(!Target::parse("sm_103f").unwrap().runs_on(cc(10, 0)));
    }

    #[test]
    fn chooses_for_each_gpu() {
        let built = ["vector_add.sm_90a.cubin", "vector_add.sm_100a.cubin"];
        assert_eq!(chosen(&built, cc(9, 0)).as_deref(), Some("vector_add.sm_90a.cubin"));
        assert_eq!(chosen(&built, cc(10, 0)).as_deref(), Some("vector_add.sm_100a.cubin"));
        assert_eq!(chosen(&built, cc(12, 0)), None);
        assert_eq!(chosen(&built, cc(10, 3)), None);

        let family = ["vector_add.sm_90a.cubin", "vector_add.sm_100a.cubin", "vector_add.sm_100f.cubin"];
        assert_eq!(chosen(&family, cc(10, 3)).as_deref(), Some("vector_add.sm_100f.cubin"));
    }

    #[test]
    fn prefers_arch_specific_then_family_then_highest_plain() {
        let all = ["k.sm_90.cubin", "k.sm_90a.cubin", "k.sm_100.cubin", "k.sm_100f.cubin", "k.sm_100a.cubin"];
        assert_eq!(chosen(&all, cc(9, 0)).as_deref(), Some("k.sm_90a.cubin"));
        assert_eq!(chosen(&all, cc(10, 0)).as_deref(), Some("k.sm_100a.cubin"));
        assert_eq!(chosen(&["k.sm_100.cubin", "k.sm_100f.cubin"], cc(10, 0)).as_deref(), Some("k.sm_100f.cubin"));
        assert_eq!(
            chosen(&["k.sm_80.cubin", "k.sm_86.cubin", "k.sm_87.cubin"], cc(8, 6)).as_deref(),
            Some("k.sm_86.cubin")
        );
    }

    #[test]
    fn no_match_message_names_what_there_is_and_what_is_needed() {
        let built = cubins(&["vector_add.sm_100a.cubin"]);
        let msg = no_match_message("vector_add", &built, Path::new("/pkg/kernels"), "NVIDIA H200", cc(9, 0));
        assert_eq!(
            msg,
            "no cubin for this GPU: the package has vector_add for sm_100a, but NVIDIA H200 is compute \
             capability 9.0 (sm_90); rebuild with --target sm_90a"
        );
        let msg = no_match_message("vector_add", &[], Path::new("/pkg/kernels"), "GPU", cc(12, 0));
        assert!(msg.contains("no vector_add.<target>.cubin in /pkg/kernels"), "{msg}");
        assert!(msg.ends_with("--target sm_120a"), "{msg}");
    }

    #[test]
    fn scan_reports_a_missing_directory_and_lists_only_the_kernel() {
        let missing = KernelDir { path: PathBuf::from("/nonexistent/kernels"), origin: "set by test".into() };
        let err = scan(&missing, "vector_add").unwrap_err();
        assert_eq!(err.exit, Exit::NoKernel);
        assert!(err.message.contains("/nonexistent/kernels does not exist (set by test)"), "{}", err.message);

        let tmp = std::env::temp_dir().join(format!("vector-add-scan-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        for name in ["vector_add.sm_90a.cubin", "vector_add.sm_100a.cubin", "other.sm_90a.cubin", "notes.txt"] {
            std::fs::write(tmp.join(name), b"").unwrap();
        }
        let found = scan(&KernelDir { path: tmp.clone(), origin: String::new() }, "vector_add").unwrap();
        std::fs::remove_dir_all(&tmp).unwrap();
        let names: Vec<String> = found.iter().map(Cubin::file_name).collect();
        assert_eq!(names, ["vector_add.sm_90a.cubin", "vector_add.sm_100a.cubin"]);
    }
}
