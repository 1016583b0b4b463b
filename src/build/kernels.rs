//! Kernels: discover `.cu` sources, decide which (kernel, target) pairs are stale, compile them in
//! parallel with nvcc into one cubin each, and explain failures in terms of the `.cu` source.
//!
//! Freshness works like make: a cubin is fresh when its fingerprint records the same nvcc command
//! line and every file nvcc said it read (`-MD`) still has the size and modification time it had.
//! Touching a header therefore recompiles exactly the kernels that include it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::arch::{targets_for_instruction, SmArch};
use crate::cmd::Cmd;
use crate::shell::Shell;
use crate::toolchain::Nvcc;

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

/// What stays the same for every compile of one build.
#[derive(Debug, Clone)]
pub struct CompileSettings<'a> {
    pub nvcc: &'a Nvcc,
    pub profile: Profile,
    pub root: &'a Path,
    pub kernels_dir: &'a Path,
    pub include_dirs: &'a [PathBuf],
    pub extra_flags: &'a [String],
    /// Where cubins go (the package's `kernels/`).
    pub out_dir: &'a Path,
    /// Where fingerprints and dependency files go.
    pub state_dir: &'a Path,
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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct DepStamp {
    path: PathBuf,
    size: u64,
    mtime_ns: u128,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Fingerprint {
    command: String,
    nvcc_version: String,
    deps: Vec<DepStamp>,
    output: DepStamp,
    output_sha256: String,
}

fn stamp(path: &Path) -> Option<DepStamp> {
    let (size, mtime_ns) = crate::cache::file_stamp(path)?;
    Some(DepStamp { path: path.to_path_buf(), size, mtime_ns })
}

impl<'a> CompileSettings<'a> {
    fn cubin_path(&self, job: &Job) -> PathBuf {
        self.out_dir.join(job.cubin_name())
    }

    fn fingerprint_path(&self, job: &Job) -> PathBuf {
        self.state_dir.join(format!("{}.json", job.cubin_name()))
    }

    /// The nvcc command for one job, writing to `out` with its dependency list in `depfile`.
    pub fn command(&self, job: &Job, out: &Path, depfile: &Path) -> Cmd {
        let mut cmd = Cmd::new(&self.nvcc.path, format!("compile {} for {}", job.kernel.rel.display(), job.target))
            .current_dir(self.root)
            .args(["-cubin", "-gencode"])
            .arg(job.target.gencode())
            .args(self.profile.nvcc_flags())
            .arg("-I")
            .arg(self.kernels_dir);
        for dir in self.include_dirs {
            cmd = cmd.arg("-I").arg(dir);
        }
        cmd.args(self.extra_flags).args(["-MD", "-MF"]).arg(depfile).arg("-o").arg(out).arg(&job.kernel.rel)
    }

    /// The fingerprint's view of the command: the same words with the temporary paths left out.
    fn command_key(&self, job: &Job) -> String {
        self.command(job, Path::new("OUT"), Path::new("DEPS")).to_string()
    }

    fn load_fingerprint(&self, job: &Job) -> Option<Fingerprint> {
        let text = std::fs::read_to_string(self.fingerprint_path(job)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The recorded result when nothing the job depends on has changed.
    fn fresh(&self, job: &Job) -> Option<Built> {
        let fp = self.load_fingerprint(job)?;
        if fp.command != self.command_key(job) || fp.nvcc_version != self.nvcc.version.to_string() {
            return None;
        }
        let out = self.cubin_path(job);
        if stamp(&out)? != fp.output {
            return None;
        }
        for dep in &fp.deps {
            if stamp(&dep.path).as_ref() != Some(dep) {
                return None;
            }
        }
        Some(Built { job: job.clone(), path: out, size: fp.output.size, sha256: fp.output_sha256, fresh: true })
    }

    fn compile(&self, shell: &Shell, job: &Job) -> std::result::Result<Built, CompileFailure> {
        let out = self.cubin_path(job);
        let tmp_out = self.state_dir.join(format!("{}.tmp", job.cubin_name()));
        let depfile = self.state_dir.join(format!("{}.d", job.cubin_name()));
        let cmd = self.command(job, &tmp_out, &depfile);
        let output = cmd.output_unchecked(Some(shell)).map_err(|e| CompileFailure::other(job, e))?;
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        if !output.status.success() {
            let _ = std::fs::remove_file(&tmp_out);
            return Err(CompileFailure {
                job: job.clone(),
                diagnostics: self.explain(shell, job, &stderr),
                error: None,
            });
        }
        if !stderr.trim().is_empty() {
            // Warnings: shown, as cargo shows rustc's.
            shell.text(&stderr);
        }
        let finish = || -> Result<Built> {
            let deps_text = std::fs::read_to_string(&depfile)
                .with_context(|| format!("failed to read nvcc's dependency file {}", depfile.display()))?;
            let mut deps = Vec::new();
            let system = system_include_roots(&self.nvcc.path);
            for dep in parse_depfile(&deps_text) {
                let abs = if dep.is_absolute() { dep } else { self.root.join(dep) };
                if system.iter().any(|root| abs.starts_with(root)) {
                    continue;
                }
                deps.push(stamp(&abs).with_context(|| format!("failed to stat kernel dependency {}", abs.display()))?);
            }
            let bytes = std::fs::read(&tmp_out).with_context(|| format!("failed to read {}", tmp_out.display()))?;
            let sha256 = crate::digest::sha256_hex(&bytes);
            std::fs::rename(&tmp_out, &out)
                .with_context(|| format!("failed to move the cubin into place at {}", out.display()))?;
            let output = stamp(&out).with_context(|| format!("failed to stat {}", out.display()))?;
            let fp = Fingerprint {
                command: self.command_key(job),
                nvcc_version: self.nvcc.version.to_string(),
                deps,
                output: output.clone(),
                output_sha256: sha256.clone(),
            };
            let fp_path = self.fingerprint_path(job);
            std::fs::write(&fp_path, serde_json::to_vec_pretty(&fp)?)
                .with_context(|| format!("failed to write fingerprint {}", fp_path.display()))?;
            let _ = std::fs::remove_file(&depfile);
            Ok(Built { job: job.clone(), path: out.clone(), size: output.size, sha256, fresh: false })
        };
        finish().map_err(|e| CompileFailure::other(job, e))
    }

    /// nvcc's diagnostics, plus, for an instruction ptxas refused, the `.cu` line it came from
    /// and the targets that would accept it.
    fn explain(&self, shell: &Shell, job: &Job, stderr: &str) -> String {
        let mut text = stderr.trim_end().to_string();
        let Some(refusal) = parse_ptxas_refusal(stderr) else {
            return text;
        };
        let mut location = None;
        let ptx_dir = tempfile::tempdir().ok();
        if let Some(dir) = &ptx_dir {
            let ptx = dir.path().join("kernel.ptx");
            let cmd = self.command(job, &ptx, &dir.path().join("kernel.d"));
            let args: Vec<_> =
                cmd.get_args().iter().map(|a| if a == "-cubin" { "-ptx".into() } else { a.clone() }).collect();
            let cmd = Cmd::new(cmd.program(), "generate PTX to locate the error").current_dir(self.root).args(args);
            let _ = cmd.output_unchecked(Some(shell));
            if let Ok(ptx_text) = std::fs::read_to_string(&ptx) {
                location = source_location(&ptx_text, refusal.ptx_line);
            }
        }
        text.push('\n');
        let where_ = match &location {
            Some((file, line)) => {
                let shown = file.strip_prefix(self.root).unwrap_or(file).display().to_string();
                let source_line = std::fs::read_to_string(file)
                    .ok()
                    .and_then(|s| s.lines().nth(line.saturating_sub(1) as usize).map(|l| l.trim().to_string()));
                let mut s = format!("{shown}:{line}");
                if let Some(src) = source_line {
                    s.push_str(&format!("\n   |\n{line:>3}| {src}\n   |"));
                }
                s
            }
            None => job.kernel.rel.display().to_string(),
        };
        text.push_str(&format!(
            "error: instruction `{}` is not available on {}, at {where_}",
            refusal.instruction, job.target
        ));
        if let Some(targets) = targets_for_instruction(&refusal.instruction) {
            text.push_str(&format!(
                "\n  = help: `{}` needs {targets}: build with --target {}",
                refusal.instruction,
                targets.split(", ").next().unwrap_or(targets)
            ));
        }
        text
    }
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

/// An instruction ptxas refused for the target, with the line in the temporary PTX.
#[derive(Debug, PartialEq, Eq)]
pub struct PtxasRefusal {
    pub ptx_line: u32,
    pub instruction: String,
}

/// Reads `ptxas /tmp/x.ptx, line 25; error   : Instruction 'wgmma.fence' not supported on .target 'sm_90'`.
pub fn parse_ptxas_refusal(stderr: &str) -> Option<PtxasRefusal> {
    stderr.lines().find_map(|l| {
        let l = l.trim();
        if !l.starts_with("ptxas") || !l.contains("not supported on .target") {
            return None;
        }
        let after = &l[l.find(", line ")? + 7..];
        let ptx_line = after[..after.find(';')?].trim().parse().ok()?;
        let q = l.find("Instruction '")? + 13;
        let instruction = l[q..q + l[q..].find('\'')?].to_string();
        Some(PtxasRefusal { ptx_line, instruction })
    })
}

/// Maps a PTX line back to the `.cu` file and line through the `.loc` and `.file` directives that
/// `-G` and `-lineinfo` emit.
pub fn source_location(ptx: &str, ptx_line: u32) -> Option<(PathBuf, u32)> {
    let mut files = BTreeMap::new();
    for l in ptx.lines() {
        let l = l.trim();
        if let Some(rest) = l.strip_prefix(".file") {
            let rest = rest.trim();
            let (idx, name) = rest.split_once(char::is_whitespace)?;
            let name = name.trim().split('"').nth(1)?;
            files.insert(idx.to_string(), PathBuf::from(name));
        }
    }
    let mut last = None;
    for (i, l) in ptx.lines().enumerate() {
        if i as u32 + 1 >= ptx_line {
            break;
        }
        let l = l.trim();
        if let Some(rest) = l.strip_prefix(".loc") {
            let mut parts = rest.split_whitespace();
            let (Some(file), Some(line)) = (parts.next(), parts.next()) else { continue };
            if let Ok(line) = line.parse::<u32>() {
                last = Some((file.to_string(), line));
            }
        }
    }
    let (file, line) = last?;
    Some((files.get(&file)?.clone(), line))
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

/// A job that failed, with what the user should read.
#[derive(Debug)]
pub struct CompileFailure {
    pub job: Job,
    pub diagnostics: String,
    pub error: Option<anyhow::Error>,
}

impl CompileFailure {
    fn other(job: &Job, e: anyhow::Error) -> CompileFailure {
        CompileFailure { job: job.clone(), diagnostics: String::new(), error: Some(e) }
    }
}

/// Compiles every stale job with up to `jobs` nvcc processes at once. Returns every cubin, fresh
/// or new, in job order. After the first failure no new compile starts; all failures are shown.
pub fn build_all(shell: &Shell, settings: &CompileSettings<'_>, jobs: &[Job], parallel: usize) -> Result<Vec<Built>> {
    std::fs::create_dir_all(settings.out_dir)
        .with_context(|| format!("failed to create {}", settings.out_dir.display()))?;
    std::fs::create_dir_all(settings.state_dir)
        .with_context(|| format!("failed to create {}", settings.state_dir.display()))?;

    let mut results: Vec<Option<Built>> = vec![None; jobs.len()];
    let mut stale = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        match settings.fresh(job) {
            Some(b) => {
                shell.verbose("Fresh", job.label());
                results[i] = Some(b);
            }
            None => stale.push(i),
        }
    }

    let progress = (shell.progress_allowed() && stale.len() > 1).then(|| {
        let pb = indicatif::ProgressBar::new(stale.len() as u64);
        pb.set_style(
            indicatif::ProgressStyle::with_template("    Building [{bar:27}] {pos}/{len}: {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        pb
    });

    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let done: Mutex<Vec<(usize, Built)>> = Mutex::new(Vec::new());
    let failures: Mutex<Vec<CompileFailure>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..parallel.max(1).min(stale.len().max(1)) {
            s.spawn(|| loop {
                if failed.load(Ordering::SeqCst) || crate::exit::interrupted() {
                    return;
                }
                let n = next.fetch_add(1, Ordering::SeqCst);
                let Some(&i) = stale.get(n) else { return };
                let job = &jobs[i];
                match &progress {
                    Some(pb) => {
                        pb.println(format!("{:>12} {}", "Compiling", job.label()));
                        pb.set_message(job.label());
                    }
                    None => shell.status("Compiling", job.label()),
                }
                match settings.compile(shell, job) {
                    Ok(b) => done.lock().unwrap().push((i, b)),
                    Err(f) => {
                        failed.store(true, Ordering::SeqCst);
                        failures.lock().unwrap().push(f);
                    }
                }
                if let Some(pb) = &progress {
                    pb.inc(1);
                }
            });
        }
    });
    if let Some(pb) = progress {
        pb.finish_and_clear();
    }
    crate::exit::check_interrupt()?;

    let failures = failures.into_inner().unwrap();
    if !failures.is_empty() {
        let n = failures.len();
        let mut other = None;
        for f in failures {
            if !f.diagnostics.is_empty() {
                shell.text(&f.diagnostics);
            }
            if let Some(e) = f.error {
                other.get_or_insert(e.context(format!("failed to compile {}", f.job.label())));
            } else {
                shell.text(format!("error: could not compile {} for {}", f.job.kernel.rel.display(), f.job.target));
            }
        }
        if let Some(e) = other {
            return Err(e);
        }
        bail!("could not compile {n} kernel{}: see the nvcc diagnostics above", if n == 1 { "" } else { "s" });
    }
    for (i, b) in done.into_inner().unwrap() {
        results[i] = Some(b);
    }
    Ok(results.into_iter().map(|r| r.expect("every job has a result")).collect())
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
    fn ptxas_refusal_is_read() {
        let stderr = "ptxas /tmp/tmpxft_00000b84_00000000-6_w.ptx, line 25; error   : Instruction 'wgmma.fence' not supported on .target 'sm_90'\nptxas fatal   : Ptx assembly aborted due to errors\n";
        assert_eq!(parse_ptxas_refusal(stderr), Some(PtxasRefusal { ptx_line: 25, instruction: "wgmma.fence".into() }));
        assert_eq!(parse_ptxas_refusal("k.cu(3): error: expected a \";\""), None);
    }

    #[test]
    fn ptx_lines_map_back_to_source() {
        let ptx = "\t.loc\t1 1 0\n\tmov.u32 %r1, 0;\n\t.loc\t1 2 3\n\twgmma.fence.sync.aligned;\n\t.loc\t1 3 1\n\tret;\n\t.file\t1 \"/p/kernels/w.cu\"\n";
        assert_eq!(source_location(ptx, 4), Some((PathBuf::from("/p/kernels/w.cu"), 2)));
        assert_eq!(source_location(ptx, 2), Some((PathBuf::from("/p/kernels/w.cu"), 1)));
        assert_eq!(source_location("no loc", 1), None);
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
    fn profiles_never_mix_debug_and_lineinfo() {
        assert_eq!(Profile::Debug.nvcc_flags(), &["-G"]);
        assert_eq!(Profile::Release.nvcc_flags(), &["-O3", "-lineinfo"]);
    }
}
