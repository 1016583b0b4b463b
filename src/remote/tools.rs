//! The CUDA tools a run may use on the remote (compute-sanitizer, ncu, cuda-gdb): what the user
//! asked of them, how the remote's sh finds them (the same lookup in the preflight and in the
//! run), and the sh that runs the runner under them. The files they leave in the run's folder
//! come back with it (see `tool_reports::files`).

use crate::quote::quote;
use crate::tool_reports::files::{
    AUTOSANITIZE_OUTPUT, AUTOSANITIZE_REPORT, GDB_OUTPUT, NCU_CSV, NCU_LOG, NCU_REPORT, NCU_TEXT, SANITIZER_REPORT,
};

/// The remote's compute-sanitizer, ncu and cuda-gdb, in the order the preflight reports them.
pub const TOOL_NAMES: [&str; 3] = ["compute-sanitizer", "ncu", "cuda-gdb"];

/// The compute-sanitizer tools `--sanitize=TOOL` takes; the first is the default.
pub const SANITIZERS: [&str; 4] = ["memcheck", "racecheck", "initcheck", "synccheck"];

/// The runner's exit status for a kernel fault (the kit's `FAULT_EXIT_CODE`): the one status
/// that sends a run under memcheck (and, with `--debug`, cuda-gdb) again.
pub const FAULT_EXIT_CODE: i32 = 4;

/// What a run asks of the remote's tools.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunTools {
    /// Run under compute-sanitizer with this tool (one of [`SANITIZERS`]).
    pub sanitize: Option<String>,
    /// Run under ncu, with these arguments of the user's (`--ncu-args`).
    pub profile: Option<Vec<String>>,
    /// On a kernel fault, run again under memcheck (unless the run already was).
    pub autosanitize: bool,
    /// On a kernel fault, run again under cuda-gdb for a backtrace.
    pub debug: bool,
    /// The compute-sanitizer shipped to the remote's `tools/` folder, when the run uses it.
    pub shipped: Option<ShippedSanitizer>,
    /// Leave out the `nvidia-smi -q` taken after the runner ends: `exec` runs one test each, and
    /// the driver query would add to every test's time.
    pub no_snapshot: bool,
}

/// A compute-sanitizer assembled in `<workdir>/tools/NAME/` from blobs (see `remote::ship`).
#[derive(Debug, Clone, PartialEq)]
pub struct ShippedSanitizer {
    pub name: String,
    /// `sha256  path` lines of its files: checked again just before it runs.
    pub sums: String,
    /// Use it even where the remote has its own (`ship-sanitizer = "always"`).
    pub prefer: bool,
}

impl RunTools {
    /// The tools this run cannot do without, by their names in [`TOOL_NAMES`].
    pub fn required(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.sanitize.is_some() {
            v.push("compute-sanitizer");
        }
        if self.profile.is_some() {
            v.push("ncu");
        }
        if self.debug {
            v.push("cuda-gdb");
        }
        v
    }

    /// Whether a kernel fault sends the run under memcheck again.
    fn reruns_under_memcheck(&self) -> bool {
        self.autosanitize && self.sanitize.as_deref() != Some("memcheck")
    }

    /// The clock setting ncu runs with: `none` (the GPU's own boost clocks, as the kit's timings
    /// see them) unless the user's `--ncu-args` set one.
    pub fn ncu_clock_control(&self) -> Option<&'static str> {
        let args = self.profile.as_ref()?;
        (!args.iter().any(|a| a == "--clock-control" || a.starts_with("--clock-control="))).then_some("none")
    }
}

/// A sh function `tool NAME` that prints the path of the remote's tool NAME and fails when it
/// has none: on PATH, then in `$CUDA_HOME/bin`, then in `/usr/local/cuda/bin`.
pub fn find_tool_function() -> &'static str {
    r#"tool() { p=$(command -v "$1" 2>/dev/null) && case $p in /*) printf '%s\n' "$p"; return 0 ;; esac
  for d in "${CUDA_HOME:-/nonexistent}/bin" /usr/local/cuda/bin; do
    [ -x "$d/$1" ] && { printf '%s\n' "$d/$1"; return 0; }
  done
  return 1; }
"#
}

/// A sh function `sanitizer` that prints the path of the compute-sanitizer to run: the remote's
/// own (see [`find_tool_function`]), or the shipped copy, which is checked against its sha256
/// first: a copy changed since it was assembled is deleted (the next run assembles it again from
/// the blobs) and never run.
fn sanitizer_function(shipped: Option<&ShippedSanitizer>) -> String {
    let Some(s) = shipped else { return "sanitizer() { tool compute-sanitizer; }\n".into() };
    let own_first = if s.prefer { "" } else { "tool compute-sanitizer && return 0\n  " };
    format!(
        r#"sanitizer() {{
  {own_first}t_="$R/../../tools"/{name}
  if [ -f "$t_/.complete" ]; then
    if (cd "$t_" && sha256sum -c - > /dev/null 2>&1) <<'CARGO_GPU_SUMS'
{sums}CARGO_GPU_SUMS
    then printf '%s\n' "$t_/bin/compute-sanitizer"; return 0; fi
    rm -rf "$t_"
  fi
  tool compute-sanitizer
}}
"#,
        name = quote(&s.name),
        sums = s.sums,
    )
}

/// The lines that say what a machine is, in the preflight's `key: value` form: its GPUs (or why
/// there are none), the driver's CUDA version, glibc and `uname -m`. The preflight asks them on
/// a remote, a Slurm job on its node.
pub const MACHINE_FACT_LINES: &str = r#"if g=$(nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader 2>&1); then
  printf '%s\n' "$g" | sed 's/^/gpu: /'
  nvidia-smi -q 2>/dev/null | sed -n 's/^[[:space:]]*CUDA Version[[:space:]]*:[[:space:]]*/cuda: /p' | head -n 1
else
  printf '%s\n' "$g" | head -n 1 | sed 's/^/gpu-error: /'
fi
printf 'glibc: %s\n' "$(getconf GNU_LIBC_VERSION 2>/dev/null || ldd --version 2>&1 | head -n 1)"
printf 'machine: %s\n' "$(uname -m)"
"#;

/// The preflight's lines on the tools: `tool: NAME PATH` for each one found, and whether ncu may
/// read the GPU's performance counters (`counters: UID ADMIN-ONLY`, from the driver's
/// `RmProfilingAdminOnly`: when it is 1, only root may).
pub fn preflight_lines() -> String {
    format!(
        r#"{find}for t in {names}; do p=$(tool "$t") && printf 'tool: %s %s\n' "$t" "$p"; done
a=$(sed -n 's/^RmProfilingAdminOnly:[[:space:]]*//p' /proc/driver/nvidia/params 2>/dev/null | head -n 1)
printf 'counters: %s %s\n' "$(id -u 2>/dev/null)" "${{a:-unknown}}"
"#,
        find = find_tool_function(),
        names = TOOL_NAMES.join(" "),
    )
}

/// The sh that runs `command` (the runner and its arguments, quoted) in the run's folder: under
/// the tool the run asks for, its output to `stdout.log` and `stderr.log`, its status in `$s`;
/// then, when it ended with [`FAULT_EXIT_CODE`], once more under memcheck and once more under
/// cuda-gdb, as asked, each named in the file `rerun` first (the stream says so, see
/// `scripts::stream`). A tool that has gone missing since the preflight fails like a missing
/// program (status 127, the shell's message in `stderr.log`).
pub fn run_lines(tools: &RunTools, command: &str) -> String {
    let mut s = String::from(find_tool_function());
    s.push_str(&sanitizer_function(tools.shipped.as_ref()));
    match (&tools.sanitize, &tools.profile) {
        (Some(which), _) => s.push_str(&format!(
            "cs=$(sanitizer) || cs=compute-sanitizer\n\"$cs\" --tool {} --log-file {} {command} > stdout.log 2> stderr.log < /dev/null\n",
            quote(which),
            SANITIZER_REPORT
        )),
        (None, Some(args)) => {
            let mut ncu = String::from("\"$ncu\"");
            if let Some(clock) = tools.ncu_clock_control() {
                ncu.push_str(&format!(" --clock-control {clock}"));
            }
            for a in args {
                ncu.push(' ');
                ncu.push_str(&quote(a));
            }
            s.push_str(&format!(
                "ncu=$(tool ncu) || ncu=ncu\n{ncu} --export profile --force-overwrite --log-file {NCU_LOG} {command} > stdout.log 2> stderr.log < /dev/null\ns=$?\n\
                 if [ -f {NCU_REPORT} ]; then\n  \"$ncu\" --import {NCU_REPORT} --page details > {NCU_TEXT} 2>> {NCU_LOG}\n  \
                 \"$ncu\" --import {NCU_REPORT} --page details --csv > {NCU_CSV} 2>> {NCU_LOG}\nfi\n"
            ));
        }
        (None, None) => s.push_str(&format!("{command} > stdout.log 2> stderr.log < /dev/null\n")),
    }
    if tools.profile.is_none() || tools.sanitize.is_some() {
        s.push_str("s=$?\n");
    }
    if tools.reruns_under_memcheck() {
        s.push_str(&format!(
            "if [ \"$s\" = {FAULT_EXIT_CODE} ] && cs=$(sanitizer); then\n  echo memcheck > rerun\n  \
             \"$cs\" --tool memcheck --log-file {AUTOSANITIZE_REPORT} {command} > {AUTOSANITIZE_OUTPUT} 2>&1 < /dev/null\nfi\n"
        ));
    }
    if tools.debug {
        // cuda-gdb sees a kernel's exception only when libcuda is there from the start; the kit's
        // runner opens it later (dlopen), so it is preloaded (on an H200 with driver 580, without
        // this the session ran to the end and showed no exception).
        s.push_str(&format!(
            "if [ \"$s\" = {FAULT_EXIT_CODE} ]; then\n  gdb=$(tool cuda-gdb) || gdb=cuda-gdb\n  echo cuda-gdb > rerun\n  \
             \"$gdb\" -batch -ex 'set environment LD_PRELOAD=libcuda.so.1' -ex run -ex bt -ex 'info locals' --args {command} > {GDB_OUTPUT} 2>&1 < /dev/null\nfi\n"
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn sh(script: &str) -> String {
        let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn tools_are_found_on_path_then_in_cuda_home_then_in_usr_local_cuda() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("cuda");
        std::fs::create_dir_all(home.join("bin")).unwrap();
        let ncu = home.join("bin/ncu");
        std::fs::write(&ncu, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&ncu, std::fs::Permissions::from_mode(0o755)).unwrap();
        let script = format!(
            "CUDA_HOME={}; PATH=/nonexistent\n{}",
            quote(&home.display().to_string()),
            preflight_lines().replace("/usr/local/cuda/bin", "/nonexistent/cuda/bin")
        );
        let out = sh(&script);
        assert!(out.contains(&format!("tool: ncu {}\n", ncu.display())), "{out}");
        assert!(!out.contains("tool: compute-sanitizer") && !out.contains("tool: cuda-gdb"), "{out}");
        assert!(out.lines().any(|l| l.starts_with("counters: ")), "{out}");
    }

    #[test]
    fn the_run_lines_parse_and_quote_the_users_ncu_args() {
        let command = "\"$R\"/bin/demo 'a b'";
        let profile = RunTools {
            profile: Some(vec!["--set".into(), "full".into(), "$(touch pwned)".into()]),
            autosanitize: true,
            debug: true,
            ..Default::default()
        };
        for tools in [
            RunTools::default(),
            RunTools { sanitize: Some("racecheck".into()), autosanitize: true, ..Default::default() },
            profile.clone(),
        ] {
            let s = run_lines(&tools, command);
            let ok = Command::new("sh").arg("-n").arg("-c").arg(&s).status().unwrap();
            assert!(ok.success(), "{s}");
        }
        let s = run_lines(&profile, command);
        assert!(s.contains("\"$ncu\" --clock-control none --set full '$(touch pwned)' --export profile"), "{s}");
        assert!(s.contains("--tool memcheck --log-file autosanitize.txt"), "{s}");
        assert!(
            s.contains("-batch -ex 'set environment LD_PRELOAD=libcuda.so.1' -ex run -ex bt -ex 'info locals' --args \"$R\"/bin/demo 'a b'"),
            "{s}"
        );
        let mine = RunTools { profile: Some(vec!["--clock-control".into(), "base".into()]), ..Default::default() };
        assert_eq!(mine.ncu_clock_control(), None, "--ncu-args sets the clock");
        let s = run_lines(&mine, command);
        assert!(s.contains("\"$ncu\" --clock-control base --export"), "{s}");
        let memcheck = RunTools { sanitize: Some("memcheck".into()), autosanitize: true, ..Default::default() };
        assert!(!run_lines(&memcheck, command).contains(AUTOSANITIZE_REPORT), "a memcheck run is not rerun under it");
        let off = RunTools::default();
        assert!(!run_lines(&off, command).contains("memcheck"), "--no-autosanitize");
    }
}
