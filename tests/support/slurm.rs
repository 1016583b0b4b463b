//! A real single-node Slurm cluster from Debian's packages (slurmctld, slurmd, munge), brought up
//! by the test itself: no systemd, every daemon a child of the test, in the foreground, with its
//! own configuration, key, socket, state and logs under one temp folder, and stopped by its PID
//! when the [`Cluster`] drops (after its jobs are cancelled), which then checks that nothing it
//! started is left running.
//!
//! What setting it up on Debian 12 (slurm-wlm 22.05.8, munge 0.5.15, no systemd, no cgroups)
//! showed:
//! - munged runs as root with `--key-file --socket --pid-file --log-file --seed-file` all in the
//!   folder (`mungekey -c -k KEY` makes the key), `-F` keeps it in the foreground so that its PID
//!   is the child's; the socket's folder and every folder above it must be executable by all (a
//!   `mktemp -d` folder is 700: chmod it 755), or munged exits "Socket is inaccessible".
//! - slurm.conf needs `AuthInfo=socket=<that socket>`, `SlurmUser=root`, state, spool, pid and
//!   log paths in the folder, `ProctrackType=proctrack/linuxproc`, `TaskPlugin=task/none`,
//!   `SelectType=select/cons_tres`, `MailProg=/bin/true`, `SchedulerParameters=batch_sched_delay=0`;
//!   ports of its own (`SlurmctldPort`, `SlurmdPort`), so that clusters of tests running at once
//!   do not meet. Every client command needs `SLURM_CONF` (the loopback sshd sets it for the
//!   login node; `host = "local"` runs get it from the test's environment).
//! - The hostname is not `localhost`: the node is named `localhost` and slurmd started with
//!   `-N localhost`. Start-up takes under a second; `sinfo -h -o %T` prints `idle` when ready.
//! - A fake GPU GRES: `GresTypes=gpu`, node `Gres=gpu:1`, gres.conf `AutoDetect=off` and
//!   `NodeName=localhost Name=gpu File=DIR/gpu0` (a character device made with `mknod DIR/gpu0 c
//!   1 3`). `--gres=gpu:1` jobs then schedule and see `CUDA_VISIBLE_DEVICES=0`; a second one
//!   waits with reason `Resources`; `--gres=gpu:2` is refused by sbatch.
//! - `squeue -j ID` lists only jobs still queued or going; `--states=all` also lists finished
//!   ones (COMPLETED, TIMEOUT, CANCELLED) until MinJobAge (300 s) passes. `squeue -j A_4` works
//!   for a pending task of an array. An array of 9 one-GPU tasks of 0.2 s runs in about 9 s.
//! - A time limit is counted in whole minutes (`--time=00:00:03` is one minute) and checked about
//!   every 30 s, so a job over its limit ends 60 to 90 s after it started: state TIMEOUT, reason
//!   TimeLimit, and slurmstepd writes `*** JOB N ON localhost CANCELLED AT ... DUE TO TIME LIMIT
//!   ***` into the job's output. The batch shell itself may survive the SIGTERM that killed its
//!   child (`KillWait` later comes the KILL: `KillWait=2` here).
//! - slurmstepd outlives slurmd: a job still running when slurmd stops keeps its slurmstepd and
//!   processes, so the drop cancels every job and waits for the queue to empty first. Every
//!   process the cluster started carries `SLURM_CONF=<this config>` in its environment, which is
//!   how the drop's check finds leftovers. SIGTERM stops slurmd and slurmctld in about 2 s.
//! - `sacct` fails (accounting is off); `scancel` of a running job: state CANCELLED, processes
//!   killed; `sbatch --wait` polls at 2, 8, 32 s, too slow to follow jobs with.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::ci::required;
use super::sshd::free_port;

/// A running single-node cluster; dropping it stops it.
pub struct Cluster {
    pub dir: PathBuf,
    pub conf: PathBuf,
    daemons: Vec<(&'static str, Child)>,
    _tmp: tempfile::TempDir,
}

fn installed() -> bool {
    ["/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/bin/sbatch", "/usr/sbin/mungekey"]
        .iter()
        .all(|p| Path::new(p).is_file())
}

impl Cluster {
    /// Brings a cluster up (under a second), or `None` (skip) where Slurm is not installed;
    /// under CI=true that panics.
    pub fn start() -> Option<Cluster> {
        required(
            installed().then_some(()),
            "slurmctld, slurmd, munge",
            "apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge",
        )?;
        let tmp = tempfile::Builder::new().prefix("cgsl").tempdir_in("/tmp").unwrap();
        let dir = tmp.path().to_path_buf();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["state", "spool", "log"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let ok = |c: &mut Command| {
            let out = c.output().unwrap();
            assert!(out.status.success(), "{c:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        ok(Command::new("mknod").arg(dir.join("gpu0")).args(["c", "1", "3"]));
        ok(Command::new("mungekey").args(["-c", "-k"]).arg(dir.join("munge.key")));
        let d = dir.display();
        let conf = dir.join("slurm.conf");
        std::fs::write(
            &conf,
            format!(
                "ClusterName=cgtest\nSlurmctldHost=localhost\nSlurmctldPort={ctld}\nSlurmdPort={slurmd}\n\
                 AuthType=auth/munge\nAuthInfo=socket={d}/munge.sock\nCredType=cred/munge\n\
                 SlurmUser=root\nSlurmdUser=root\nStateSaveLocation={d}/state\nSlurmdSpoolDir={d}/spool\n\
                 SlurmctldPidFile={d}/slurmctld.pid\nSlurmdPidFile={d}/slurmd.pid\n\
                 SlurmctldLogFile={d}/log/slurmctld.log\nSlurmdLogFile={d}/log/slurmd.log\n\
                 ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nSelectType=select/cons_tres\n\
                 MailProg=/bin/true\nSchedulerParameters=batch_sched_delay=0\nKillWait=2\nReturnToService=2\n\
                 GresTypes=gpu\nNodeName=localhost CPUs=2 Gres=gpu:1 State=UNKNOWN\n\
                 PartitionName=gpu Nodes=localhost Default=YES MaxTime=INFINITE State=UP\n",
                ctld = free_port(),
                slurmd = free_port(),
            ),
        )
        .unwrap();
        std::fs::write(dir.join("gres.conf"), format!("AutoDetect=off\nNodeName=localhost Name=gpu File={d}/gpu0\n"))
            .unwrap();
        let mut cluster = Cluster { dir: dir.clone(), conf, daemons: Vec::new(), _tmp: tmp };
        cluster.spawn(
            "munged",
            Command::new("/usr/sbin/munged").arg("-F").arg("-f").args([
                format!("--key-file={d}/munge.key"),
                format!("--socket={d}/munge.sock"),
                format!("--pid-file={d}/munged.pid"),
                format!("--log-file={d}/log/munged.log"),
                format!("--seed-file={d}/munge.seed"),
            ]),
        );
        let sock = dir.join("munge.sock");
        cluster.wait("munged's socket", || sock.exists());
        cluster.spawn("slurmctld", Command::new("/usr/sbin/slurmctld").arg("-D"));
        cluster.spawn("slurmd", Command::new("/usr/sbin/slurmd").args(["-D", "-N", "localhost"]));
        cluster.wait("the node to be idle", || cluster.client("sinfo", &["-h", "-o", "%T"]).trim() == "idle");
        Some(cluster)
    }

    fn spawn(&mut self, name: &'static str, cmd: &mut Command) {
        let log = std::fs::File::create(self.dir.join("log").join(format!("{name}.out"))).unwrap();
        let child = cmd
            .env("SLURM_CONF", &self.conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {name}: {e}"));
        self.daemons.push((name, child));
    }

    #[track_caller]
    fn wait(&self, what: &str, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ready() {
            if Instant::now() > deadline {
                let logs: Vec<String> = ["munged.out", "slurmctld.log", "slurmd.log", "slurmctld.out", "slurmd.out"]
                    .iter()
                    .map(|l| {
                        format!(
                            "--- {l}\n{}",
                            std::fs::read_to_string(self.dir.join("log").join(l)).unwrap_or_default()
                        )
                    })
                    .collect();
                panic!("timed out waiting for {what}\n{}", logs.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A Slurm client command (`squeue`, `sinfo`, ...) against this cluster: its stdout.
    pub fn client(&self, program: &str, args: &[&str]) -> String {
        let out = Command::new(program).args(args).env("SLURM_CONF", &self.conf).stdin(Stdio::null()).output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
    }

    /// `(job id, state, reason)` of every job in the queue.
    pub fn queue(&self) -> Vec<(String, String, String)> {
        self.client("squeue", &["-h", "-o", "%i %T %r"])
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace().map(str::to_string);
                Some((w.next()?, w.next()?, w.next().unwrap_or_default()))
            })
            .collect()
    }

    /// The state of job `id`, finished ones included.
    pub fn job_state(&self, id: &str) -> String {
        self.client("squeue", &["-h", "-j", id, "--states=all", "-o", "%T"]).trim().to_string()
    }

    /// The `SLURM_CONF=...` word of this cluster, for a login node's environment.
    pub fn env_word(&self) -> String {
        format!("SLURM_CONF={}", self.conf.display())
    }

    /// PIDs of the processes whose environment names this cluster's configuration: the daemons,
    /// slurmstepd and the jobs.
    pub fn processes(&self) -> Vec<u32> {
        let needle = format!("SLURM_CONF={}\0", self.conf.display());
        let me = std::process::id();
        let mut pids = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
            if pid == me {
                continue;
            }
            if let Ok(env) = std::fs::read(e.path().join("environ")) {
                if env.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    pids.push(pid);
                }
            }
        }
        pids
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Jobs first: slurmstepd and a job's processes outlive slurmd.
        let _ = self.client("scancel", &["--full", "-p", "gpu"]);
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.queue().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        for (_, child) in self.daemons.iter_mut().rev() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        }
        for (name, child) in self.daemons.iter_mut().rev() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    eprintln!("{name} did not stop on TERM: killed");
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // The check: nothing this cluster started may be left running.
        let left = self.processes();
        for pid in &left {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
        if !left.is_empty() && !std::thread::panicking() {
            panic!("the cluster left processes running (now killed): {left:?}");
        }
    }
}
