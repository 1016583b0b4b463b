//! What the preflight learned about a remote, read from its answer (every value escaped: it is a
//! stranger's text), and the refusals that follow before anything is uploaded: no usable GPU, a
//! compute capability the package has no cubin for, an old driver, an old glibc, another machine
//! type, too little disk, a CUDA tool the run asks for and the remote lacks. Each refusal names
//! what to do.

use std::collections::BTreeMap;

use anyhow::{bail, Result};

use crate::arch::{ComputeCap, SmArch};
use crate::escape;
use crate::package::manifest::{gnu_triple, parse_version, Manifest, RunnerEntry};
use crate::remote::scripts::DISK_MARGIN_BYTES;
use crate::remote::tools::{self, RunTools};
use crate::shell::human_bytes;
use crate::toolchain::installed;

/// What preflight learned about the remote.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RemoteFacts {
    pub gpu_name: Option<String>,
    pub compute_cap: Option<ComputeCap>,
    pub driver_version: Option<String>,
    pub gpu_error: Option<String>,
    /// `13.0`, from `nvidia-smi -q`.
    pub driver_cuda: Option<String>,
    pub glibc: Option<String>,
    pub machine: Option<String>,
    pub disk_free_bytes: Option<u64>,
    /// The CUDA tools found there (names of [`tools::TOOL_NAMES`]), with their paths.
    pub tools: BTreeMap<String, String>,
    pub counters: Counters,
    pub missing: Vec<String>,
}

/// Whether ncu may read the GPU's performance counters there.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum Counters {
    /// The driver lets every user read them (`RmProfilingAdminOnly: 0`), or the run is root's.
    Allowed,
    /// Only root may (`RmProfilingAdminOnly: 1`), and the run is another user's: ncu would stop
    /// at `ERR_NVGPUCTRPERM`.
    AdminOnly { uid: u32 },
    /// The driver's parameters could not be read (a container may hide them).
    #[default]
    Unknown,
}

impl Counters {
    /// `counters: UID ADMIN-ONLY`, as [`tools::preflight_lines`] prints it.
    fn parse(value: &str) -> Counters {
        let mut words = value.split_whitespace();
        let uid = words.next().and_then(|u| u.parse::<u32>().ok());
        match (uid, words.next()) {
            (Some(0), _) | (_, Some("0")) => Counters::Allowed,
            (Some(uid), Some("1")) => Counters::AdminOnly { uid },
            _ => Counters::Unknown,
        }
    }
}

/// Every value is the remote's own text: control characters are escaped here, once, so that a
/// GPU "name" cannot drive the terminal it is printed on or the records it is kept in.
pub fn parse_preflight(text: &str) -> Result<RemoteFacts> {
    let mut f = RemoteFacts::default();
    let mut protocol = false;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(": ") else { continue };
        let value = escape::line(value.trim());
        let value = value.as_str();
        match key {
            "protocol" => protocol = true,
            "gpu" if f.gpu_name.is_none() => {
                let gpus = crate::nvidia_smi::parse_gpu_query(value)?;
                if let Some(g) = gpus.into_iter().next() {
                    f.gpu_name = Some(g.name);
                    f.compute_cap = Some(g.compute_cap);
                    f.driver_version = Some(g.driver_version);
                }
            }
            "gpu-error" => f.gpu_error = Some(value.to_string()),
            "cuda" => f.driver_cuda = Some(value.to_string()),
            "glibc" => {
                f.glibc = value.split_whitespace().last().filter(|v| parse_version(v).is_some()).map(str::to_string)
            }
            "machine" => f.machine = Some(value.to_string()).filter(|v| !v.is_empty()),
            "disk-free-kb" => f.disk_free_bytes = value.parse::<u64>().ok().map(|kb| kb * 1024),
            "tool" => {
                if let Some((name, path)) = value.split_once(' ') {
                    if tools::TOOL_NAMES.contains(&name) {
                        f.tools.insert(name.to_string(), path.to_string());
                    }
                }
            }
            "counters" => f.counters = Counters::parse(value),
            "missing" => f.missing.push(value.to_string()),
            _ => {}
        }
    }
    if !protocol {
        let head: Vec<&str> = text.trim().lines().take(20).collect();
        bail!("the remote did not answer the preflight script; it printed:\n{}", escape::block(&head.join("\n"), "  "));
    }
    Ok(f)
}

/// Remembers the machine and glibc a preflight of `remote` saw, for the next build for it (see
/// `config::Remote::known_machine`).
pub fn remember(remote: &str, facts: &RemoteFacts) {
    if let Some(cache) = crate::cache::cache_dir() {
        let seen = crate::config::SeenMachine { machine: facts.machine.clone(), glibc: facts.glibc.clone() };
        crate::config::remember_machine(&cache, remote, &seen);
    }
}

/// The package's runner for the remote's machine (`uname -m`), or the refusal that says how to
/// get one. The machine is remembered before this (see [`remember`]), so the next
/// build for the remote builds the runner it lacks.
pub fn runner_for<'m>(remote: &str, facts: &RemoteFacts, manifest: &'m Manifest) -> Result<&'m RunnerEntry> {
    let machine = facts.machine.as_deref();
    if let Some(r) = manifest.runner_for(machine) {
        return Ok(r);
    }
    let Some(machine) = machine else {
        bail!(
            "{remote} did not say what machine it is (`uname -m`), and the package has runners for several: {}",
            manifest.runner_triples()
        );
    };
    let triple = gnu_triple(machine);
    bail!(
        "{remote} is an {machine} machine and the package has no runner for it (it has {}): cargo-gpu has noted \
         {remote}'s machine, so running the same command again builds the runner for {triple}; or set \
         `machine = \"{machine}\"` in [remotes.{remote}] of the cargo-gpu config; a `--package` run needs a package \
         built with `cargo gpu build --runner-target {triple}`",
        manifest.runner_triples()
    )
}

/// The target that runs on the remote GPU, or the refusal that names what to build instead.
/// `need_bytes` is what the upload and the run folder take.
pub fn check(remote: &str, facts: &RemoteFacts, manifest: &Manifest, need_bytes: u64) -> Result<SmArch> {
    let p = &manifest.package;
    let cc = match (facts.compute_cap, &facts.gpu_error) {
        (Some(cc), _) => cc,
        (None, Some(e)) if e.contains("not found") => bail!(
            "{remote} has no NVIDIA driver: nvidia-smi is not installed there; choose a remote with a GPU (--remote NAME)"
        ),
        (None, Some(e)) => bail!("{remote} has no usable GPU: nvidia-smi said `{e}`"),
        (None, None) => bail!("{remote} has no GPU (nvidia-smi listed none)"),
    };
    let gpu = facts.gpu_name.as_deref().unwrap_or("its GPU");
    let Some(target) = SmArch::best_for(&p.targets, cc) else {
        let has: Vec<String> = p.targets.iter().map(|t| t.to_string()).collect();
        bail!(
            "package has {}; {remote} is compute capability {cc} ({gpu}): build with --target {}",
            has.join(", "),
            cc.suggested_arch()
        );
    };
    if let Some(refusal) =
        driver_refusal(remote, facts.driver_cuda.as_deref(), &p.min_driver_cuda, &p.nvcc_version, &p.targets)
    {
        bail!(refusal);
    }
    let runner = runner_for(remote, facts, manifest)?;
    if let Some(need) = runner.glibc.as_deref() {
        match facts.glibc.as_deref() {
            Some(have) if parse_version(have) < parse_version(need) => bail!(
                "{remote} has glibc {have}, older than the {need} the runner for {} needs: cargo-gpu has noted {remote}'s \
                 glibc, so running the same command again builds the runner for glibc {have}; or set \
                 `runner-glibc = \"{have}\"` in [package.metadata.gpu]",
                runner.triple
            ),
            None => bail!("{remote} has no glibc that cargo-gpu could find, and the runner needs glibc {need}"),
            _ => {}
        }
    }
    if let Some(free) = facts.disk_free_bytes {
        if free < need_bytes + DISK_MARGIN_BYTES {
            bail!(
                "{remote} has {} free in its workdir; the run needs {} plus {} to spare",
                human_bytes(free),
                human_bytes(need_bytes),
                human_bytes(DISK_MARGIN_BYTES)
            );
        }
    }
    Ok(target)
}

/// Why a driver of CUDA `have` cannot load a package that needs `need`, with the toolchain to
/// pin instead (the newest installable one that it loads and that builds `targets`), or `None`
/// when it can.
pub fn driver_refusal(
    remote: &str,
    have: Option<&str>,
    need: &str,
    built_with: &str,
    targets: &[SmArch],
) -> Option<String> {
    let have_v = parse_version(have?)?;
    let need_v = parse_version(need)?;
    if have_v >= need_v {
        return None;
    }
    let have = have?;
    let fix = match installed::newest_for_driver((have_v.0.into(), have_v.1.into()), targets) {
        Some(r) => format!(
            "build with CUDA {v}: add `cuda = \"{v}\"` to [package.metadata.gpu] (and run `cargo gpu toolchain install {v}`), or update the driver there",
            v = r.version
        ),
        None => "update the driver there (no CUDA toolchain cargo-gpu installs builds for it)".to_string(),
    };
    Some(format!(
        "{remote}'s driver supports CUDA {have}, older than the {need} that packages from CUDA {built_with} need: {fix}"
    ))
}

/// What to install for each of the remote's tools.
fn install_hint(tool: &str) -> &'static str {
    match tool {
        "compute-sanitizer" => {
            "install the CUDA toolkit's compute-sanitizer there (`apt install cuda-sanitizer-13-0`, or \
             `pip install nvidia-cuda-sanitizer-api`)"
        }
        "ncu" => "install Nsight Compute there (`apt install cuda-nsight-compute-13-0`)",
        _ => "install the CUDA toolkit's cuda-gdb there (`apt install cuda-gdb-13-0`)",
    }
}

/// The option of `remote-run` that asks for each tool.
fn option_of(tool: &str) -> &'static str {
    match tool {
        "compute-sanitizer" => "--sanitize",
        "ncu" => "--profile",
        _ => "--debug",
    }
}

/// Refuses a run whose tools the remote lacks, before anything is uploaded, and returns the
/// notes to print before the run (a kernel fault that cannot be sanitised, counters that may
/// be closed to ncu).
/// `shipping`: this machine's compute-sanitizer goes along; `shippable`: it could (see
/// `remote::ship`).
pub fn check_tools(
    remote: &str,
    facts: &RemoteFacts,
    tools: &RunTools,
    shipping: bool,
    shippable: bool,
) -> Result<Vec<String>> {
    for tool in tools.required() {
        let shipped = tool == "compute-sanitizer" && shipping;
        if !facts.tools.contains_key(tool) && !shipped {
            let ship = if tool == "compute-sanitizer" {
                "; or install it here beside nvcc (`pip install nvidia-cuda-sanitizer-api`, as scripts/setup.sh does) and cargo-gpu ships it there"
            } else {
                ""
            };
            bail!(
                "{remote} has no {tool} (looked on PATH, in $CUDA_HOME/bin and in /usr/local/cuda/bin), which {} needs: {}, or run without {}{ship}",
                option_of(tool),
                install_hint(tool),
                option_of(tool)
            );
        }
    }
    let mut notes = Vec::new();
    if tools.profile.is_some() {
        match facts.counters {
            Counters::AdminOnly { uid } => bail!(
                "ncu cannot read the GPU's performance counters on {remote}: its driver allows that only to root \
                 (RmProfilingAdminOnly: 1) and the run is uid {uid}, so ncu would stop at ERR_NVGPUCTRPERM; run as root \
                 there (`user = \"root\"`), or have the host load the driver with NVreg_RestrictProfilingToAdminUsers=0"
            ),
            Counters::Unknown => notes.push(format!(
                "could not tell whether ncu may read the GPU's counters on {remote} (/proc/driver/nvidia/params is not readable there); if the profile is empty, ncu.log says why (ERR_NVGPUCTRPERM: only root may)"
            )),
            Counters::Allowed => {}
        }
    }
    if tools.autosanitize
        && tools.sanitize.as_deref() != Some("memcheck")
        && !facts.tools.contains_key("compute-sanitizer")
        && !shipping
    {
        let what = if shippable {
            "run once with --sanitize to ship this machine's compute-sanitizer there (later runs reuse it), or set `ship-sanitizer = \"always\"`".to_string()
        } else {
            install_hint("compute-sanitizer").to_string()
        };
        notes.push(format!(
            "{remote} has no compute-sanitizer: a kernel fault will not be rerun under memcheck to find its line ({what})"
        ));
    }
    Ok(notes)
}

/// `compute-sanitizer, ncu (counters: root only), no cuda-gdb`: the tools line of the preflight.
pub fn tools_summary(facts: &RemoteFacts) -> String {
    tools::TOOL_NAMES
        .iter()
        .map(|t| match (facts.tools.contains_key(*t), *t, facts.counters) {
            (false, _, _) => format!("no {t}"),
            (true, "ncu", Counters::AdminOnly { .. }) => "ncu (counters: root only)".to_string(),
            (true, "ncu", Counters::Unknown) => "ncu (counters: unknown)".to_string(),
            (true, _, _) => t.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(targets: &[&str]) -> Manifest {
        Manifest::sample(targets)
    }

    fn h100() -> RemoteFacts {
        parse_preflight(
            "protocol: 1\ngpu: NVIDIA H100 80GB HBM3, 9.0, 580.95.05\ncuda: 13.0\nglibc: glibc 2.39\n\
             machine: x86_64\ndisk-free-kb: 104857600\nmissing: bbbb\n",
        )
        .unwrap()
    }

    #[test]
    fn preflight_answer_is_read() {
        let f = h100();
        assert_eq!(f.gpu_name.as_deref(), Some("NVIDIA H100 80GB HBM3"));
        assert_eq!(f.compute_cap, Some(ComputeCap::new(9, 0)));
        assert_eq!(f.driver_cuda.as_deref(), Some("13.0"));
        assert_eq!(f.glibc.as_deref(), Some("2.39"));
        assert_eq!(f.disk_free_bytes, Some(100 << 30));
        assert_eq!(f.missing, ["bbbb"]);
        let ldd = parse_preflight("protocol: 1\nglibc: ldd (Debian GLIBC 2.36-9+deb12u4) 2.36\n").unwrap();
        assert_eq!(ldd.glibc.as_deref(), Some("2.36"));
        assert!(parse_preflight("Welcome to Ubuntu\n").is_err());
    }

    #[test]
    fn the_tools_are_read_and_a_missing_one_is_refused() {
        let mut f = parse_preflight(
            "protocol: 1\ntool: compute-sanitizer /usr/local/cuda/bin/compute-sanitizer\ntool: ncu /opt/n\x1b[2J/ncu\n\
             tool: rm /bin/rm\ncounters: 1000 1\n",
        )
        .unwrap();
        assert_eq!(f.tools.keys().collect::<Vec<_>>(), ["compute-sanitizer", "ncu"]);
        assert_eq!(f.tools["ncu"], "/opt/n\\e[2J/ncu", "escaped");
        assert_eq!(f.counters, Counters::AdminOnly { uid: 1000 });
        assert_eq!(tools_summary(&f), "compute-sanitizer, ncu (counters: root only), no cuda-gdb");
        let debug = RunTools { debug: true, ..Default::default() };
        let err = check_tools("h100", &f, &debug, false, false).unwrap_err().to_string();
        assert!(err.starts_with("h100 has no cuda-gdb (looked on PATH"), "{err}");
        assert!(err.contains("which --debug needs") && err.ends_with("or run without --debug"), "{err}");
        let profile = RunTools { profile: Some(vec![]), ..Default::default() };
        let err = check_tools("h100", &f, &profile, false, false).unwrap_err().to_string();
        assert!(err.contains("ERR_NVGPUCTRPERM") && err.contains("uid 1000"), "{err}");
        f.counters = Counters::parse("0 1");
        assert_eq!(f.counters, Counters::Allowed, "root may");
        assert!(check_tools("h100", &f, &profile, false, false).unwrap().is_empty());
        f.counters = Counters::parse("1000 unknown");
        assert_eq!(
            check_tools("h100", &f, &profile, false, false).unwrap().len(),
            1,
            "unknown counters are said before the run"
        );
        f.tools.clear();
        let sanitize = RunTools { sanitize: Some("racecheck".into()), autosanitize: true, ..Default::default() };
        assert!(check_tools("h100", &f, &sanitize, false, false).unwrap_err().to_string().contains("--sanitize needs"));
        let plain = RunTools { autosanitize: true, ..Default::default() };
        let notes = check_tools("h100", &f, &plain, false, false).unwrap();
        assert!(notes[0].starts_with("h100 has no compute-sanitizer: a kernel fault will not be rerun"), "{notes:?}");
        let notes = check_tools("h100", &f, &plain, false, true).unwrap();
        assert!(notes[0].contains("run once with --sanitize to ship this machine's compute-sanitizer"), "{notes:?}");
        assert!(check_tools("h100", &f, &plain, true, true).unwrap().is_empty(), "shipped along");
        assert!(check_tools("h100", &f, &sanitize, true, true).is_ok(), "shipped along");
    }

    #[test]
    fn refusals_name_what_to_do() {
        let err = check("h100", &h100(), &manifest(&["sm_100a"]), 0).unwrap_err().to_string();
        assert_eq!(
            err,
            "package has sm_100a; h100 is compute capability 9.0 (NVIDIA H100 80GB HBM3): build with --target sm_90a"
        );
        assert_eq!(check("h100", &h100(), &manifest(&["sm_100a", "sm_90a"]), 0).unwrap().to_string(), "sm_90a");
        let mut old = h100();
        old.driver_cuda = Some("12.4".into());
        let err = check("h100", &old, &manifest(&["sm_90a"]), 0).unwrap_err().to_string();
        assert_eq!(
            err,
            "h100's driver supports CUDA 12.4, older than the 13.0 that packages from CUDA 13.0.88 need: build with CUDA \
             12.9: add `cuda = \"12.9\"` to [package.metadata.gpu] (and run `cargo gpu toolchain install 12.9`), or \
             update the driver there"
        );
        let sm100a = ["sm_100a".parse().unwrap()];
        let err = driver_refusal("b200", Some("12.4"), "13.0", "13.0.88", &sm100a).unwrap();
        assert!(err.contains("update the driver there (no CUDA toolchain"), "sm_100a needs a 12.8 driver: {err}");
        assert_eq!(driver_refusal("b200", Some("12.8"), "12.8", "12.9.86", &sm100a), None);
        assert_eq!(driver_refusal("b200", None, "13.0", "13.0.88", &sm100a), None, "unknown: the run decides");
        old.driver_cuda = Some("13.0".into());
        assert!(check("h100", &old, &manifest(&["sm_90a"]), 0).is_ok());
        let mut m = manifest(&["sm_90a"]);
        m.runners[0].glibc = Some("2.40".into());
        let err = check("h100", &h100(), &m, 0).unwrap_err().to_string();
        assert!(
            err.contains("h100 has glibc 2.39, older than the 2.40 the runner for x86_64-unknown-linux-gnu needs")
                && err.contains("running the same command again builds the runner for glibc 2.39"),
            "{err}"
        );
        let err = check("h100", &h100(), &manifest(&["sm_90a"]), 200 << 30).unwrap_err().to_string();
        assert!(err.contains("has 100.0 GiB free") && err.contains("needs 200.0 GiB"), "{err}");
        let mut arm = h100();
        arm.machine = Some("aarch64".into());
        let err = check("gh200", &arm, &manifest(&["sm_90a"]), 0).unwrap_err().to_string();
        assert!(
            err.starts_with(
                "gh200 is an aarch64 machine and the package has no runner for it (it has x86_64-unknown-linux-gnu): \
                 cargo-gpu has noted gh200's machine, so running the same command again builds the runner for \
                 aarch64-unknown-linux-gnu; or set `machine = \"aarch64\"` in [remotes.gh200]"
            ),
            "{err}"
        );
        let none = parse_preflight("protocol: 1\ngpu-error: sh: 5: nvidia-smi: not found\n").unwrap();
        let err = check("box", &none, &manifest(&["sm_90a"]), 0).unwrap_err().to_string();
        assert!(err.starts_with("box has no NVIDIA driver: nvidia-smi is not installed there"), "{err}");
        let broken = parse_preflight("protocol: 1\ngpu-error: NVIDIA-SMI has failed because it couldn't communicate\n");
        let err = check("box", &broken.unwrap(), &manifest(&["sm_90a"]), 0).unwrap_err().to_string();
        assert_eq!(
            err,
            "box has no usable GPU: nvidia-smi said `NVIDIA-SMI has failed because it couldn't communicate`"
        );
    }

    #[test]
    fn the_runner_of_the_remotes_machine_is_taken_and_checked() {
        let m = Manifest::sample_two_runners(&["sm_90a"]);
        let mut gh200 = h100();
        gh200.machine = Some("aarch64".into());
        gh200.glibc = Some("2.35".into());
        assert_eq!(runner_for("gh200", &gh200, &m).unwrap().path, "bin/aarch64-unknown-linux-gnu/demo");
        assert_eq!(check("gh200", &gh200, &m, 0).unwrap().to_string(), "sm_90a");
        assert_eq!(runner_for("h100", &h100(), &m).unwrap().triple, "x86_64-unknown-linux-gnu");
        // Each runner's own glibc need counts: the aarch64 one needs 2.28 only.
        gh200.glibc = Some("2.31".into());
        assert!(check("gh200", &gh200, &m, 0).is_ok());
        let mut old = h100();
        old.glibc = Some("2.31".into());
        assert!(check("h100", &old, &m, 0)
            .unwrap_err()
            .to_string()
            .contains("older than the 2.34 the runner for x86_64"));
        gh200.machine = None;
        let err = runner_for("gh200", &gh200, &m).unwrap_err().to_string();
        assert!(err.contains("did not say what machine it is"), "{err}");
    }
}
