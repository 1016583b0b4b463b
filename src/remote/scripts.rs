//! The remote protocol as POSIX sh scripts, built as strings from quoted words (so tests can read
//! them without running anything): preflight, upload, launch, stream, stop, fetch and the idle
//! watchdog. The remote needs only `sh`, `awk`, `tar`, `sha256sum`, `base64`, `setsid`, `nohup`
//! and the NVIDIA driver. Layout under the workdir: `blobs/<sha256>`, `blobs/tmp/<upload>/`,
//! `runs/<id>/` (`pid`, `stdout.log`, `stderr.log`, `exit-status`, `nvidia-smi.txt`, `env.txt`,
//! `out/`). A run takes two remote commands: preflight, then [`run`] (upload + launch + stream +
//! fetch, its stdout framed (see `frames`) so that one channel carries the runner's output and
//! then the run's files); a re-run over the same connection only the second, guarded by a
//! re-check ([`Guard`]).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::cmd::StdinFeed;
use crate::config::Slurm;
use crate::digest::is_sha256;
use crate::package::manifest::{is_safe_relative, Manifest, RunnerEntry};
use crate::quote::{quote, quote_path};
use crate::redact;
use crate::remote::ship::{self, Shipment};
use crate::remote::slurm;
use crate::remote::tools::{self, RunTools};
use crate::tool_reports::files;

/// What a run leaves in its folder that comes back with it: files, the tools' reports (see
/// `tool_reports::files`) and the folder `out/` (in this order, so that the logs come first
/// and the bulky things last when a cap cuts the rest).
pub const FETCHED: [&str; 19] = [
    "stdout.log",
    "stderr.log",
    "exit-status",
    "nvidia-smi.txt",
    "env.txt",
    slurm::GPU_FILE,
    slurm::REFUSED_FILE,
    slurm::STATE_FILE,
    slurm::OUTPUT_FILE,
    slurm::JOB_FILE,
    files::SANITIZER_REPORT,
    files::AUTOSANITIZE_REPORT,
    files::AUTOSANITIZE_OUTPUT,
    files::GDB_OUTPUT,
    files::NCU_LOG,
    files::NCU_CSV,
    files::NCU_TEXT,
    files::NCU_REPORT,
    "out/",
];
/// The exit status of a [`launch`] that found a stored blob whose bytes do not match its name:
/// the blob was deleted, nothing was launched, preflight (and so upload) again.
pub const BAD_BLOB: i32 = 8;

/// Disk kept free beyond what the package needs.
pub const DISK_MARGIN_BYTES: u64 = 64 << 20;

fn prelude(workdir: &str) -> String {
    format!("W={}\n", quote_path(workdir))
}

fn run_dir(workdir: &str, id: &str) -> String {
    format!("{}R=\"$W/runs\"/{}\n", prelude(workdir), quote(id))
}

fn words(hashes: &[String]) -> String {
    hashes.iter().map(|h| quote(h)).collect::<Vec<_>>().join(" ")
}

/// One round trip: GPU, compute capability, driver CUDA, glibc, machine, free disk, the CUDA
/// tools there and whether ncu may read counters, missing blobs.
pub fn preflight(workdir: &str, hashes: &[String]) -> String {
    assert!(hashes.iter().all(|h| is_sha256(h)), "blob names are sha256 digests");
    format!(
        r#"{prelude}mkdir -p "$W/blobs/tmp" "$W/runs" || exit 1
date +%s > "$W/last-seen" 2>/dev/null
echo "protocol: 1"
{facts}df -Pk "$W" | awk 'NR==2 {{print "disk-free-kb: " $4}}'
{tools}for h in {hashes}; do [ -f "$W/blobs/$h" ] || echo "missing: $h"; done
"#,
        prelude = prelude(workdir),
        tools = tools::preflight_lines(),
        hashes = words(hashes),
        facts = tools::MACHINE_FACT_LINES,
    )
}

/// A `slurm` remote's preflight, on its login node (which has no GPU): glibc, machine, free
/// disk, the CUDA tools there, then what [`slurm::preflight_lines`] asks of the cluster, and the
/// missing blobs. The GPU is checked by the job itself, on its node.
pub fn preflight_slurm(workdir: &str, hashes: &[String]) -> String {
    assert!(hashes.iter().all(|h| is_sha256(h)), "blob names are sha256 digests");
    format!(
        r#"{prelude}mkdir -p "$W/blobs/tmp" "$W/runs" 2>/dev/null
echo "protocol: 1"
printf 'glibc: %s\n' "$(getconf GNU_LIBC_VERSION 2>/dev/null || ldd --version 2>&1 | head -n 1)"
printf 'machine: %s\n' "$(uname -m)"
df -Pk "$W" 2>/dev/null | awk 'NR==2 {{print "disk-free-kb: " $4}}'
{tools}{slurm}for h in {hashes}; do [ -f "$W/blobs/$h" ] || echo "missing: $h"; done
"#,
        prelude = prelude(workdir),
        tools = tools::preflight_lines(),
        slurm = slurm::preflight_lines(),
        hashes = words(hashes),
    )
}

/// Unpacks a tar of blobs (each named by its sha256) from stdin into `blobs/tmp/<upload>/`,
/// checks every hash, and only then moves them into `blobs/`. A failure cleans up before it
/// complains: with the connection gone, writing to stderr would end the script by SIGPIPE.
pub fn upload(workdir: &str, upload_id: &str, hashes: &[String]) -> String {
    assert!(hashes.iter().all(|h| is_sha256(h)), "blob names are sha256 digests");
    format!(
        r#"{prelude}T="$W/blobs/tmp"/{id}
rm -rf "$T" && mkdir -p "$T" && cd "$T" || exit 1
fail() {{ cd /; rm -rf "$T"; echo "$1" >&2; exit 1; }}
tar -xf - || fail "could not unpack the blobs"
for h in {hashes}; do
  s=$(sha256sum "$h" | cut -d ' ' -f 1)
  [ "$s" = "$h" ] || fail "blob $h arrived damaged (sha256 $s)"
done
for h in {hashes}; do mv -f "$h" "$W/blobs/$h" || fail "could not store blob $h"; done
cd / && rm -rf "$T"
"#,
        prelude = prelude(workdir),
        id = quote(upload_id),
        hashes = words(hashes),
    )
}

/// The stdin of an [`upload`]: a tar of the files `items` names, each entry named by its sha256.
pub fn blob_tar(items: Vec<(String, PathBuf)>) -> StdinFeed {
    Box::new(move |stdin: &mut std::process::ChildStdin| -> std::io::Result<()> {
        let mut tar = tar::Builder::new(stdin);
        for (hash, path) in &items {
            let mut file = std::fs::File::open(path)?;
            let mut h = tar::Header::new_ustar();
            h.set_path(hash)?;
            h.set_size(file.metadata()?.len());
            h.set_mode(0o644);
            h.set_mtime(0);
            h.set_cksum();
            tar.append(&h, &mut file)?;
        }
        tar.finish()
    })
}

/// One run of a launch: its id, the runner's arguments, and (in a sweep) the variables it gets.
#[derive(Debug, Clone, Default)]
pub struct RunSpec {
    pub id: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// Where the runs of a launch run.
#[derive(Debug, Clone, Default)]
pub enum Place<'a> {
    /// On the remote itself, detached: one run alone; several (a sweep) each on its own share of
    /// the GPUs, a run per slot at a time (`CUDA_VISIBLE_DEVICES` = the slot; an empty slot
    /// leaves it unset).
    #[default]
    Here,
    Slots(Vec<String>),
    /// Submitted to Slurm as one job (one run) or one job array (a sweep), from `$W`; the job
    /// lets only GPUs of these compute capabilities run.
    Slurm(&'a Slurm, Vec<String>),
}

/// What a run is made of.
#[derive(Debug, Clone)]
pub struct Launch<'a> {
    pub workdir: &'a str,
    /// One run, or a sweep's runs in order; the first one's folder holds a sweep's shared files.
    pub runs: &'a [RunSpec],
    pub place: Place<'a>,
    pub manifest: &'a Manifest,
    /// The package's runner for the remote's machine: the other runners stay here.
    pub runner: &'a RunnerEntry,
    /// Start the idle watchdog first: (idle time, shutdown command).
    pub watchdog: Option<(Duration, &'a str)>,
    /// The tools the runner runs under, or again under after a kernel fault.
    pub tools: &'a RunTools,
    /// A compute-sanitizer to assemble from its blobs in `<workdir>/tools/` (once) first.
    pub ship: Option<&'a Shipment>,
    /// Variables the runner gets from here.
    pub env: &'a [(String, EnvValue)],
}

/// A variable the runner gets from this machine (`cargo gpu exec` forwards what cargo gives a
/// test): a value, or a path inside the run folder (`CARGO_MANIFEST_DIR`, where the test files go).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvValue {
    Text(String),
    InRun(String),
}

/// `NAME='value'; export NAME` lines; a name a shell cannot export, or a run path that leaves
/// the run folder, is refused.
fn exports(env: &[(String, EnvValue)]) -> Result<String> {
    let mut s = String::new();
    for (name, value) in env {
        if !crate::quote::is_name(name) {
            bail!("`{name}` is not a name a shell can export");
        }
        let value = match value {
            EnvValue::Text(v) => quote(v),
            EnvValue::InRun(rel) if rel.is_empty() => "\"$R\"".to_string(),
            EnvValue::InRun(rel) if is_safe_relative(rel) => format!("\"$R\"/{}", quote(rel)),
            EnvValue::InRun(rel) => bail!("`{rel}` is not a path inside the run folder"),
        };
        s.push_str(&format!("{name}={value}; export {name}\n"));
    }
    Ok(s)
}

/// The script the detached runner lives in. `$1` is the run folder; `exports` (see [`exports`])
/// run first: what `exec` forwards, a sweep's values.
pub fn wrapper(runner: &str, args: &[String], id: &str, tools: &RunTools, exports: &str) -> String {
    let mut command = format!("\"$R\"/{}", quote(runner));
    for a in args {
        command.push(' ');
        command.push_str(&quote(a));
    }
    format!(
        r#"R=$1
cd "$R" || exit 1
echo $$ > pid
{exports}CARGO_GPU_KERNELS="$R/kernels" CARGO_GPU_OUT="$R/out" CARGO_GPU_RUN_ID={id}
export CARGO_GPU_KERNELS CARGO_GPU_OUT CARGO_GPU_RUN_ID
{{ {env}; }} &
{run}{snapshot}wait
echo "$s" > exit-status.tmp && mv exit-status.tmp exit-status
"#,
        id = quote(id),
        env = env_listing("env.txt"),
        run = tools::run_lines(tools, &command),
        snapshot = if tools.no_snapshot { "" } else { "nvidia-smi -q > nvidia-smi.txt 2>&1\n" },
    )
}

/// Writes the environment to `file`, one `NAME=value` line per variable, with the value kept
/// only for the names of [`redact::env_kept`] (the same rule is applied again here on arrival):
/// rented images often carry tokens in their environment.
fn env_listing(file: &str) -> String {
    let exact = redact::ENV_KEPT.join("|");
    let prefixes = redact::ENV_KEPT_PREFIXES.join("|");
    let secret = redact::SECRET_PARTS.join("|");
    let program = format!(
        r#"BEGIN {{ for (k in ENVIRON) {{ v = ENVIRON[k]; u = toupper(k); gsub(/-/, "_", u);
  if ((k !~ /^({exact})$/ && k !~ /^({prefixes})/) || u ~ /({secret})/) v = "{redacted}";
  gsub(/\n/, "\\n", v); print k "=" v }} }}"#,
        redacted = redact::ENV_REDACTED,
    );
    format!("awk {} < /dev/null | sort > {}", quote(&program), quote(file))
}

/// Assembles `runs/<id>/` from blobs and starts the runner under setsid and nohup, so that it
/// survives the connection; its output goes to files first. Every file is checked against its
/// sha256 after it is copied into the run's own folder, so a blob replaced in the store since it
/// was uploaded is never run: it is deleted, named in a `b HASH` frame, and the script exits
/// [`BAD_BLOB`] having launched nothing.
pub fn launch(l: &Launch<'_>) -> Result<String> {
    let m = l.manifest;
    let runner = &l.runner.path;
    if !is_safe_relative(runner) {
        bail!("the package's runner path `{runner}` is not a plain relative path");
    }
    let mut s = String::new();
    if let Some((idle, command)) = l.watchdog {
        s.push_str(&watchdog(l.workdir, idle, command));
    }
    if let Some(shipment) = l.ship {
        s.push_str(&ship::assemble(&prelude(l.workdir), shipment, BAD_BLOB));
    }
    let Some(first) = l.runs.first() else { bail!("a launch has at least one run") };
    s.push_str(&run_dir(l.workdir, &first.id));
    // One `mkdir` for the run's own folder (which must be new) and one for all inside it.
    let mut dirs: Vec<&str> = m.files_for(l.runner).filter_map(|f| f.path.rsplit_once('/').map(|(d, _)| d)).collect();
    dirs.extend(["out", "kernels"]);
    dirs.sort();
    dirs.dedup();
    s.push_str(&format!(
        "mkdir \"$R\" || exit 1\ncd \"$R\" && mkdir -p {} || exit 1\n",
        dirs.iter().map(|d| quote(d)).collect::<Vec<_>>().join(" ")
    ));
    s.push_str(&format!(
        "bad() {{ rm -f \"$W/blobs/$1\"; cd /; rm -rf \"$R\"; printf 'b %s\\n' \"$1\"; exit {BAD_BLOB}; }}\n"
    ));
    s.push_str("check() { v=$(sha256sum < \"$2\") && [ \"${v%% *}\" = \"$1\" ] || bad \"$1\"; }\n");
    let (mut sums, mut one_by_one, mut executables) = (String::new(), String::new(), Vec::new());
    for f in m.files_for(l.runner) {
        if !is_safe_relative(&f.path) || !is_sha256(&f.sha256) {
            bail!("the package manifest lists `{}`, which is not a plain relative path with a sha256", f.path);
        }
        let path = quote(&f.path);
        s.push_str(&format!("cp \"$W/blobs/{h}\" {path} || bad {h}\n", h = f.sha256));
        sums.push_str(&format!("{}  {}\n", f.sha256, f.path));
        one_by_one.push_str(&format!("  check {} {path}\n", f.sha256));
        if f.executable || &f.path == runner {
            executables.push(path);
        }
    }
    // One `sha256sum -c` checks every copy; only when it fails (or cannot read a name) is each
    // file checked alone, to name the damaged blob.
    s.push_str(&format!(
        "if ! sha256sum -c - > /dev/null 2>&1 <<'CARGO_GPU_SUMS'\n{sums}CARGO_GPU_SUMS\nthen\n{one_by_one}fi\n"
    ));
    if !executables.is_empty() {
        s.push_str(&format!("chmod 755 {}\n", executables.join(" ")));
    }
    s.push_str(&start(l)?);
    Ok(s)
}

/// The end of a [`launch`], with the first run assembled in `$R`: the other runs of a sweep
/// (copies of it), then the runs started or submitted as [`Place`] says.
fn start(l: &Launch<'_>) -> Result<String> {
    let wrapper_of = |r: &RunSpec| -> Result<String> {
        let mut env = l.env.to_vec();
        env.extend(r.env.iter().map(|(k, v)| (k.clone(), EnvValue::Text(v.clone()))));
        Ok(wrapper(&l.runner.path, &r.args, &r.id, l.tools, &exports(&env)?))
    };
    let folder = |r: &RunSpec| format!("\"$W/runs\"/{}", quote(&r.id));
    let mut s = String::new();
    if let ([one], Place::Here) = (l.runs, &l.place) {
        s.push_str(&format!(
            "setsid nohup sh -c {} cargo-gpu-run \"$R\" < /dev/null > /dev/null 2>&1 &\n",
            quote(&wrapper_of(one)?)
        ));
        return Ok(s);
    }
    for (i, r) in l.runs.iter().enumerate() {
        if i > 0 {
            s.push_str(&format!("mkdir {f} && cp -Rp \"$R/.\" {f}/ || exit 1\n", f = folder(r)));
        }
    }
    for r in l.runs {
        s.push_str(&format!("printf '%s' {} > {}/wrapper.sh || exit 1\n", quote(&wrapper_of(r)?), folder(r)));
    }
    match &l.place {
        Place::Here | Place::Slots(_) => {
            let slots = match &l.place {
                Place::Slots(v) if !v.is_empty() => v.clone(),
                _ => vec![String::new()],
            };
            let ids = l.runs.iter().map(|r| quote(&r.id)).collect::<Vec<_>>().join(" ");
            s.push_str(&format!(
                "setsid nohup sh -c {} cargo-gpu-sweep \"$W/runs\" < /dev/null > /dev/null 2>&1 &\n",
                quote(&dispatcher(&ids, &slots))
            ));
        }
        Place::Slurm(cluster, caps) => {
            s.push_str(&format!(
                "printf '%s' {} > \"$R/job.sh\" || exit 1\nJOB=\"$R/job.sh\"\n",
                quote(&slurm::job_script(caps))
            ));
            s.push_str(slurm::WRITE_JOB_ID);
            if l.runs.len() == 1 {
                let out = format!("\"$R\"/{}", slurm::OUTPUT_FILE);
                s.push_str(&slurm::submit(cluster, "cargo-gpu", &out, None, "\"$R\""));
                s.push_str("job_id \"$J\" \"$R\"\n");
            } else {
                s.push_str(": > \"$R/sweep-runs\"\n");
                for r in l.runs {
                    s.push_str(&format!("printf '%s\\n' {} >> \"$R/sweep-runs\"\n", folder(r)));
                }
                let out = "\"$R\"/slurm-%a.out";
                s.push_str(&slurm::submit(cluster, "cargo-gpu-sweep", out, Some(l.runs.len()), "\"$R/sweep-runs\""));
                for (i, r) in l.runs.iter().enumerate() {
                    s.push_str(&format!(
                        "job_id \"${{J}}_{i}\" {f}\nprintf '%s\\n' \"$R/slurm-{i}.out\" > {f}/slurm-output\n",
                        f = folder(r)
                    ));
                }
            }
        }
    }
    Ok(s)
}

/// The detached loop of a sweep on the remote itself (`$1`: the runs folder): one worker per
/// slot of GPUs, each taking the next run nobody has claimed (`mkdir .claimed`), so that every
/// slot runs one run at a time; each run in its own session, as `stop_run` expects. Each run's
/// folder names the dispatcher, so that `stream` can tell a run still waiting for its slot from
/// one whose dispatcher died.
fn dispatcher(ids: &str, slots: &[String]) -> String {
    let mut s = format!(
        r#"D=$1
for r in {ids}; do echo $$ > "$D/$r/dispatcher"; done
work() {{
  if [ -n "$1" ]; then CUDA_VISIBLE_DEVICES=$1; export CUDA_VISIBLE_DEVICES; fi
  for r in {ids}; do
    mkdir "$D/$r/.claimed" 2>/dev/null || continue
    setsid -w sh "$D/$r/wrapper.sh" "$D/$r" < /dev/null > /dev/null 2>&1
  done
}}
"#
    );
    for slot in slots {
        s.push_str(&format!("work {} &\n", quote(slot)));
    }
    s.push_str("wait\n");
    s
}

/// Follows a run's logs until its exit status appears, then sends the run's files: one command
/// for what used to take a stream and a fetch. Its stdout is a sequence of frames (see [`Demux`]):
/// `o N` / `e N` and N bytes of the runner's stdout / stderr, `a TOOL` (the runner runs again
/// under `memcheck` or `cuda-gdb` after a kernel fault), `h` (a heartbeat every second of
/// silence: writing it is how the script notices a vanished client and ends, so the idle
/// watchdog does not count a dead client as alive), `x 0` (exit status written) or `x 2` (the
/// runner vanished without one), then `t` and a tar of the run's files to the end.
pub fn stream(workdir: &str, id: &str) -> String {
    format!(
        r#"{run}[ -d "$R" ] || {{ echo "no run folder $R" >&2; exit 3; }}
o=0; e=0; q=0; n=0; a=
J=; [ -s "$R/slurm-job" ] && read -r J < "$R/slurm-job"
sub=0
if [ -n "$J" ]; then
  sub=$(cat "$R/submitted" 2>/dev/null); case $sub in ''|*[!0-9]*) sub=$(date +%s) ;; esac
fi
poll=0; seen=; said=0; gone=0; fin=; started=0
# Builtins where they do: each program started costs a quick run's time on a busy host.
size() {{ s=0; if [ -s "$1" ]; then s=$(wc -c < "$1"); fi; }}
alive() {{ p=; read -r p < "$1" 2>/dev/null; kill -0 "$p" 2>/dev/null; }}
emit() {{ printf '%s %d\n' "$1" $(($4 - $3)); tail -c +$(($3 + 1)) "$2" | head -c $(($4 - $3)); }}
while :; do
  if [ $n = 0 ] || [ $n -ge 10 ]; then date +%s > "$W/last-seen" 2>/dev/null; fi
  d=0; [ -e "$R/exit-status" ] && d=1
  if [ $d = 0 ] && [ -z "$J" ] && [ -s "$R/pid" ] && ! alive "$R/pid"; then
    if [ -e "$R/exit-status" ]; then d=1; else d=2; fi
  fi
  if [ $d = 0 ] && [ ! -s "$R/pid" ] && [ -s "$R/dispatcher" ] && ! alive "$R/dispatcher"; then
    if [ -e "$R/exit-status" ]; then d=1; elif [ ! -s "$R/pid" ]; then d=2; fi
  fi
{poll}  size "$R/stdout.log"
  if [ "$s" -gt "$o" ]; then emit o "$R/stdout.log" "$o" "$s"; o=$s; q=0; fi
  size "$R/stderr.log"
  if [ "$s" -gt "$e" ]; then emit e "$R/stderr.log" "$e" "$s"; e=$s; q=0; fi
  if [ -s "$R/rerun" ] && [ "$(cat "$R/rerun")" != "$a" ]; then a=$(cat "$R/rerun"); printf 'a %s\n' "$a"; q=0; fi
  [ $d != 0 ] && break
  q=$((q + 1)); n=$((n + 1))
  if [ $q -ge 20 ]; then printf 'h\n' || exit 5; q=0; fi
  # Look often while a quick run may be ending, then less and less.
  if [ $n -lt 10 ]; then pause=0.01; elif [ $n -lt 40 ]; then pause=0.05; else pause=0.2; fi
  sleep $pause 2>/dev/null || sleep 1
done
{end}[ $d = 1 ] && printf 'x 0\n' || printf 'x 2\n'
printf 't\n'
{fetch}"#,
        run = run_dir(workdir, id),
        poll = slurm::poll_lines(),
        end = slurm::end_lines(),
        fetch = fetch_tail(),
    )
}

/// Stops runs: a sweep's dispatcher first (so that no run of it starts), then each run: a
/// job is cancelled (see [`slurm::cancel_lines`]); a run never started is marked so; a started
/// one gets TERM to its process group, KILL after 5 s. An exit status of 130 is written for a
/// run that had none.
pub fn stop_runs(workdir: &str, ids: &[&str]) -> String {
    let ids = ids.iter().map(|i| quote(i)).collect::<Vec<_>>().join(" ");
    format!(
        r#"{prelude}for id in {ids}; do
  R="$W/runs/$id"
  [ -s "$R/dispatcher" ] && kill -TERM -"$(cat "$R/dispatcher")" 2>/dev/null
done
for id in {ids}; do
  R="$W/runs/$id"
  [ -d "$R" ] || continue
  if [ -e "$R/dispatcher" ] && mkdir "$R/.claimed" 2>/dev/null; then
    [ -e "$R/exit-status" ] || echo 130 > "$R/exit-status"
    continue
  fi
  i=0
  while [ ! -s "$R/pid" ] && [ ! -s "$R/slurm-job" ] && [ $i -lt 20 ]; do sleep 0.1 2>/dev/null || sleep 1; i=$((i + 1)); done
{cancel}  p=$(cat "$R/pid" 2>/dev/null)
  if [ -n "$p" ] && [ ! -e "$R/exit-status" ]; then
    kill -TERM -"$p" 2>/dev/null
    i=0
    while kill -0 "$p" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1 2>/dev/null || sleep 1; i=$((i + 1)); done
    kill -KILL -"$p" 2>/dev/null
  fi
  if [ ! -e "$R/exit-status" ]; then
    nvidia-smi -q > "$R/nvidia-smi.txt" 2>&1
    echo 130 > "$R/exit-status"
  fi
done
"#,
        prelude = prelude(workdir),
        cancel = slurm::cancel_lines(),
    )
}

/// Stops one run (see [`stop_runs`]).
pub fn stop_run(workdir: &str, id: &str) -> String {
    stop_runs(workdir, &[id])
}

/// Sends the run's logs, exit status, `nvidia-smi -q`, environment and `out/`: a `t` frame and
/// one tar, read by [`Demux`] like the end of [`stream`].
pub fn fetch(workdir: &str, id: &str) -> String {
    format!("{}printf 't\\n'\n{}", run_dir(workdir, id), fetch_tail())
}

fn fetch_tail() -> String {
    let names: Vec<&str> = FETCHED.iter().map(|f| f.trim_end_matches('/')).collect();
    format!(
        r#"cd "$R" || exit 1
set --
for f in {files}; do [ -e "$f" ] && set -- "$@" "$f"; done
[ $# -gt 0 ] || exit 0
tar -cf - "$@"
"#,
        files = names.join(" "),
    )
}

/// The exit status of a [`run`] script whose [`Guard`] found the remote changed since the
/// preflight it relied on: nothing was launched, preflight again.
pub const STALE: i32 = 7;

/// What a run that skips its preflight (relying on the last one over the same connection)
/// checks on the remote first: free disk before the upload, every blob present after it.
#[derive(Debug, Clone, Copy)]
pub struct Guard<'a> {
    pub hashes: &'a [String],
    pub need_bytes: u64,
}

/// The one command of a run after preflight: store the uploaded blobs (when `upload` names them;
/// the tar comes on stdin), assemble and launch the run, say `r` (launched), then, unless
/// `detach`, [`stream`] (the first run: a sweep's runs are followed one by one afterwards). With a `guard`, a remote that no longer matches exits [`STALE`] first.
pub fn run(
    upload_blobs: Option<(&str, &[String])>,
    guard: Option<Guard<'_>>,
    l: &Launch<'_>,
    detach: bool,
) -> Result<String> {
    let mut s = String::new();
    if let Some(g) = guard {
        let need_kb = (g.need_bytes + DISK_MARGIN_BYTES).div_ceil(1024);
        s.push_str(&format!(
            "{}f=$(df -Pk \"$W\" | awk 'NR==2 {{print $4}}')\n[ \"${{f:-0}}\" -ge {need_kb} ] 2>/dev/null || exit {STALE}\n",
            prelude(l.workdir)
        ));
    }
    if let Some((upload_id, hashes)) = upload_blobs {
        s.push_str(&upload(l.workdir, upload_id, hashes));
    }
    if let Some(g) = guard {
        assert!(g.hashes.iter().all(|h| is_sha256(h)), "blob names are sha256 digests");
        s.push_str(&format!(
            "{}for h in {}; do [ -f \"$W/blobs/$h\" ] || exit {STALE}; done\n",
            prelude(l.workdir),
            words(g.hashes)
        ));
    }
    s.push_str(&launch(l)?);
    s.push_str("printf 'r\\n'\n");
    if !detach {
        s.push_str(&stream(l.workdir, &l.runs[0].id));
    }
    Ok(s)
}

/// Starts (once per instance) a detached loop that runs `shutdown_command` when no run is alive
/// and no client has been seen for `idle`.
pub fn watchdog(workdir: &str, idle: Duration, shutdown_command: &str) -> String {
    let idle_s = idle.as_secs().max(1);
    let pause = (idle_s / 10).clamp(1, 30);
    let body = format!(
        r#"W=$1
echo $$ > "$W/watchdog.pid"
seen=$(date +%s)
while :; do
  now=$(date +%s)
  for p in "$W"/runs/*/pid; do
    [ -f "$p" ] || continue
    d=${{p%/pid}}
    [ -e "$d/exit-status" ] && continue
    kill -0 "$(cat "$p")" 2>/dev/null && echo "$now" > "$W/last-seen"
  done
  if [ -e "$W/last-seen" ]; then
    last=$(cat "$W/last-seen" 2>/dev/null)
    # A client rewriting the file leaves it empty for a moment: that is "just now", not "never".
    case $last in ''|*[!0-9]*) last=$now ;; esac
  else
    # The workdir (or its clock) is gone: no run or client can have been seen since.
    last=$seen
  fi
  seen=$last
  if [ $((now - last)) -ge {idle_s} ]; then
    echo "idle since $last: running the shutdown command"
    rm -f "$W/watchdog.pid"
    sh -c {command}
    exit 0
  fi
  sleep {pause}
done
"#,
        command = quote(shutdown_command),
    );
    format!(
        r#"{prelude}mkdir -p "$W/runs" || exit 1
date +%s > "$W/last-seen"
if ! {{ [ -s "$W/watchdog.pid" ] && kill -0 "$(cat "$W/watchdog.pid")" 2>/dev/null; }}; then
  setsid nohup sh -c {body} cargo-gpu-watchdog "$W" < /dev/null >> "$W/watchdog.log" 2>&1 &
fi
"#,
        prelude = prelude(workdir),
        body = quote(&body),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::frames::{Channel, Demux};
    use std::process::Command;

    fn manifest(targets: &[&str]) -> Manifest {
        Manifest::sample(targets)
    }

    fn sh_syntax_ok(script: &str) {
        let out = Command::new("sh").arg("-n").arg("-c").arg(script).output().unwrap();
        assert!(out.status.success(), "{script}\n{}", String::from_utf8_lossy(&out.stderr));
    }

    #[test]
    fn watchdog_fires_once_when_its_workdir_disappears() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("w");
        let fired = dir.path().join("fired");
        let command = format!("echo fired >> '{}'", fired.display());
        let script = watchdog(work.to_str().unwrap(), Duration::from_secs(1), &command);
        assert!(Command::new("sh").arg("-c").arg(&script).status().unwrap().success());
        // The watchdog starts in the background: let it come up before its workdir goes.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !work.join("watchdog.pid").exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(work.join("watchdog.pid").exists(), "the watchdog started");
        // Deleting the workdir must not keep the instance up forever.
        std::fs::remove_dir_all(&work).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !fired.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(std::fs::read_to_string(&fired).unwrap_or_default(), "fired\n");
    }

    #[test]
    fn scripts_quote_every_word_and_parse() {
        let w = "~/it's $(touch pwned) dir";
        let hashes = vec!["c".repeat(64)];
        let p = preflight(w, &hashes);
        assert!(p.starts_with("W=\"$HOME\"/'it'\\''s $(touch pwned) dir'\n"), "{p}");
        sh_syntax_ok(&p);
        sh_syntax_ok(&upload(w, "2026-11-28T14-03-11-h100", &hashes));
        let m = manifest(&["sm_90a"]);
        let args = vec!["a b".to_string(), "$(touch pwned)".to_string(), "'\"".to_string()];
        let one = [RunSpec { id: "run 1".into(), args: args.clone(), env: Vec::new() }];
        let l = launch(&Launch {
            workdir: w,
            runs: &one,
            place: Place::Here,
            manifest: &m,
            watchdog: Some((Duration::from_secs(900), "sudo shutdown -h now")),
            tools: &RunTools::default(),
            ship: None,
            env: &[],
            runner: &m.runners[0],
        })
        .unwrap();
        sh_syntax_ok(&l);
        assert!(l.contains("R=\"$W/runs\"/'run 1'\n"), "{l}");
        assert!(l.contains(&format!("cp \"$W/blobs/{}\" kernels/k.sm_90a.cubin", "b".repeat(64))), "{l}");
        assert!(l.contains("chmod 755 bin/demo"), "{l}");
        assert!(l.contains("setsid nohup sh -c "), "{l}");
        let wr = wrapper("bin/demo", &args, "run 1", &RunTools::default(), "");
        sh_syntax_ok(&wr);
        assert!(wr.contains(r#""$R"/bin/demo 'a b' '$(touch pwned)' ''\''"'"#), "{wr}");
        sh_syntax_ok(&stream(w, "x"));
        sh_syntax_ok(
            &run(
                Some(("u", &hashes)),
                Some(Guard { hashes: &hashes, need_bytes: 1 << 20 }),
                &Launch {
                    workdir: w,
                    runs: &[RunSpec { id: "x".into(), args: args.clone(), env: Vec::new() }],
                    place: Place::Here,
                    manifest: &m,
                    watchdog: None,
                    tools: &RunTools::default(),
                    ship: None,
                    env: &[],
                    runner: &m.runners[0],
                },
                false,
            )
            .unwrap(),
        );
        // Of a package with two runners, only the remote's is copied into the run and run.
        let two = Manifest::sample_two_runners(&["sm_90a"]);
        let arm = two.runner_for(Some("aarch64")).unwrap();
        let l = launch(&Launch {
            workdir: w,
            runs: &[RunSpec { id: "x".into(), ..RunSpec::default() }],
            place: Place::Here,
            manifest: &two,
            runner: arm,
            watchdog: None,
            tools: &RunTools::default(),
            ship: None,
            env: &[],
        })
        .unwrap();
        sh_syntax_ok(&l);
        assert!(l.contains("mkdir -p bin/aarch64-unknown-linux-gnu kernels"), "{l}");
        assert!(l.contains("chmod 755 bin/aarch64-unknown-linux-gnu/demo\n"), "{l}");
        assert!(!l.contains("x86_64"), "the other runner stays out: {l}");
        sh_syntax_ok(&stop_run(w, "x"));
        sh_syntax_ok(&fetch(w, "x"));
        sh_syntax_ok(&watchdog(w, Duration::from_secs(60), "touch /tmp/it's off"));
    }

    #[test]
    fn sweep_and_slurm_launches_quote_every_word_and_parse() {
        let m = manifest(&["sm_90a"]);
        let cluster = Slurm {
            partition: Some("gpu $(touch pwned)".into()),
            gres: Some("gpu:h100:1".into()),
            sbatch_args: vec!["--account=it's".into()],
            ..Slurm::default()
        };
        let runs: Vec<RunSpec> = (0..3)
            .map(|i| RunSpec {
                id: format!("r {i}"),
                args: vec!["{x}".into(), "$(touch pwned)".into()],
                env: vec![("BLOCK".into(), format!("'{i}"))],
            })
            .collect();
        let tools = RunTools::default();
        for (n, place) in [
            (1, Place::Slurm(&cluster, vec!["9.0".into()])),
            (3, Place::Slurm(&cluster, vec!["9.0".into()])),
            (3, Place::Slots(vec!["0,1".into(), "2,3".into()])),
        ] {
            let l = Launch {
                workdir: "~/a b",
                runs: &runs[..n],
                place,
                manifest: &m,
                watchdog: None,
                tools: &tools,
                ship: None,
                runner: &m.runners[0],
                env: &[],
            };
            let script = launch(&l).unwrap();
            sh_syntax_ok(&script);
            if n == 3 {
                assert!(script.contains("\"$W/runs\"/'r 2'"), "{script}");
            }
            if matches!(l.place, Place::Slurm(..)) {
                assert!(script.contains("sbatch --parsable --job-name="), "{script}");
                assert!(script.contains("'--partition=gpu $(touch pwned)'"), "{script}");
                assert!(script.contains("'--account=it'\\''s'"), "{script}");
            }
        }
        sh_syntax_ok(&stop_runs("~/a b", &["r 0", "r 1"]));
        sh_syntax_ok(&slurm::job_script(&["9.0".into()]));
        sh_syntax_ok(&preflight_slurm("~/a b", &["c".repeat(64)]));
    }

    #[test]
    fn the_stream_script_frames_a_real_run_folder() {
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path().display().to_string();
        let r = dir.path().join("runs/x");
        std::fs::create_dir_all(r.join("out")).unwrap();
        std::fs::write(r.join("stdout.log"), "out 1\nout 2").unwrap();
        std::fs::write(r.join("stderr.log"), "warn\n").unwrap();
        std::fs::write(r.join("exit-status"), "3\n").unwrap();
        let got = Command::new("sh").arg("-c").arg(stream(&w, "x")).output().unwrap();
        assert!(got.status.success(), "{}", String::from_utf8_lossy(&got.stderr));
        let mut d = Demux::default();
        let (mut out, mut tar) = (Vec::new(), Vec::new());
        d.feed(&got.stdout, &mut |ch, b| match ch {
            Channel::Tar => tar.extend_from_slice(b),
            _ => out.push((ch, b.to_vec())),
        });
        assert_eq!(out, [(Channel::Stdout, b"out 1\nout 2".to_vec()), (Channel::Stderr, b"warn\n".to_vec())]);
        assert_eq!(d.ended, Some(true));
        let names: Vec<String> = tar::Archive::new(&tar[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert!(names.contains(&"exit-status".to_string()) && names.contains(&"stdout.log".to_string()), "{names:?}");
    }

    #[test]
    fn launch_refuses_paths_that_leave_the_run_folder() {
        let mut m = manifest(&["sm_90a"]);
        m.files[1].path = "../../.ssh/authorized_keys".into();
        let l = Launch {
            workdir: "/w",
            runs: &[RunSpec { id: "x".into(), ..RunSpec::default() }],
            place: Place::Here,
            manifest: &m,
            watchdog: None,
            tools: &RunTools::default(),
            ship: None,
            env: &[],
            runner: &m.runners[0],
        };
        assert!(launch(&l).is_err());
        for bad in ["", "/etc/x", "a/../b", "./a", "a//b"] {
            assert!(!is_safe_relative(bad), "{bad}");
        }
        assert!(is_safe_relative("kernels/k.sm_90a.cubin"));
    }

    #[test]
    fn a_blob_replaced_in_the_store_is_refused_deleted_and_nothing_launched() {
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path().display().to_string();
        let mut m = manifest(&["sm_90a"]);
        m.files[0].sha256 = crate::digest::sha256_hex(b"#!/bin/sh\n");
        m.files[1].sha256 = crate::digest::sha256_hex(b"cubin");
        std::fs::create_dir_all(dir.path().join("blobs")).unwrap();
        std::fs::create_dir_all(dir.path().join("runs")).unwrap();
        let runner_blob = dir.path().join("blobs").join(&m.files[0].sha256);
        let cubin_blob = dir.path().join("blobs").join(&m.files[1].sha256);
        std::fs::write(&runner_blob, b"#!/bin/sh\n").unwrap();
        // The right name, other bytes: what a tampered store holds.
        std::fs::write(&cubin_blob, b"planted").unwrap();
        let tools = RunTools::default();
        let run = |id: &str| {
            let runs = [RunSpec { id: id.into(), ..RunSpec::default() }];
            let l = Launch {
                workdir: &w,
                runs: &runs,
                place: Place::Here,
                manifest: &m,
                watchdog: None,
                tools: &tools,
                ship: None,
                runner: &m.runners[0],
                env: &[],
            };
            Command::new("sh").arg("-c").arg(launch(&l).unwrap()).output().unwrap()
        };
        let out = run("r1");
        assert_eq!(out.status.code(), Some(BAD_BLOB), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8(out.stdout).unwrap(), format!("b {}\n", m.files[1].sha256));
        assert!(!cubin_blob.exists(), "the bad blob was deleted");
        assert!(runner_blob.exists(), "the good one was kept");
        assert!(!dir.path().join("runs/r1").exists(), "nothing was launched");
        // With the blob whole again, the same script launches.
        std::fs::write(&cubin_blob, b"cubin").unwrap();
        let out = run("r2");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::fs::read(dir.path().join("runs/r2/kernels/k.sm_90a.cubin")).unwrap(), b"cubin");
    }

    #[test]
    fn wrapper_runs_the_runner_with_its_args_verbatim() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("r");
        std::fs::create_dir_all(run.join("bin")).unwrap();
        std::fs::create_dir_all(run.join("out")).unwrap();
        let runner = run.join("bin/demo");
        std::fs::write(&runner, "#!/bin/sh\nprintf '%s\\n' \"$@\"\necho err >&2\nexit 7\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&runner, std::fs::Permissions::from_mode(0o755)).unwrap();
        let args = vec!["a b".to_string(), "$(touch pwned)".to_string(), "it's".to_string()];
        let st = Command::new("sh")
            .arg("-c")
            .arg(wrapper(
                "bin/demo",
                &args,
                "id",
                &RunTools::default(),
                &exports(&[("BLOCK".into(), EnvValue::Text("64 $(x)".into()))]).unwrap(),
            ))
            .arg("x")
            .arg(&run)
            .env("HF_TOKEN", "hf_secret_value_123")
            .env("CUDA_VISIBLE_DEVICES", "0")
            .env("MULTI", "line one\nline two")
            .status()
            .unwrap();
        assert!(st.success());
        assert_eq!(std::fs::read_to_string(run.join("stdout.log")).unwrap(), "a b\n$(touch pwned)\nit's\n");
        assert_eq!(std::fs::read_to_string(run.join("stderr.log")).unwrap(), "err\n");
        assert_eq!(std::fs::read_to_string(run.join("exit-status")).unwrap(), "7\n");
        let env = std::fs::read_to_string(run.join("env.txt")).unwrap();
        assert!(env.contains(&format!("CARGO_GPU_OUT={}/out", run.display())), "{env}");
        assert!(env.contains("\nCUDA_VISIBLE_DEVICES=0\n") && env.contains("\nHF_TOKEN=<redacted>\n"), "{env}");
        assert!(env.contains("\nMULTI=<redacted>\n") && !env.contains("hf_secret"), "{env}");
        assert!(!run.join("pwned").exists());
        assert!(env.contains("\nBLOCK=<redacted>\n") || env.contains("\nBLOCK=64 $(x)\n"), "{env}");
    }
}
