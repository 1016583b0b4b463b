//! The compile scheduler: which jobs are stale, then up to `-j` nvcc processes at once, with cargo's
//! status lines or a progress bar, stopping new compiles after the first failure or Ctrl-C, and
//! every failure shown.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

use crate::compile::diagnostics::CompileFailure;
use crate::compile::nvcc::CompileSettings;
use crate::compile::sources::{Built, Job};
use crate::shell::Shell;

/// Compiles every stale job with up to `jobs` nvcc processes at once. Returns every cubin, fresh
/// or new, in job order. After the first failure no new compile starts; all failures are shown.
pub fn build_all(shell: &Shell, settings: &CompileSettings<'_>, jobs: &[Job], parallel: usize) -> Result<Vec<Built>> {
    let cubins = settings.state_dir.join("cubins");
    std::fs::create_dir_all(&cubins).with_context(|| format!("failed to create {}", cubins.display()))?;

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
    // Builds of one project at once (nextest starts a `cargo gpu exec` per test) compile one at a
    // time: the second waits, then finds what the first compiled fresh, instead of replacing
    // cubins that the first has hashed and is sending. A no-op build takes no lock.
    let _lock = if stale.is_empty() {
        None
    } else {
        let lock = crate::safe_fs::lock(&settings.state_dir.join(".compile.lock"), crate::exit::check_interrupt)?;
        stale.retain(|&i| match settings.fresh(&jobs[i]) {
            Some(b) => {
                results[i] = Some(b);
                false
            }
            None => true,
        });
        Some(lock)
    };

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
        // No thread at all when every cubin is fresh (a no-op build).
        for _ in 0..parallel.max(1).min(stale.len()) {
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
