//! `cargo gpu logs [RUN]`: print a finished run's logs (stdout to stdout, stderr to stderr), or
//! follow one still going on its remote, then fetch it and complete its record; then what the
//! CUDA tools' reports of the run say.

use std::io::Write;

use anyhow::{Context, Result};

use crate::cli::{GlobalOpts, LogsArgs};
use crate::config::UserConfig;
use crate::exit::Interrupt;
use crate::remote::follow::{exit_status, follow, report_unpacked, Followed};
use crate::remote::session::transport_for;
use crate::remote::slurm;
use crate::runs::{self, Record, State};
use crate::shell::Shell;

pub fn exec(shell: &Shell, global: &GlobalOpts, args: &LogsArgs) -> Result<i32> {
    let dir = crate::project::runs_dir(shell, global.manifest_path.as_deref(), None);
    let id = match &args.run {
        Some(id) => id.clone(),
        None => {
            runs::list(&dir)?.pop().map(|r| r.id).with_context(|| format!("no runs recorded in {}", dir.display()))?
        }
    };
    let mut record = Record::load(&dir, &id)?;
    let run_dir = dir.join(&id);
    if record.state == State::Running {
        let remote = UserConfig::load()?.remote(&record.remote)?;
        let transport = transport_for(&remote);
        shell.status("Following", format!("run {id} on {}", transport.describe()));
        transport.wait_ready(shell, remote.connect_timeout)?;
        let script = crate::remote::scripts::stream(&record.workdir, &id);
        let purpose = format!("follow run {id}");
        let max = remote.max_fetch;
        let followed = follow(shell, &*transport, &script, &purpose, None, &id, &run_dir, max, Interrupt::First);
        let Followed::Done(unpacked) = followed.result? else {
            // Only the following stops: the run itself goes on.
            return Ok(crate::exit::INTERRUPTED);
        };
        let status = exit_status(&run_dir);
        let read = |name: &str| crate::safe_fs::read_no_follow(&run_dir.join(name)).ok();
        if let Some(state) = read(slurm::STATE_FILE) {
            record.slurm_state = slurm::read_state(&String::from_utf8_lossy(&state));
        }
        record.state = State::Finished;
        record.exit_status = status;
        record.refused = report_unpacked(shell, &unpacked, &id, &remote.name, max);
        record.reports = crate::tool_reports::summary::present(&run_dir);
        record.save(&dir)?;
        print_reports(shell, &record, &run_dir);
        return Ok(status.unwrap_or(crate::exit::FAILURE));
    }
    for (name, to_stdout) in [("stdout.log", true), ("stderr.log", false)] {
        let path = run_dir.join(name);
        // Read without following a link: nothing in a run folder is a link cargo-gpu made.
        let bytes = match crate::safe_fs::read_no_follow(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("failed to read {}", path.display())),
        };
        let written = if to_stdout {
            std::io::stdout().lock().write_all(&bytes)
        } else {
            std::io::stderr().lock().write_all(&bytes)
        };
        written.with_context(|| format!("failed to print {}", path.display()))?;
    }
    print_reports(shell, &record, &run_dir);
    if let Some(e) = &record.error {
        shell.note(format!("run {id} failed: {e}"));
    }
    Ok(match record.state {
        State::Failed => crate::exit::FAILURE,
        _ => record.exit_status.unwrap_or(crate::exit::FAILURE),
    })
}

/// What the tools' reports of the run say, as `remote-run` printed it.
fn print_reports(shell: &Shell, record: &Record, run_dir: &std::path::Path) {
    let shown = run_dir.strip_prefix(std::env::current_dir().unwrap_or_default()).unwrap_or(run_dir);
    let own_clock = record.tools.iter().any(|t| t.starts_with("--ncu-args=") && t.contains("--clock-control"));
    crate::tool_reports::summary::print(shell, run_dir, shown, (!own_clock).then_some("none"));
}
