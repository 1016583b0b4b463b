//! One kernel for one target, compiled by nvcc into one cubin: the command line (`-cubin`,
//! `-gencode` for exactly that target, the profile's flags, `-MD` for the files it reads), the
//! freshness check against its fingerprint, and the compile itself. Cubins and fingerprints live
//! in the build's state folder, one per kernel and target, so switching targets back and forth
//! recompiles nothing.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::cmd::Cmd;
use crate::compile::diagnostics::{self, CompileFailure};
use crate::compile::fingerprint::{self, Fingerprint};
use crate::compile::sources::{Built, Job, Profile};
use crate::inspect::report::{self, KernelReport, Tools};
use crate::inspect::{expect, ptxas, warnings};
use crate::project::Expectations;
use crate::shell::Shell;
use crate::toolchain::Nvcc;

/// What stays the same for every compile of one build.
#[derive(Debug, Clone)]
pub struct CompileSettings<'a> {
    pub nvcc: &'a Nvcc,
    pub profile: Profile,
    pub root: &'a Path,
    pub kernels_dir: &'a Path,
    pub include_dirs: &'a [PathBuf],
    pub extra_flags: &'a [String],
    /// Where cubins, fingerprints and dependency files go: one of each per kernel and target.
    pub state_dir: &'a Path,
    /// cuobjdump and nvdisasm, which make each cubin's report; `None` when they are missing.
    pub tools: Option<&'a Tools>,
    /// The project's expected instructions: a trap-only stub declared there is not warned about.
    pub expect: &'a Expectations,
    /// Whether a compile shows its findings (spills, ptxas advisories, trap-only stubs) at once.
    pub announce: bool,
}

impl<'a> CompileSettings<'a> {
    /// Where the cubin of `job` is kept (the package gets a link or copy of it).
    pub fn cubin_path(&self, job: &Job) -> PathBuf {
        self.state_dir.join("cubins").join(job.cubin_name())
    }

    fn fingerprint_path(&self, job: &Job) -> PathBuf {
        self.state_dir.join(format!("{}.json", job.cubin_name()))
    }

    /// The report on the cubin of `job` (see [`KernelReport`]), beside its fingerprint.
    pub fn report_path(&self, job: &Job) -> PathBuf {
        report::paths(self.state_dir, &job.cubin_name()).0
    }

    /// The report on the cubin the build before this one made, which `inspect --diff` compares with.
    pub fn previous_report_path(&self, job: &Job) -> PathBuf {
        report::paths(self.state_dir, &job.cubin_name()).1
    }

    /// The nvcc command for one job, writing to `out` with its dependency list in `depfile`.
    pub fn command(&self, job: &Job, out: &Path, depfile: &Path) -> Cmd {
        let mut cmd = self
            .nvcc
            .invoke(format!("compile {} for {}", job.kernel.rel.display(), job.target))
            .current_dir(self.root)
            .args(["-cubin", "-gencode"])
            .arg(job.target.gencode())
            .args(self.profile.nvcc_flags())
            // ptxas's figures (spills, barriers) are known only while it compiles: the report keeps them.
            .args(["-Xptxas", "-v"])
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

    /// The recorded result when nothing the job depends on has changed.
    pub fn fresh(&self, job: &Job) -> Option<Built> {
        let fp = Fingerprint::load(&self.fingerprint_path(job))?;
        let out = self.cubin_path(job);
        if !fp.holds(&self.command_key(job), &self.nvcc.version.to_string(), &out) {
            return None;
        }
        // The report is part of the result: without it (or with one on another cubin) compile again.
        let report = match self.tools {
            Some(_) => Some(KernelReport::load(&self.report_path(job)).filter(|r| r.sha256 == fp.output_sha256)?),
            None => None,
        };
        Some(Built { job: job.clone(), path: out, size: fp.output.size, sha256: fp.output_sha256, fresh: true, report })
    }

    pub fn compile(&self, shell: &Shell, job: &Job) -> std::result::Result<Built, CompileFailure> {
        let out = self.cubin_path(job);
        // Named by process: builds of one project at once (nextest starts a `cargo gpu exec` per
        // test) each write their own, and the last to finish moves its cubin into place.
        let pid = std::process::id();
        let tmp_out = self.state_dir.join(format!("{}.{pid}.tmp", job.cubin_name()));
        let depfile = self.state_dir.join(format!("{}.{pid}.d", job.cubin_name()));
        let cmd = self.command(job, &tmp_out, &depfile);
        let output = cmd.output_unchecked(Some(shell)).map_err(|e| CompileFailure::other(job, e))?;
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        if !output.status.success() {
            let _ = std::fs::remove_file(&tmp_out);
            return Err(CompileFailure {
                job: job.clone(),
                diagnostics: diagnostics::explain(shell, job, &stderr, self.root, |ptx| {
                    self.command(job, ptx, &ptx.with_extension("d"))
                }),
                error: None,
            });
        }
        // ptxas's figures and advisories go into the report; nvcc's other words (warnings) are
        // shown as cargo shows rustc's.
        let (ptxas_report, rest) = ptxas::parse(&stderr);
        if !rest.trim().is_empty() {
            shell.text(&rest);
        }
        let finish = || -> anyhow::Result<Built> {
            let deps_text = std::fs::read_to_string(&depfile)
                .with_context(|| format!("failed to read nvcc's dependency file {}", depfile.display()))?;
            let deps = fingerprint::project_deps(&deps_text, self.root, &self.nvcc.path)?;
            let bytes = std::fs::read(&tmp_out).with_context(|| format!("failed to read {}", tmp_out.display()))?;
            let sha256 = crate::digest::sha256_hex(&bytes);
            std::fs::rename(&tmp_out, &out)
                .with_context(|| format!("failed to move the cubin into place at {}", out.display()))?;
            let output = fingerprint::stamp(&out).with_context(|| format!("failed to stat {}", out.display()))?;
            let fp = Fingerprint {
                command: self.command_key(job),
                nvcc_version: self.nvcc.version.to_string(),
                deps,
                output: output.clone(),
                output_sha256: sha256.clone(),
            };
            let report = match self.tools {
                Some(tools) => {
                    let r = report::analyse(shell, tools, &out, self.profile.name(), &ptxas_report)?;
                    r.save(&self.report_path(job), &self.previous_report_path(job))?;
                    if self.announce {
                        let expected = expect::expected(self.expect, &job.kernel.stem, job.target);
                        let findings = warnings::findings(&job.kernel.stem, job.target, &r, expected);
                        warnings::show(shell, &job.label(), &findings);
                        warnings::show_other_advisories(shell, &job.label(), &r);
                    }
                    Some(r)
                }
                None => None,
            };
            // Last: a fingerprint on disk says the cubin and its report are complete.
            fp.save(&self.fingerprint_path(job))?;
            let _ = std::fs::remove_file(&depfile);
            Ok(Built { job: job.clone(), path: out.clone(), size: output.size, sha256, fresh: false, report })
        };
        finish().map_err(|e| CompileFailure::other(job, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_cubin_and_fingerprint_per_kernel_and_target() {
        let nvcc =
            Nvcc { path: "/opt/cuda/bin/nvcc".into(), version: semver::Version::new(13, 0, 88), gpu_codes: Vec::new() };
        let s = CompileSettings {
            nvcc: &nvcc,
            profile: Profile::Release,
            root: Path::new("/p"),
            kernels_dir: Path::new("/p/kernels"),
            include_dirs: &[],
            extra_flags: &[],
            state_dir: Path::new("/p/target/gpu/release/.build/demo"),
            tools: None,
            expect: &Expectations::new(),
            announce: true,
        };
        let kernel = crate::compile::sources::KernelSource { stem: "k".into(), rel: "kernels/k.cu".into() };
        let a = Job { kernel: kernel.clone(), target: "sm_90a".parse().unwrap() };
        let b = Job { kernel, target: "sm_100a".parse().unwrap() };
        assert_ne!(s.cubin_path(&a), s.cubin_path(&b));
        assert_eq!(s.cubin_path(&a), Path::new("/p/target/gpu/release/.build/demo/cubins/k.sm_90a.cubin"));
        let line = s.command(&a, Path::new("OUT"), Path::new("DEPS")).to_string();
        assert_eq!(
            line,
            "cd /p && /opt/cuda/bin/nvcc -cubin -gencode arch=compute_90a,code=sm_90a -O3 -lineinfo -Xptxas -v -I /p/kernels -MD -MF DEPS -o OUT kernels/k.cu"
        );
    }
}
