//! Runs as Slurm jobs: a `slurm` remote's login node gets the package exactly as an ssh host
//! does (blob store and run folders in its workdir, which must be on the shared filesystem the
//! compute nodes see), and the run folder's `job.sh` is submitted with `sbatch --parsable`
//! instead of being started there. The sh pieces of that live here: the login node's preflight
//! (sbatch found, partition and gres known, workdir writable), the job script (which records the
//! node, GPU and driver in `gpu.txt` and refuses a GPU the package has no cubin for before the
//! runner starts), the submission, and the lines that follow a job in `stream` (pending with its
//! reason, running, ended: its final state, a time limit told apart from a crash) and cancel it
//! in `stop_run`. The exit status always comes from the run's own `exit-status` file, never from
//! accounting, which many clusters restrict. Whatever the cluster says is a stranger's text: it
//! is cut short on the remote and escaped here.

use anyhow::{bail, Result};

use crate::arch::{ComputeCap, SmArch};
use crate::config::Slurm;
use crate::escape;
use crate::quote::quote;

/// The run folder's file holding the job id (`123`, or `123_4` for a task of an array).
pub const JOB_FILE: &str = "slurm-job";
/// The job's final state when it is not a plain completion (`TIMEOUT`, `CANCELLED`, ...).
pub const STATE_FILE: &str = "slurm-state";
/// What the job found on its node: node, GPU, compute capability, driver (preflight lines).
pub const GPU_FILE: &str = "gpu.txt";
/// Present when the job refused its node's GPU before the runner started.
pub const REFUSED_FILE: &str = "gpu-refused";
/// Slurm's own output of the job (`--output`): where slurmstepd says why it killed a job.
pub const OUTPUT_FILE: &str = "slurm.out";

/// The exit status of a launch whose `sbatch` refused the job (its message is on stderr).
pub const SUBMIT_FAILED: i32 = 9;
/// The exit status written for a run its job's time limit ended (as `timeout(1)` does).
pub const TIME_LIMIT_EXIT: i32 = 124;

/// States in which a job is still queued or going.
const ALIVE: &str = "PENDING|CONFIGURING|RUNNING|COMPLETING|SUSPENDED|REQUEUED|RESIZING|SIGNALING|STAGE_OUT";

/// The login node's part of the preflight, after the common `protocol`, glibc, machine and disk
/// lines: sbatch on PATH, the partitions with their gres, a write into the workdir.
pub fn preflight_lines() -> String {
    r#"if s=$(command -v sbatch 2>/dev/null); then printf 'sbatch: %s\n' "$s"; else echo "slurm-error: sbatch is not on the login node's PATH"; fi
if p=$(sinfo -h -o '%P %G' 2>&1); then
  printf '%s\n' "$p" | head -n 500 | cut -c 1-400 | sed 's/^/partition: /'
else
  printf '%s\n' "$p" | head -n 3 | cut -c 1-400 | sed 's/^/slurm-error: sinfo: /'
fi
t="$W/runs/.write-test.$$"
if ( : > "$t" ) 2>/dev/null; then rm -f "$t"; echo "writable: yes"; else echo "writable: no"; fi
"#
    .to_string()
}

/// What the login node said about the cluster.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ClusterFacts {
    pub sbatch: bool,
    /// (partition, its gres as `sinfo %G` prints them), one entry per line; the default
    /// partition's name ends in `*`.
    pub partitions: Vec<(String, String)>,
    pub errors: Vec<String>,
    pub writable: bool,
}

/// Reads [`preflight_lines`]' answer; every value escaped.
pub fn parse_cluster(answer: &str) -> ClusterFacts {
    let mut f = ClusterFacts::default();
    for line in answer.lines() {
        let Some((key, value)) = line.split_once(": ") else { continue };
        let value = escape::line(value.trim());
        match key {
            "sbatch" => f.sbatch = true,
            "slurm-error" => f.errors.push(value),
            "writable" => f.writable = value == "yes",
            "partition" => {
                let (name, gres) = value.split_once(' ').unwrap_or((&value, ""));
                f.partitions.push((name.to_string(), gres.to_string()));
            }
            _ => {}
        }
    }
    f
}

/// `gpu:h100:4(S:0-1)` -> (`gpu`, Some(`h100`)); `gpu:1` -> (`gpu`, None).
fn gres_kind(entry: &str) -> (&str, Option<&str>) {
    let entry = entry.split('(').next().unwrap_or(entry);
    let parts: Vec<&str> = entry.split(':').collect();
    match parts.as_slice() {
        [name] => (name, None),
        [name, count] if count.chars().all(|c| c.is_ascii_digit()) => (name, None),
        [name, kind, ..] => (name, Some(kind)),
        [] => ("", None),
    }
}

/// Refuses, before anything is uploaded, what the login node can tell will not run: no sbatch,
/// an unknown partition, a gres its nodes do not have, a workdir it cannot write.
pub fn check_cluster(remote: &str, f: &ClusterFacts, slurm: &Slurm, workdir: &str) -> Result<()> {
    if let Some(e) = f.errors.first() {
        bail!("{remote}'s login node cannot reach Slurm: {e} (is SLURM_CONF set there, and slurmctld up?)");
    }
    if !f.sbatch {
        bail!("{remote}'s login node has no sbatch on its PATH: is it the cluster's login node?");
    }
    if !f.writable {
        bail!("{remote}'s workdir {workdir} is not writable on the login node: set `workdir` to a folder of yours on the shared filesystem");
    }
    let names: Vec<&str> = {
        let mut v: Vec<&str> = f.partitions.iter().map(|(p, _)| p.trim_end_matches('*')).collect();
        v.dedup();
        v
    };
    let rows: Vec<&(String, String)> = match &slurm.partition {
        Some(p) => {
            let rows: Vec<_> = f.partitions.iter().filter(|(n, _)| n.trim_end_matches('*') == p).collect();
            if rows.is_empty() {
                bail!(
                    "{remote} has no partition `{p}`; it has {}: fix `partition` in [remotes.{remote}]",
                    names.join(", ")
                );
            }
            rows
        }
        None => f.partitions.iter().filter(|(n, _)| n.ends_with('*')).collect(),
    };
    let all: Vec<&str> =
        rows.iter().flat_map(|(_, g)| g.split(',')).filter(|g| !g.is_empty() && *g != "(null)").collect();
    let wanted = match (&slurm.gres, slurm.gpus) {
        (Some(g), _) => g.split(',').map(gres_kind).collect::<Vec<_>>(),
        (None, Some(_)) => vec![("gpu", None)],
        (None, None) => Vec::new(),
    };
    for (name, kind) in wanted {
        let known = all.iter().map(|g| gres_kind(g)).any(|(n, k)| n == name && (kind.is_none() || k == kind));
        if !known && !rows.is_empty() {
            let want = kind.map(|k| format!("{name}:{k}")).unwrap_or(name.to_string());
            let part = slurm.partition.as_deref().unwrap_or("the default partition");
            bail!(
                "{remote}'s {part} has no gres `{want}` (its nodes have {}): fix `gres` (or `gpus`) in [remotes.{remote}]",
                if all.is_empty() { "none".to_string() } else { all.join(", ") }
            );
        }
    }
    Ok(())
}

/// The compute capabilities (`9.0`) the package has a cubin for: what the job lets run.
pub fn runnable_caps(targets: &[SmArch]) -> Vec<String> {
    let mut caps: Vec<ComputeCap> = SmArch::all().into_iter().map(|a| a.compute_cap()).collect();
    caps.sort();
    caps.dedup();
    caps.into_iter().filter(|cc| SmArch::best_for(targets, *cc).is_some()).map(|cc| cc.to_string()).collect()
}

/// The batch script: picks its run folder (`$1`, or line `SLURM_ARRAY_TASK_ID + 1` of the list
/// file `$1` in an array), records the node and GPU in [`GPU_FILE`], refuses a GPU whose compute
/// capability is not in `caps` (the client names it with the preflight's own message), and
/// runs the run's `wrapper.sh`.
pub fn job_script(caps: &[String]) -> String {
    let caps = caps.iter().map(|c| quote(c)).collect::<Vec<_>>().join(" ");
    format!(
        r#"#!/bin/sh
# A run of a cargo-gpu package (in an array, one run per task).
if [ -n "${{SLURM_ARRAY_TASK_ID:-}}" ]; then R=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" "$1"); else R=$1; fi
cd "$R" || exit 1
{{
  echo "protocol: 1"
  printf 'node: %s\n' "$(hostname)"
  printf 'job: %s\n' "${{SLURM_JOB_ID:-}}"
{facts}}} > {gpu} 2>/dev/null
cc=$(sed -n 's/^gpu: .*, *\([0-9][0-9]*\.[0-9][0-9]*\), *[^,]*$/\1/p' {gpu} | head -n 1)
ok=no
for c in {caps}; do [ "$c" = "$cc" ] && ok=yes; done
if [ $ok = no ]; then
  : > {refused}
  echo 1 > exit-status.tmp && mv exit-status.tmp exit-status
  exit 0
fi
exec sh ./wrapper.sh "$R"
"#,
        gpu = GPU_FILE,
        refused = REFUSED_FILE,
        facts = crate::remote::tools::MACHINE_FACT_LINES,
    )
}

/// Submits `$JOB` (a path) with `sbatch --parsable` and the remote's options, from `$R`, with
/// `args` (quoted words) after the script; `array`: `--array=0-N`. The job id lands in `$J`
/// (without a `;cluster` suffix). A refusal prints sbatch's message to stderr and exits
/// [`SUBMIT_FAILED`].
pub fn submit(slurm: &Slurm, name: &str, output: &str, array: Option<usize>, args: &str) -> String {
    let mut opts: Vec<String> = vec!["--parsable".into(), format!("--job-name={name}")];
    opts.extend(slurm.sbatch_options());
    if let Some(n) = array {
        opts.push(format!("--array=0-{}", n - 1));
    }
    let opts = opts.iter().map(|o| quote(o)).collect::<Vec<_>>().join(" ");
    format!(
        r#"if ! J=$(sbatch {opts} --output={output} "$JOB" {args} 2> "$R/sbatch.err"); then
  head -c 4000 "$R/sbatch.err" >&2
  exit {SUBMIT_FAILED}
fi
J=${{J%%;*}}
date +%s > "$R/submitted"
"#
    )
}

/// Writes job id `$1` into run folder `$2` (a new file renamed into place).
pub const WRITE_JOB_ID: &str =
    "job_id() { printf '%s\\n' \"$1\" > \"$2/slurm-job.tmp\" && mv -f \"$2/slurm-job.tmp\" \"$2/slurm-job\"; }\n";

/// The stream loop's lines for a run that is a job (`$J` set): at most once a second, asks
/// squeue for its state; while pending, says `p SECONDS REASON` when the reason changes and
/// every 30 s (not for the first moments with no reason yet); says `g SECONDS` once it starts; when it ends without an exit status (a time
/// limit, a cancel, a dead node), waits a few polls for the shared filesystem, then ends the
/// loop (`d=3`). Variables: `now`, `poll`, `sub` (submitted), `seen` (last reason), `said`,
/// `gone`, `fin` (its final state).
pub fn poll_lines() -> String {
    r#"  if [ -n "$J" ] && [ $d = 0 ]; then
    now=$(date +%s)
    if [ "$now" -ge "$poll" ]; then
      poll=$((now + 1))
      st=$(squeue -h -j "$J" --states=all -o '%T %r' 2>/dev/null | head -n 1 | tr -cd 'A-Za-z0-9_ ,.:()=-' | cut -c 1-120)
      case ${st%% *} in
        PENDING)
          if [ "$st" = "PENDING None" ] && [ $((now - sub)) -lt 2 ]; then :
          elif [ "$st" != "$seen" ] || [ $((now - said)) -ge 30 ]; then
            printf 'p %d %s\n' $((now - sub)) "${st#* }"; seen=$st; said=$now; q=0
          fi ;;
        RUNNING|CONFIGURING)
          if [ "$started" = 0 ]; then printf 'g %d\n' $((now - sub)); started=1; q=0; fi ;;
        COMPLETING|SUSPENDED|REQUEUED|RESIZING|SIGNALING|STAGE_OUT) ;;
        '') gone=$((gone + 1)); [ $gone -ge 30 ] && d=3 ;;
        *) fin=${st%% *}; gone=$((gone + 1)); [ $gone -ge 3 ] && d=3 ;;
      esac
    fi
  fi
"#
    .to_string()
}

/// After the stream loop, for a job: its final state, from squeue once the job has left the
/// states of [`ALIVE`] (5 s at most after its runner wrote its exit status), or, once the controller has
/// forgotten it, from slurmstepd's line in the job's output) into [`STATE_FILE`] when it is not
/// a plain completion, and an exit status for a job that a cancel ended before its runner could
/// write one; a time limit's is always [`TIME_LIMIT_EXIT`]: whatever the runner's shell said
/// after the limit's SIGTERM (it may survive it, its child killed, and exit 0) is not its result.
pub fn end_lines() -> String {
    format!(
        r#"if [ -n "$J" ]; then
  i=0
  while [ -z "$fin" ] && [ $i -lt 50 ]; do
    st=$(squeue -h -j "$J" --states=all -o '%T' 2>/dev/null | head -n 1 | tr -cd 'A-Z_')
    case $st in {ALIVE}) sleep 0.1 2>/dev/null || sleep 1 ;; '') break ;; *) fin=$st ;; esac
    i=$((i + 1))
  done
  so="$R/{out}"; [ -s "$R/slurm-output" ] && so=$(cat "$R/slurm-output")
  if [ -z "$fin" ] && [ -f "$so" ]; then
    if grep -q 'DUE TO TIME LIMIT' "$so"; then fin=TIMEOUT; elif grep -q 'CANCELLED AT' "$so"; then fin=CANCELLED; fi
  fi
  case $fin in ''|COMPLETED) ;; *) printf '%s\n' "$fin" > "$R/{state}" ;; esac
  x=$(cat "$R/exit-status" 2>/dev/null)
  case $fin in
    TIMEOUT) echo {TIME_LIMIT_EXIT} > "$R/exit-status" ;;
    CANCELLED) [ -n "$x" ] || echo 130 > "$R/exit-status" ;;
  esac
  [ -e "$R/exit-status" ] && d=1
fi
"#,
        out = OUTPUT_FILE,
        state = STATE_FILE,
    )
}

/// `stop_run`'s lines for a job (`$R` its folder): scancel, wait (10 s at most) until squeue no
/// longer has it going, and mark it cancelled; the run's own exit status stays when it wrote
/// one, else 130.
pub fn cancel_lines() -> String {
    format!(
        r#"if [ -s "$R/{job}" ]; then
  J=$(cat "$R/{job}")
  if [ ! -e "$R/exit-status" ]; then
    scancel "$J" 2>/dev/null
    i=0
    while [ $i -lt 100 ]; do
      st=$(squeue -h -j "$J" --states=all -o '%T' 2>/dev/null | head -n 1)
      case $st in {ALIVE}) ;; *) break ;; esac
      sleep 0.1 2>/dev/null || sleep 1; i=$((i + 1))
    done
    echo CANCELLED > "$R/{state}"
    [ -e "$R/exit-status" ] || echo 130 > "$R/exit-status"
  fi
  continue
fi
"#,
        job = JOB_FILE,
        state = STATE_FILE,
    )
}

/// How a job ended, as the run record keeps it: `None` for a plain completion.
pub fn read_state(text: &str) -> Option<String> {
    let s: String = text.trim().chars().filter(|c| c.is_ascii_uppercase() || *c == '_').take(32).collect();
    (!s.is_empty() && s != "COMPLETED").then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slurm(partition: Option<&str>, gres: Option<&str>) -> Slurm {
        Slurm { partition: partition.map(str::to_string), gres: gres.map(str::to_string), ..Slurm::default() }
    }

    #[test]
    fn the_login_node_check_names_what_is_wrong() {
        let f = parse_cluster(
            "protocol: 1\nsbatch: /usr/bin/sbatch\npartition: debug* (null)\npartition: gpu gpu:h100:4(S:0-1)\npartition: gpu gpu:a100:8\nwritable: yes\n",
        );
        assert_eq!(f.partitions.len(), 3);
        check_cluster("c", &f, &slurm(Some("gpu"), Some("gpu:h100:1")), "/w").unwrap();
        check_cluster("c", &f, &slurm(Some("gpu"), Some("gpu:1")), "/w").unwrap();
        let e = check_cluster("c", &f, &slurm(Some("gpus"), None), "/w").unwrap_err().to_string();
        assert!(e.contains("no partition `gpus`; it has debug, gpu"), "{e}");
        let e = check_cluster("c", &f, &slurm(Some("gpu"), Some("gpu:b200:1")), "/w").unwrap_err().to_string();
        assert!(e.contains("has no gres `gpu:b200`") && e.contains("gpu:a100:8"), "{e}");
        let e = check_cluster("c", &f, &slurm(None, Some("gpu:1")), "/w").unwrap_err().to_string();
        assert!(e.contains("the default partition has no gres `gpu` (its nodes have none)"), "{e}");
        let no = parse_cluster("writable: no\nsbatch: /x\n");
        assert!(check_cluster("c", &no, &slurm(None, None), "/w").unwrap_err().to_string().contains("not writable"));
        let e = parse_cluster("slurm-error: sinfo: \x1b[2Jslurm_load_partitions: Zero Bytes were transmitted\n");
        let e = check_cluster("c", &e, &slurm(None, None), "/w").unwrap_err().to_string();
        assert!(e.contains("cannot reach Slurm: sinfo: \\e[2Jslurm_load") && !e.contains('\x1b'), "{e}");
    }

    #[test]
    fn the_job_lets_only_the_packages_compute_capabilities_run() {
        let caps = runnable_caps(&["sm_90a".parse().unwrap()]);
        assert_eq!(caps, ["9.0"]);
        let caps = runnable_caps(&["sm_80".parse().unwrap()]);
        assert!(caps.contains(&"8.0".to_string()) && caps.contains(&"8.6".to_string()), "{caps:?}");
        assert!(!caps.contains(&"9.0".to_string()), "an sm_80 cubin does not load on compute capability 9.0");
        assert_eq!(read_state("TIMEOUT\n").as_deref(), Some("TIMEOUT"));
        assert_eq!(read_state("COMPLETED\n"), None);
        assert_eq!(read_state("\x1b[31mX"), Some("X".into()));
    }
}
