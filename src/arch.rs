//! GPU architectures as pure data and rules: parsing and printing targets (`sm_90`, `sm_90a`,
//! `sm_100f`) and compute capabilities (`9.0`), the `-gencode` string for each target, the oldest
//! nvcc that can build it, which compiled code runs on which device, and which targets accept an
//! instruction that a target lacked. No I/O: everything here is unit-tested row by row.

use std::fmt;
use std::str::FromStr;

use semver::Version;

/// The three flavours of a real-architecture target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Variant {
    /// `sm_XY`: runs on X.Y and later minors of the same major.
    Base,
    /// `sm_XYf`: family-specific (CUDA 12.9+), runs on the members of family X from X.Y on.
    Family,
    /// `sm_XYa`: arch-specific (wgmma, tcgen05, ...), runs on exactly X.Y.
    Specific,
}

/// A device's compute capability, as `nvidia-smi --query-gpu=compute_cap` prints it (`9.0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComputeCap {
    pub major: u32,
    pub minor: u32,
}

/// A compilation target: `sm_90a` is `SmArch { major: 9, minor: 0, variant: Specific }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SmArch {
    pub major: u32,
    pub minor: u32,
    pub variant: Variant,
}

/// One row per base architecture that this tool knows: which variants exist and which nvcc
/// versions can build it. `nvcc --list-gpu-code` remains the authority at run time.
struct ArchRow {
    major: u32,
    minor: u32,
    specific: bool,
    family: bool,
    /// Oldest CUDA release whose nvcc builds the base target (and the `a` variant, unless below).
    min_cuda: (u64, u64),
    /// Oldest CUDA release for the `a` variant when it came later than the base target.
    min_cuda_specific: Option<(u64, u64)>,
    /// First CUDA release that no longer builds this target, with the target to use instead.
    removed_in: Option<((u64, u64), &'static str)>,
}

const fn row(major: u32, minor: u32, specific: bool, family: bool, min_cuda: (u64, u64)) -> ArchRow {
    ArchRow { major, minor, specific, family, min_cuda, min_cuda_specific: None, removed_in: None }
}

/// Families (`f`) need CUDA 12.9 whatever the base target needs.
const FAMILY_MIN_CUDA: (u64, u64) = (12, 9);

static ARCHS: &[ArchRow] = &[
    row(7, 5, false, false, (10, 0)),
    row(8, 0, false, false, (11, 0)),
    row(8, 6, false, false, (11, 1)),
    row(8, 7, false, false, (11, 4)),
    row(8, 8, false, false, (13, 0)),
    row(8, 9, false, false, (11, 8)),
    ArchRow { min_cuda_specific: Some((12, 0)), ..row(9, 0, true, false, (11, 8)) },
    row(10, 0, true, true, (12, 8)),
    ArchRow { removed_in: Some(((13, 0), "sm_110")), ..row(10, 1, true, true, (12, 8)) },
    row(10, 3, true, true, (12, 9)),
    row(11, 0, true, true, (13, 0)),
    row(12, 0, true, true, (12, 8)),
    row(12, 1, true, true, (12, 9)),
];

fn find_row(major: u32, minor: u32) -> Option<&'static ArchRow> {
    ARCHS.iter().find(|r| r.major == major && r.minor == minor)
}

impl ComputeCap {
    pub const fn new(major: u32, minor: u32) -> ComputeCap {
        ComputeCap { major, minor }
    }

    /// The plain target for this device (`9.0` -> `sm_90`).
    pub fn base_arch(self) -> SmArch {
        SmArch { major: self.major, minor: self.minor, variant: Variant::Base }
    }

    /// The target to suggest for this device: the arch-specific one where it exists, since that
    /// is what unlocks the device's own instructions (`9.0` -> `sm_90a`, `8.9` -> `sm_89`).
    pub fn suggested_arch(self) -> SmArch {
        match find_row(self.major, self.minor) {
            Some(r) if r.specific => SmArch { variant: Variant::Specific, ..self.base_arch() },
            _ => self.base_arch(),
        }
    }
}

impl fmt::Display for ComputeCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl FromStr for ComputeCap {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<ComputeCap> {
        let t = s.trim();
        let parsed = t.split_once('.').and_then(|(a, b)| {
            let ok = !a.is_empty() && !b.is_empty() && (a.bytes().chain(b.bytes())).all(|c| c.is_ascii_digit());
            ok.then(|| Some(ComputeCap { major: a.parse().ok()?, minor: b.parse().ok()? })).flatten()
        });
        parsed.ok_or_else(|| anyhow::anyhow!("`{t}` is not a compute capability (expected MAJOR.MINOR, such as 9.0)"))
    }
}

impl SmArch {
    pub const fn new(major: u32, minor: u32, variant: Variant) -> SmArch {
        SmArch { major, minor, variant }
    }

    pub fn compute_cap(self) -> ComputeCap {
        ComputeCap { major: self.major, minor: self.minor }
    }

    fn suffix(self) -> &'static str {
        match self.variant {
            Variant::Base => "",
            Variant::Family => "f",
            Variant::Specific => "a",
        }
    }

    /// The virtual architecture matching this target (`compute_90a`).
    pub fn compute_name(self) -> String {
        format!("compute_{}{}{}", self.major, self.minor, self.suffix())
    }

    /// nvcc's `-gencode` value: SASS for exactly this target, no PTX.
    pub fn gencode(self) -> String {
        format!("arch={},code={}", self.compute_name(), self)
    }

    /// Whether SASS built for this target runs on a device of compute capability `cc`.
    pub fn runs_on(self, cc: ComputeCap) -> bool {
        match self.variant {
            Variant::Specific => cc == self.compute_cap(),
            Variant::Base | Variant::Family => cc.major == self.major && cc.minor >= self.minor,
        }
    }

    /// Whether PTX for this target's virtual architecture can be JIT-compiled for `cc` (given a
    /// driver new enough for the PTX version). Arch- and family-specific PTX follow their SASS rules.
    pub fn ptx_runs_on(self, cc: ComputeCap) -> bool {
        match self.variant {
            Variant::Base => cc >= self.compute_cap(),
            _ => self.runs_on(cc),
        }
    }

    /// The oldest nvcc that builds this target.
    pub fn min_nvcc(self) -> Version {
        let row = find_row(self.major, self.minor).expect("SmArch values are validated on parse");
        let (maj, min) = match self.variant {
            Variant::Base => row.min_cuda,
            Variant::Specific => row.min_cuda_specific.unwrap_or(row.min_cuda),
            Variant::Family => row.min_cuda.max(FAMILY_MIN_CUDA),
        };
        Version::new(maj, min, 0)
    }

    /// Why `nvcc` cannot build this target, or `None` when it can (by this table; the caller
    /// also checks `nvcc --list-gpu-code`).
    pub fn unsupported_by(self, nvcc: &Version) -> Option<String> {
        let min = self.min_nvcc();
        let nv = Version::new(nvcc.major, nvcc.minor, 0);
        if nv < min {
            return Some(format!(
                "{self} needs CUDA {}.{} or newer, found {}.{}: install a newer CUDA toolkit or drop this target",
                min.major, min.minor, nvcc.major, nvcc.minor
            ));
        }
        let row = find_row(self.major, self.minor).expect("validated");
        if let Some(((maj, min), instead)) = row.removed_in {
            if nv >= Version::new(maj, min, 0) {
                return Some(format!(
                    "{self} was removed in CUDA {maj}.{min} (found {}.{}): use {instead}{} instead",
                    nvcc.major,
                    nvcc.minor,
                    self.suffix()
                ));
            }
        }
        None
    }

    /// Every target this tool knows, in a stable order, for error messages and `doctor`.
    pub fn all() -> Vec<SmArch> {
        let mut out = Vec::new();
        for r in ARCHS {
            out.push(SmArch::new(r.major, r.minor, Variant::Base));
            if r.specific {
                out.push(SmArch::new(r.major, r.minor, Variant::Specific));
            }
            if r.family {
                out.push(SmArch::new(r.major, r.minor, Variant::Family));
            }
        }
        out
    }

    /// How well this target fits a device, for picking one cubin among several: higher is
    /// better, `None` when it does not run there at all.
    pub fn fitness(self, cc: ComputeCap) -> Option<(u8, u32)> {
        if !self.runs_on(cc) {
            return None;
        }
        let rank = match self.variant {
            Variant::Specific => 2,
            Variant::Family => 1,
            Variant::Base => 0,
        };
        Some((rank, self.minor))
    }

    /// The best of `targets` for a device, by [`SmArch::fitness`].
    pub fn best_for(targets: &[SmArch], cc: ComputeCap) -> Option<SmArch> {
        targets.iter().copied().filter_map(|t| t.fitness(cc).map(|f| (f, t))).max().map(|(_, t)| t)
    }

    /// The phrase for where this target runs: "compute capability 9.0", "compute capability 10.x from 10.3".
    pub fn runs_where(self) -> String {
        match self.variant {
            Variant::Specific => format!("compute capability {}", self.compute_cap()),
            _ if self.minor == 0 => format!("compute capability {}.x", self.major),
            _ => format!("compute capability {}.{} to {}.9", self.major, self.minor, self.major),
        }
    }
}

impl fmt::Display for SmArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sm_{}{}{}", self.major, self.minor, self.suffix())
    }
}

fn valid_list() -> String {
    SmArch::all().iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
}

/// The numbers and variant of a target written after its `sm_` (`90a`, `100f`, `89`), by syntax
/// alone: whether the table knows it is for the caller to ask.
fn split_target(rest: &str) -> Option<(u32, u32, Variant)> {
    let (digits, variant) = match rest.as_bytes().last()? {
        b'a' => (&rest[..rest.len() - 1], Variant::Specific),
        b'f' => (&rest[..rest.len() - 1], Variant::Family),
        _ => (rest, Variant::Base),
    };
    if !(2..=3).contains(&digits.len()) || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let (maj, min) = digits.split_at(digits.len() - 1);
    Some((maj.parse().ok()?, min.parse().ok()?, variant))
}

/// A target exactly as it must be written, checked against the table.
fn parse_exact(s: &str) -> Option<SmArch> {
    let (major, minor, variant) = split_target(s.strip_prefix("sm_")?)?;
    let row = find_row(major, minor)?;
    let exists = match variant {
        Variant::Base => true,
        Variant::Specific => row.specific,
        Variant::Family => row.family,
    };
    exists.then_some(SmArch { major, minor, variant })
}

/// The target a mistyped one most likely meant, when the only mistakes are its case, a missing or
/// virtual-architecture prefix, or a compute capability's dot: `SM_90A`, `sm90a`, `90a`,
/// `compute_90a` and `9.0a` all mean `sm_90a`. `None` when even that is no known target.
pub fn near_target(s: &str) -> Option<SmArch> {
    let lower = s.trim().to_ascii_lowercase();
    let rest = ["sm_", "sm-", "sm", "compute_", "compute-", "compute"]
        .iter()
        .find_map(|p| lower.strip_prefix(p))
        .unwrap_or(&lower);
    // `9.0a`, `10.0`: a compute capability with its dot, whose minor is one digit.
    let rest = match rest.split_once('.') {
        Some((major, minor)) if minor.len() <= 2 && minor.starts_with(|c: char| c.is_ascii_digit()) => {
            format!("{major}{minor}")
        }
        _ => rest.to_string(),
    };
    parse_exact(&format!("sm_{rest}"))
}

/// The order in which to list real-architecture names as nvcc prints them (`sm_90`, `sm_100f`),
/// known to the table or not: by architecture number, then plain, `a`, `f` (the order of
/// [`SmArch::all`]). `None` for a name that is not `sm_XY`, `sm_XYa` or `sm_XYf`.
pub fn code_order(code: &str) -> Option<(u32, u32, u8)> {
    let (major, minor, variant) = split_target(code.strip_prefix("sm_")?)?;
    let v = match variant {
        Variant::Base => 0,
        Variant::Specific => 1,
        Variant::Family => 2,
    };
    Some((major, minor, v))
}

impl FromStr for SmArch {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<SmArch> {
        parse_exact(s).ok_or_else(|| match near_target(s) {
            Some(near) => {
                anyhow::anyhow!(
                    "`{s}` is not a GPU target (did you mean `{near}`?); valid targets are: {}",
                    valid_list()
                )
            }
            None => anyhow::anyhow!("`{s}` is not a GPU target; valid targets are: {}", valid_list()),
        })
    }
}

impl serde::Serialize for SmArch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for SmArch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SmArch, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The oldest driver, as the CUDA version it supports (`(12, 0)`), that loads the cubins a
/// compiler of version `toolkit` builds for `targets`.
///
/// The rule, from NVIDIA's CUDA Compatibility guide ("Minor Version Compatibility"): code built
/// by a toolkit of major release X runs on any driver of release X.0 or later (12.x: driver
/// 525.60.13 or later; 13.x: driver 580 or later), as long as it is SASS, which a cubin built for
/// a real target is; PTX would need a driver at least as new as the toolkit, for its JIT, and a
/// package holds none. A target also needs a driver from its first toolkit on (sm_100a: 12.8),
/// since older drivers do not know the GPU.
pub fn min_driver_cuda(toolkit: &Version, targets: &[SmArch]) -> (u64, u64) {
    let mut v = (toolkit.major, 0);
    for t in targets {
        let m = t.min_nvcc();
        v = v.max((m.major, m.minor));
    }
    v
}

/// Which targets accept a PTX instruction that ptxas refused, for the hint after a failed
/// compile ("wgmma.fence needs sm_90a"). Matched on the instruction's leading name.
pub fn targets_for_instruction(instruction: &str) -> Option<&'static str> {
    const TABLE: &[(&str, &str)] = &[
        ("wgmma", "sm_90a"),
        ("setmaxnreg", "sm_90a, sm_100a, sm_100f, sm_103a, sm_110a, sm_120a"),
        ("tcgen05", "sm_100a, sm_100f, sm_103a, sm_103f, sm_110a, sm_110f"),
        ("cp.async.bulk", "sm_90 or newer"),
        ("multimem", "sm_90 or newer"),
        ("elect", "sm_90 or newer"),
    ];
    TABLE.iter().find(|(prefix, _)| instruction.starts_with(prefix)).map(|(_, t)| *t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arch(s: &str) -> SmArch {
        s.parse().unwrap()
    }

    fn cc(s: &str) -> ComputeCap {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_prints_every_known_target() {
        for a in SmArch::all() {
            assert_eq!(arch(&a.to_string()), a);
        }
        assert_eq!(arch("sm_90a"), SmArch::new(9, 0, Variant::Specific));
        assert_eq!(arch("sm_100a"), SmArch::new(10, 0, Variant::Specific));
        assert_eq!(arch("sm_100f"), SmArch::new(10, 0, Variant::Family));
        assert_eq!(arch("sm_120"), SmArch::new(12, 0, Variant::Base));
        assert_eq!(arch("sm_86").to_string(), "sm_86");
    }

    #[test]
    fn rejects_bad_targets_with_the_valid_list() {
        for bad in ["sm_99z", "sm_99", "sm_90f", "sm_80a", "90a", "compute_90a", "sm_", "sm_1000", "SM_90", "sm_9x", ""]
        {
            let err = bad.parse::<SmArch>().unwrap_err().to_string();
            assert!(err.contains(&format!("`{bad}` is not a GPU target")), "{err}");
            assert!(err.contains("sm_90a, sm_100, sm_100a, sm_100f"), "{err}");
        }
    }

    #[test]
    fn near_misses_suggest_the_target_they_mean() {
        for typo in ["sm90a", "SM_90A", "sm_90A", "90a", "compute_90a", "Sm-90a", "9.0a", "sm_9.0a", " sm_90a "] {
            assert_eq!(near_target(typo), Some(arch("sm_90a")), "{typo}");
            let err = typo.parse::<SmArch>().unwrap_err().to_string();
            assert!(err.starts_with(&format!("`{typo}` is not a GPU target (did you mean `sm_90a`?); ")), "{err}");
            assert!(err.contains("valid targets are: sm_75, "), "the list stays: {err}");
        }
        assert_eq!(near_target("COMPUTE_100F"), Some(arch("sm_100f")));
        assert_eq!(near_target("120"), Some(arch("sm_120")));
        assert_eq!(near_target("10.3"), Some(arch("sm_103")));
        assert_eq!(near_target("sm_1000"), None);
    }

    #[test]
    fn no_hint_without_a_known_target_near() {
        // sm_80a and sm_90f are well formed but do not exist: guessing a variant would change what
        // the code may use, so only the list is offered.
        for bad in ["sm_99z", "sm_99", "sm_90f", "sm_80a", "SM_80A", "hopper", "9.x", "compute_", ""] {
            assert_eq!(near_target(bad), None, "{bad}");
            let err = bad.parse::<SmArch>().unwrap_err().to_string();
            assert!(!err.contains("did you mean"), "{err}");
            assert!(err.contains("valid targets are: sm_75, "), "{err}");
        }
    }

    #[test]
    fn exactly_the_listed_targets_parse() {
        let known: Vec<String> = SmArch::all().iter().map(|t| t.to_string()).collect();
        for n in 10..1300 {
            for suffix in ["", "a", "f"] {
                let t = format!("sm_{n}{suffix}");
                assert_eq!(t.parse::<SmArch>().is_ok(), known.contains(&t), "{t}");
            }
        }
    }

    #[test]
    fn codes_sort_by_architecture_then_plain_a_f() {
        let mut codes = vec!["sm_120f", "sm_100", "sm_90a", "sm_75", "sm_121", "sm_100f", "sm_52", "sm_100a", "sm_90"];
        codes.sort_by_key(|c| code_order(c));
        assert_eq!(codes, ["sm_52", "sm_75", "sm_90", "sm_90a", "sm_100", "sm_100a", "sm_100f", "sm_120f", "sm_121"]);
        assert_eq!(code_order("compute_90"), None);
        let all: Vec<String> = SmArch::all().iter().map(|t| t.to_string()).collect();
        let mut sorted = all.clone();
        sorted.sort_by_key(|c| code_order(c));
        assert_eq!(sorted, all, "SmArch::all() is already in this order");
    }

    #[test]
    fn compute_caps_parse_and_print() {
        assert_eq!(cc("9.0"), ComputeCap::new(9, 0));
        assert_eq!(cc(" 12.0\n"), ComputeCap::new(12, 0));
        assert_eq!(cc("10.3").to_string(), "10.3");
        for bad in ["9", "9.", ".0", "a.b", "9.0.1", ""] {
            assert!(bad.parse::<ComputeCap>().is_err(), "{bad}");
        }
    }

    #[test]
    fn gencode_strings() {
        assert_eq!(arch("sm_90a").gencode(), "arch=compute_90a,code=sm_90a");
        assert_eq!(arch("sm_100a").gencode(), "arch=compute_100a,code=sm_100a");
        assert_eq!(arch("sm_100f").gencode(), "arch=compute_100f,code=sm_100f");
        assert_eq!(arch("sm_90").gencode(), "arch=compute_90,code=sm_90");
    }

    #[test]
    fn arch_specific_code_runs_only_on_its_exact_device() {
        assert!(arch("sm_90a").runs_on(cc("9.0")));
        assert!(!arch("sm_90a").runs_on(cc("12.0")), "sm_90a must not run on an RTX 5060 Ti");
        assert!(!arch("sm_90a").runs_on(cc("10.0")));
        assert!(arch("sm_100a").runs_on(cc("10.0")));
        assert!(!arch("sm_100a").runs_on(cc("10.3")));
        assert!(!arch("sm_100a").runs_on(cc("9.0")));
        assert!(!arch("sm_120a").runs_on(cc("12.1")));
    }

    #[test]
    fn plain_code_runs_on_later_minors_of_its_major() {
        assert!(arch("sm_80").runs_on(cc("8.6")));
        assert!(arch("sm_80").runs_on(cc("8.9")));
        assert!(!arch("sm_86").runs_on(cc("8.0")));
        assert!(!arch("sm_80").runs_on(cc("9.0")), "SASS never crosses a major");
        assert!(arch("sm_120").runs_on(cc("12.1")));
        assert!(!arch("sm_90").runs_on(cc("10.0")));
    }

    #[test]
    fn family_code_runs_on_its_family() {
        assert!(arch("sm_100f").runs_on(cc("10.0")));
        assert!(arch("sm_100f").runs_on(cc("10.3")));
        assert!(!arch("sm_103f").runs_on(cc("10.0")));
        assert!(!arch("sm_100f").runs_on(cc("12.0")));
        assert!(arch("sm_120f").runs_on(cc("12.1")));
    }

    #[test]
    fn ptx_runs_on_newer_devices() {
        assert!(arch("sm_90").ptx_runs_on(cc("10.0")));
        assert!(arch("sm_90").ptx_runs_on(cc("12.0")));
        assert!(!arch("sm_90").ptx_runs_on(cc("8.9")));
        assert!(!arch("sm_90a").ptx_runs_on(cc("10.0")), "arch-specific PTX is not forward compatible");
    }

    #[test]
    fn minimum_nvcc_per_target() {
        let v = |s: &str| arch(s).min_nvcc().to_string();
        assert_eq!(v("sm_90a"), "12.0.0");
        assert_eq!(v("sm_90"), "11.8.0");
        assert_eq!(v("sm_100a"), "12.8.0");
        assert_eq!(v("sm_101a"), "12.8.0");
        assert_eq!(v("sm_103a"), "12.9.0");
        assert_eq!(v("sm_120a"), "12.8.0");
        assert_eq!(v("sm_100f"), "12.9.0");
        assert_eq!(v("sm_120f"), "12.9.0");
        assert_eq!(v("sm_110a"), "13.0.0");
    }

    #[test]
    fn too_old_and_too_new_nvcc_are_explained() {
        let old = Version::new(12, 4, 131);
        assert_eq!(
            arch("sm_100a").unsupported_by(&old).unwrap(),
            "sm_100a needs CUDA 12.8 or newer, found 12.4: install a newer CUDA toolkit or drop this target"
        );
        assert_eq!(arch("sm_90a").unsupported_by(&old), None);
        let new = Version::new(13, 0, 88);
        assert_eq!(arch("sm_100a").unsupported_by(&new), None);
        let msg = arch("sm_101a").unsupported_by(&new).unwrap();
        assert!(msg.contains("removed in CUDA 13.0") && msg.contains("use sm_110a instead"), "{msg}");
        assert_eq!(arch("sm_101a").unsupported_by(&Version::new(12, 9, 0)), None);
    }

    #[test]
    fn best_cubin_for_a_device() {
        let have: Vec<SmArch> = ["sm_90", "sm_90a", "sm_100a", "sm_100f", "sm_100"].iter().map(|s| arch(s)).collect();
        assert_eq!(SmArch::best_for(&have, cc("9.0")), Some(arch("sm_90a")));
        assert_eq!(SmArch::best_for(&have, cc("10.0")), Some(arch("sm_100a")));
        assert_eq!(SmArch::best_for(&have, cc("10.3")), Some(arch("sm_100f")));
        assert_eq!(SmArch::best_for(&have, cc("12.0")), None);
        let plain = [arch("sm_80"), arch("sm_86")];
        assert_eq!(SmArch::best_for(&plain, cc("8.9")), Some(arch("sm_86")));
    }

    #[test]
    fn suggestions_and_wording() {
        assert_eq!(cc("9.0").suggested_arch().to_string(), "sm_90a");
        assert_eq!(cc("8.9").suggested_arch().to_string(), "sm_89");
        assert_eq!(cc("12.0").suggested_arch().to_string(), "sm_120a");
        assert_eq!(cc("12.0").base_arch().to_string(), "sm_120");
        assert_eq!(arch("sm_90a").runs_where(), "compute capability 9.0");
        assert_eq!(arch("sm_100f").runs_where(), "compute capability 10.x");
        assert_eq!(arch("sm_86").runs_where(), "compute capability 8.6 to 8.9");
    }

    #[test]
    fn instruction_hints() {
        assert_eq!(targets_for_instruction("wgmma.fence"), Some("sm_90a"));
        assert!(targets_for_instruction("tcgen05.alloc").unwrap().starts_with("sm_100a"));
        assert_eq!(targets_for_instruction("add.f32"), None);
    }

    #[test]
    fn serde_round_trip() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct T {
            t: Vec<SmArch>,
        }
        let text = toml::to_string(&T { t: vec![arch("sm_90a")] }).unwrap();
        assert_eq!(text.trim(), r#"t = ["sm_90a"]"#);
        let err = toml::from_str::<T>(r#"t = ["sm_99z"]"#).err().unwrap().to_string();
        assert!(err.contains("`sm_99z` is not a GPU target"), "{err}");
    }
}
