//! The user's machine configuration: `$XDG_CONFIG_HOME/cargo-gpu/config.toml` (or the file
//! `CARGO_GPU_CONFIG` names), which holds the remotes, since hosts are not project data. Also the
//! layering rule for the remote to use (command line > environment > project > user config) and
//! the duration syntax (`15m`, `10s`, `500ms`) of its time settings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// The name that means "this machine, no SSH".
pub const LOCAL: &str = "local";
/// Where packages and runs live on a remote unless its `workdir` says otherwise.
pub const DEFAULT_WORKDIR: &str = "~/.cache/cargo-gpu";
pub const DEFAULT_SHUTDOWN_COMMAND: &str = "sudo shutdown -h now";
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for SSH to answer after a `start` command.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(300);
/// The most a run may send back (logs and `out/`) unless its remote's `max-fetch` says otherwise.
pub const DEFAULT_MAX_FETCH: u64 = 1 << 30;

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct UserConfig {
    #[serde(default)]
    pub remotes: BTreeMap<String, RemoteConfig>,
    #[serde(default)]
    pub default: DefaultSection,
    /// The file this was read from (or looked for), for messages.
    #[serde(skip)]
    pub path: Option<PathBuf>,
    /// Whether that file exists.
    #[serde(skip)]
    pub file_exists: bool,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DefaultSection {
    pub remote: Option<String>,
}

/// One `[remotes.NAME]` table, as written.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RemoteConfig {
    /// Anything ssh accepts: an alias from ~/.ssh/config, `user@host`.
    pub host: Option<String>,
    pub workdir: Option<String>,
    /// A local command run before connecting (starts a rented instance).
    pub start: Option<String>,
    /// A local command run after the run, on every exit path.
    pub stop: Option<String>,
    pub price_per_hour: Option<f64>,
    /// On-instance watchdog: run `shutdown-command` after this long with no run and no client.
    pub idle_shutdown: Option<String>,
    pub shutdown_command: Option<String>,
    /// Extra ssh arguments, placed before cargo-gpu's own (ssh keeps the first value it sees).
    #[serde(default)]
    pub ssh_options: Vec<String>,
    pub connect_timeout: Option<String>,
    /// How long to wait for SSH to answer after `start`.
    pub ready_timeout: Option<String>,
    /// The most a run may send back (`1GiB`, `500MB`); the rest is refused.
    pub max_fetch: Option<String>,
    /// Whether to send this machine's compute-sanitizer there: `auto`, `always` or `never`.
    pub ship_sanitizer: Option<String>,
    /// The remote's machine as `uname -m` names it (`x86_64`, `aarch64`): the runner is built
    /// for it. Without it, the machine the last preflight saw there is used.
    pub machine: Option<String>,
    /// `ssh` (the default with a `host`), `local`, or `slurm` (`host` is the login node).
    pub kind: Option<String>,
    /// Slurm: the partition the jobs go to.
    pub partition: Option<String>,
    /// Slurm: `--gres` of each job (`gpu:h100:1`).
    pub gres: Option<String>,
    /// Slurm: `--gpus` of each job, instead of `gres`.
    pub gpus: Option<u32>,
    /// Slurm: `--time` of each job (`00:10:00`).
    pub time: Option<String>,
    /// Slurm: more `sbatch` arguments (`--account=proj42`).
    #[serde(default)]
    pub sbatch_args: Vec<String>,
}

/// How a `slurm` remote submits its jobs: `sbatch` on the login node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Slurm {
    pub partition: Option<String>,
    pub gres: Option<String>,
    pub gpus: Option<u32>,
    pub time: Option<String>,
    pub sbatch_args: Vec<String>,
}

impl Slurm {
    /// The `sbatch` options of every job, in the order given.
    pub fn sbatch_options(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(p) = &self.partition {
            v.push(format!("--partition={p}"));
        }
        if let Some(g) = &self.gres {
            v.push(format!("--gres={g}"));
        }
        if let Some(n) = self.gpus {
            v.push(format!("--gpus={n}"));
        }
        if let Some(t) = &self.time {
            v.push(format!("--time={t}"));
        }
        v.extend(self.sbatch_args.iter().cloned());
        v
    }
}

/// Whether a run sends this machine's compute-sanitizer (from PyPI) to the remote as blobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ShipSanitizer {
    /// When the remote has none and the run needs one (`--sanitize`; the memcheck rerun after a
    /// fault only when the blobs are there already).
    #[default]
    Auto,
    /// Whenever the run may need one, and use it even where the remote has its own.
    Always,
    Never,
}

/// The environment variable that overrides a remote's `ship-sanitizer`.
pub const SHIP_SANITIZER_ENV: &str = "CARGO_GPU_SHIP_SANITIZER";

impl std::str::FromStr for ShipSanitizer {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<ShipSanitizer> {
        match s {
            "auto" => Ok(ShipSanitizer::Auto),
            "always" => Ok(ShipSanitizer::Always),
            "never" => Ok(ShipSanitizer::Never),
            _ => bail!("`{s}` is not one of auto, always, never"),
        }
    }
}

/// A remote with every default filled in and every duration parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Remote {
    pub name: String,
    /// `None` for the local "remote".
    pub host: Option<String>,
    pub workdir: String,
    pub start: Option<String>,
    pub stop: Option<String>,
    pub price_per_hour: Option<f64>,
    pub idle_shutdown: Option<Duration>,
    pub shutdown_command: String,
    pub ssh_options: Vec<String>,
    pub connect_timeout: Duration,
    pub ready_timeout: Duration,
    /// Bytes.
    pub max_fetch: u64,
    pub ship_sanitizer: ShipSanitizer,
    /// `machine` as configured.
    pub machine: Option<String>,
    /// Set for a `slurm` remote: runs are jobs submitted on the login node (`host`, or this
    /// machine when `host = "local"`).
    pub slurm: Option<Slurm>,
}

impl Remote {
    pub fn is_local(&self) -> bool {
        self.host.is_none()
    }

    /// The machine that runs `--remote local` when no `[remotes.local]` table exists.
    pub fn local() -> Remote {
        Remote {
            name: LOCAL.into(),
            host: None,
            workdir: DEFAULT_WORKDIR.into(),
            start: None,
            stop: None,
            price_per_hour: None,
            idle_shutdown: None,
            shutdown_command: DEFAULT_SHUTDOWN_COMMAND.into(),
            ssh_options: Vec::new(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            ready_timeout: DEFAULT_READY_TIMEOUT,
            max_fetch: DEFAULT_MAX_FETCH,
            ship_sanitizer: ShipSanitizer::Auto,
            machine: None,
            slurm: None,
        }
    }

    /// What a build for this remote should know of its machine: the configured `machine`, else
    /// the one its last preflight saw, and the glibc seen there when it was that machine.
    pub fn known_machine(&self) -> SeenMachine {
        let seen = crate::cache::cache_dir().map(|d| seen_machine(&d, &self.name)).unwrap_or_default();
        seen.under(self.machine.as_deref())
    }
}

/// The machines a remote may be (`uname -m`): those NVIDIA datacenter GPUs sit in.
pub const MACHINES: [&str; 2] = ["x86_64", "aarch64"];

/// What the last preflight of a remote saw of its machine (`uname -m`) and glibc, kept in the
/// cache folder per remote name: the next build for that remote builds a runner that starts
/// there (an aarch64 GH200 host, an image with an old glibc) without being told.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, Deserialize)]
pub struct SeenMachine {
    pub machine: Option<String>,
    pub glibc: Option<String>,
}

impl SeenMachine {
    /// What is known with `machine` configured: that machine, and the glibc seen only when it
    /// was seen on that machine.
    fn under(self, configured: Option<&str>) -> SeenMachine {
        match configured {
            Some(m) if self.machine.as_deref() != Some(m) => SeenMachine { machine: Some(m.into()), glibc: None },
            _ => self,
        }
    }
}

fn seen_path(cache: &Path, remote: &str) -> PathBuf {
    let hash = crate::digest::sha256_hex(remote.as_bytes());
    cache.join(format!("remote-machine-{}.json", &hash[..16]))
}

/// The machine last seen on `remote`, kept in the cache folder `cache`; nothing when it was never
/// preflighted (or the cache is gone).
pub fn seen_machine(cache: &Path, remote: &str) -> SeenMachine {
    let text = crate::safe_fs::read_no_follow(&seen_path(cache, remote)).unwrap_or_default();
    serde_json::from_slice(&text).unwrap_or_default()
}

/// Remembers what a preflight of `remote` saw, in the cache folder `cache`. Best effort: without
/// it, the next build for the remote only does not know its machine.
pub fn remember_machine(cache: &Path, remote: &str, seen: &SeenMachine) {
    if seen.machine.is_none() && seen.glibc.is_none() {
        return;
    }
    if let Ok(text) = serde_json::to_vec(seen) {
        let _ = std::fs::create_dir_all(cache);
        let _ = crate::safe_fs::write_if_changed(&seen_path(cache, remote), &text);
    }
}

/// Parses `1GiB`, `500MB`, `64MiB`, `1048576` (bytes).
pub fn parse_bytes(text: &str) -> Result<u64> {
    parse_size::parse_size(text.trim())
        .map_err(|e| anyhow::anyhow!("`{text}` is not a size ({e}): write it as 1GiB, 500MB or a number of bytes"))
}

/// Parses `15m`, `10s`, `500ms`, `2h`, `1h 30m` (humantime's syntax); a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok(Duration::from_secs_f64(secs));
        }
    }
    humantime::parse_duration(t)
        .map_err(|e| anyhow::anyhow!("`{text}` is not a duration ({e}): write it as 500ms, 10s, 15m or 2h"))
}

/// The config file to read: `CARGO_GPU_CONFIG`, else `$XDG_CONFIG_HOME/cargo-gpu/config.toml`.
pub fn config_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CARGO_GPU_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    use etcetera::BaseStrategy;
    let base = etcetera::choose_base_strategy().ok()?;
    Some(base.config_dir().join("cargo-gpu").join("config.toml"))
}

impl UserConfig {
    /// Reads the user config; a missing file is an empty config, except when `CARGO_GPU_CONFIG`
    /// names it explicitly.
    pub fn load() -> Result<UserConfig> {
        let Some(path) = config_path() else { return Ok(UserConfig::default()) };
        let explicit = std::env::var_os("CARGO_GPU_CONFIG").is_some_and(|p| !p.is_empty());
        match std::fs::read_to_string(&path) {
            Ok(text) => UserConfig::parse(&text, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                Ok(UserConfig { path: Some(path), ..UserConfig::default() })
            }
            Err(e) => Err(e).with_context(|| format!("failed to read the cargo-gpu config {}", path.display())),
        }
    }

    /// Parses a config file's text, naming the file and the key on any error.
    pub fn parse(text: &str, path: &Path) -> Result<UserConfig> {
        let de = toml::Deserializer::parse(text)
            .map_err(|e| anyhow::anyhow!("invalid cargo-gpu config {}: {}", path.display(), e.message()))?;
        let mut config: UserConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let key = if key == "." { String::new() } else { format!(" at key `{key}`") };
            anyhow::anyhow!("invalid cargo-gpu config {}{key}: {}", path.display(), e.inner().message())
        })?;
        config.path = Some(path.to_path_buf());
        config.file_exists = true;
        for (name, r) in &config.remotes {
            // Resolving now reports bad durations with the file and key, before any work starts.
            config.resolve_table(name, r)?;
        }
        Ok(config)
    }

    fn where_(&self) -> String {
        match (&self.path, self.file_exists) {
            (Some(p), true) => p.display().to_string(),
            (Some(p), false) => format!("{} (which does not exist yet)", p.display()),
            (None, _) => "the cargo-gpu config (no config folder found: set CARGO_GPU_CONFIG)".to_string(),
        }
    }

    fn resolve_table(&self, name: &str, r: &RemoteConfig) -> Result<Remote> {
        let dur = |key: &str, v: &Option<String>| -> Result<Option<Duration>> {
            v.as_deref()
                .map(parse_duration)
                .transpose()
                .with_context(|| format!("invalid cargo-gpu config {} at key `remotes.{name}.{key}`", self.where_()))
        };
        let at = |key: &str| format!("invalid cargo-gpu config {} at key `remotes.{name}{key}`", self.where_());
        let kind = r.kind.as_deref().unwrap_or(if r.host.is_none() && name == LOCAL { LOCAL } else { "ssh" });
        let slurm_keys = r.partition.is_some()
            || r.gres.is_some()
            || r.gpus.is_some()
            || r.time.is_some()
            || !r.sbatch_args.is_empty();
        let host = match (kind, r.host.as_deref()) {
            ("ssh", Some(h)) => Some(h.to_string()),
            ("ssh", None) => bail!("{}: missing `host`", at("")),
            (LOCAL, None) | (LOCAL, Some(LOCAL)) => None,
            (LOCAL, Some(_)) => bail!("{}: a `local` remote has no `host` (it runs on this machine)", at(".host")),
            ("slurm", Some(LOCAL)) => None,
            ("slurm", Some(h)) => Some(h.to_string()),
            ("slurm", None) => {
                bail!("{}: missing `host` (the login node to ssh to, or \"local\" when already on it)", at(""))
            }
            (other, _) => bail!("{}: `{other}` is not one of ssh, local, slurm", at(".kind")),
        };
        let slurm = if kind == "slurm" {
            if r.gres.is_some() && r.gpus.is_some() {
                bail!("{}: give `gres` or `gpus`, not both", at(""));
            }
            if r.idle_shutdown.is_some() {
                bail!("{}: a Slurm cluster ends its jobs itself; remove `idle-shutdown`", at(".idle-shutdown"));
            }
            Some(Slurm {
                partition: r.partition.clone(),
                gres: r.gres.clone(),
                gpus: r.gpus,
                time: r.time.clone(),
                sbatch_args: r.sbatch_args.clone(),
            })
        } else if slurm_keys {
            bail!(
                "{}: `partition`, `gres`, `gpus`, `time` and `sbatch-args` are for Slurm: add `kind = \"slurm\"`",
                at("")
            );
        } else {
            None
        };
        let max_fetch = r
            .max_fetch
            .as_deref()
            .map(parse_bytes)
            .transpose()
            .with_context(|| format!("invalid cargo-gpu config {} at key `remotes.{name}.max-fetch`", self.where_()))?
            .unwrap_or(DEFAULT_MAX_FETCH);
        // Whatever keys these commands carry are never printed or recorded.
        for hook in [&r.start, &r.stop, &r.shutdown_command].into_iter().flatten() {
            crate::redact::register_command(hook);
        }
        crate::redact::register_words(&r.ssh_options);
        Ok(Remote {
            name: name.to_string(),
            host,
            workdir: r.workdir.clone().unwrap_or_else(|| DEFAULT_WORKDIR.into()),
            start: r.start.clone(),
            stop: r.stop.clone(),
            price_per_hour: r.price_per_hour,
            idle_shutdown: dur("idle-shutdown", &r.idle_shutdown)?,
            shutdown_command: r.shutdown_command.clone().unwrap_or_else(|| DEFAULT_SHUTDOWN_COMMAND.into()),
            ssh_options: r.ssh_options.clone(),
            connect_timeout: dur("connect-timeout", &r.connect_timeout)?.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            ready_timeout: dur("ready-timeout", &r.ready_timeout)?.unwrap_or(DEFAULT_READY_TIMEOUT),
            max_fetch,
            ship_sanitizer: r
                .ship_sanitizer
                .as_deref()
                .map(str::parse)
                .transpose()
                .with_context(|| {
                    format!("invalid cargo-gpu config {} at key `remotes.{name}.ship-sanitizer`", self.where_())
                })?
                .unwrap_or_default(),
            machine: match r.machine.as_deref() {
                Some(m) if !MACHINES.contains(&m) => bail!(
                    "invalid cargo-gpu config {} at key `remotes.{name}.machine`: `{m}` is not one of {} (what `uname -m` prints there)",
                    self.where_(),
                    MACHINES.join(", ")
                ),
                m => m.map(str::to_string),
            },
            slurm,
        })
    }

    /// The remote called `name`: a `[remotes.NAME]` table, or the built-in `local`.
    pub fn remote(&self, name: &str) -> Result<Remote> {
        match self.remotes.get(name) {
            Some(r) => self.resolve_table(name, r),
            None if name == LOCAL => Ok(Remote::local()),
            None => {
                let known: Vec<&str> = self.remotes.keys().map(String::as_str).collect();
                let file = match &self.path {
                    Some(p) => p.display().to_string(),
                    None => "the file CARGO_GPU_CONFIG names".to_string(),
                };
                bail!(
                    "no remote named `{name}` in {}; known remotes: {}\n\nAdd it to {file}:\n\n{}",
                    self.where_(),
                    if known.is_empty() { "none but `local`".to_string() } else { known.join(", ") },
                    remote_template(name)
                )
            }
        }
    }
}

/// A `[remotes.NAME]` table to paste into the config, with the keys a rented GPU needs.
pub fn remote_template(name: &str) -> String {
    let key = if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        name.to_string()
    } else {
        toml::Value::String(name.to_string()).to_string()
    };
    let host = toml::Value::String(name.to_string());
    format!(
        "[remotes.{key}]\n\
         host = {host}                  # an alias from ~/.ssh/config, or user@host\n\
         workdir = \"~/.cache/cargo-gpu\"\n\
         # start = \"vastai start instance 1234\"   # starts a rented instance; stop runs on every exit\n\
         # stop = \"vastai stop instance 1234\"\n\
         # price-per-hour = 2.40\n\
         # idle-shutdown = \"15m\"\n"
    )
}

/// The remote to use, by precedence: command line > environment (`CARGO_GPU_REMOTE`) > project
/// (`[package.metadata.gpu] remote`) > user config (`[default] remote`). No default beyond that.
pub fn choose_remote(
    cli: Option<&str>,
    env: Option<&str>,
    project: Option<&str>,
    user: Option<&str>,
) -> Result<String> {
    [cli, env, project, user].into_iter().flatten().find(|s| !s.is_empty()).map(str::to_string).ok_or_else(|| {
        anyhow::anyhow!(
            "no remote chosen: pass --remote NAME (or --remote local), set CARGO_GPU_REMOTE, or add `[default] remote = \"NAME\"` to the cargo-gpu config"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[remotes.h100]
host = "h100"
workdir = "~/.cache/cargo-gpu"
start = "vastai start instance 1234"
stop = "vastai stop instance 1234"
price-per-hour = 2.40
idle-shutdown = "15m"
[default]
remote = "h100"
"#;

    fn parse(text: &str) -> Result<UserConfig> {
        UserConfig::parse(text, Path::new("/home/u/.config/cargo-gpu/config.toml"))
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert_eq!(parse_duration("2.5").unwrap(), Duration::from_millis(2500));
        for bad in ["", "m", "10 parsecs", "ten s", "-1s", "1..2s", "-3"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(parse_duration("3 fortnights").unwrap_err().to_string().contains("is not a duration"));
    }

    #[test]
    fn the_issue_example_parses() {
        let c = parse(EXAMPLE).unwrap();
        assert_eq!(c.default.remote.as_deref(), Some("h100"));
        let r = c.remote("h100").unwrap();
        assert_eq!(r.host.as_deref(), Some("h100"));
        assert_eq!(r.idle_shutdown, Some(Duration::from_secs(900)));
        assert_eq!(r.price_per_hour, Some(2.40));
        assert_eq!(r.shutdown_command, DEFAULT_SHUTDOWN_COMMAND);
        assert_eq!(r.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert!(!r.is_local());
    }

    #[test]
    fn unknown_keys_name_file_and_key() {
        let err = parse("[remotes.h100]\nhost = \"h\"\nprice = 1.0\n").unwrap_err().to_string();
        assert!(
            err.starts_with(
                "invalid cargo-gpu config /home/u/.config/cargo-gpu/config.toml at key `remotes.h100.price`"
            ),
            "{err}"
        );
        assert!(err.contains("unknown field `price`"), "{err}");
        let err = parse("[defaults]\nremote = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("at key `defaults`") && err.contains("unknown field `defaults`"), "{err}");
        let err = parse("[remotes.a]\nhost = \"h\"\nconnect-timeout = \"soon\"\n").unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains("at key `remotes.a.connect-timeout`") && err.contains("`soon` is not a duration"),
            "{err}"
        );
        let err = parse("[remotes.a]\nworkdir = \"/w\"\n").unwrap_err().to_string();
        assert!(err.contains("at key `remotes.a`: missing `host`"), "{err}");
        let err = format!("{:#}", parse("[remotes.a]\nhost = \"h\"\nmax-fetch = \"lots\"\n").unwrap_err());
        assert!(err.contains("at key `remotes.a.max-fetch`") && err.contains("`lots` is not a size"), "{err}");
    }

    #[test]
    fn ship_sanitizer_is_auto_always_or_never() {
        let c = parse("[remotes.a]\nhost = \"a\"\nship-sanitizer = \"always\"\n[remotes.b]\nhost = \"b\"\n").unwrap();
        assert_eq!(c.remote("a").unwrap().ship_sanitizer, ShipSanitizer::Always);
        assert_eq!(c.remote("b").unwrap().ship_sanitizer, ShipSanitizer::Auto);
        let err = format!("{:#}", parse("[remotes.a]\nhost = \"a\"\nship-sanitizer = \"yes\"\n").unwrap_err());
        assert!(
            err.contains("at key `remotes.a.ship-sanitizer`")
                && err.contains("`yes` is not one of auto, always, never"),
            "{err}"
        );
    }

    #[test]
    fn slurm_remotes_take_their_keys_and_refuse_others() {
        let c = parse(
            "[remotes.cluster]\nkind = \"slurm\"\nhost = \"login.cluster.example\"\nworkdir = \"~/scratch/cargo-gpu\"\n\
             partition = \"gpu\"\ngres = \"gpu:h100:1\"\ntime = \"00:10:00\"\nsbatch-args = [\"--account=proj42\"]\n\
             [remotes.here]\nkind = \"slurm\"\nhost = \"local\"\ngpus = 2\n",
        )
        .unwrap();
        let r = c.remote("cluster").unwrap();
        assert_eq!(r.host.as_deref(), Some("login.cluster.example"));
        let s = r.slurm.unwrap();
        assert_eq!(s.sbatch_options(), ["--partition=gpu", "--gres=gpu:h100:1", "--time=00:10:00", "--account=proj42"]);
        let here = c.remote("here").unwrap();
        assert!(here.is_local() && here.slurm.unwrap().sbatch_options() == ["--gpus=2"]);
        for (text, says) in [
            ("[remotes.a]\nhost = \"h\"\npartition = \"gpu\"\n", "add `kind = \"slurm\"`"),
            ("[remotes.a]\nkind = \"slurm\"\n", "missing `host` (the login node"),
            ("[remotes.a]\nkind = \"pbs\"\nhost = \"h\"\n", "`pbs` is not one of ssh, local, slurm"),
            ("[remotes.a]\nkind = \"slurm\"\nhost = \"h\"\ngres = \"gpu:1\"\ngpus = 1\n", "not both"),
            ("[remotes.a]\nkind = \"slurm\"\nhost = \"h\"\nidle-shutdown = \"5m\"\n", "remove `idle-shutdown`"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn fetch_caps() {
        assert_eq!(parse_bytes("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("500MB").unwrap(), 500_000_000);
        assert_eq!(parse_bytes("64 MiB").unwrap(), 64 << 20);
        let c = parse("[remotes.a]\nhost = \"h\"\nmax-fetch = \"2GiB\"\n").unwrap();
        assert_eq!(c.remote("a").unwrap().max_fetch, 2 << 30);
        assert_eq!(parse(EXAMPLE).unwrap().remote("h100").unwrap().max_fetch, DEFAULT_MAX_FETCH);
    }

    #[test]
    fn local_is_built_in_and_may_be_configured() {
        let c = parse(EXAMPLE).unwrap();
        let l = c.remote(LOCAL).unwrap();
        assert!(l.is_local());
        assert_eq!(l.workdir, DEFAULT_WORKDIR);
        let c = parse("[remotes.local]\nworkdir = \"/w\"\n").unwrap();
        assert_eq!(c.remote(LOCAL).unwrap().workdir, "/w");
        let err = c.remote("a100").unwrap_err().to_string();
        assert!(err.contains("no remote named `a100`") && err.contains("known remotes: local"), "{err}");
    }

    #[test]
    fn a_missing_remote_names_the_file_and_a_block_that_parses() {
        let none = UserConfig { path: Some("/home/u/.config/cargo-gpu/config.toml".into()), ..Default::default() };
        let err = none.remote("h100").unwrap_err().to_string();
        assert!(
            err.starts_with(
                "no remote named `h100` in /home/u/.config/cargo-gpu/config.toml (which does not exist yet); known remotes: none but `local`"
            ),
            "{err}"
        );
        assert!(
            err.contains("Add it to /home/u/.config/cargo-gpu/config.toml:\n\n[remotes.h100]\nhost = \"h100\""),
            "{err}"
        );
        for name in ["h100", "my box.1"] {
            let block = remote_template(name);
            let r = parse(&block).unwrap().remote(name).unwrap();
            assert_eq!((r.host.as_deref(), r.workdir.as_str()), (Some(name), DEFAULT_WORKDIR));
        }
    }

    #[test]
    fn layering_follows_precedence() {
        assert_eq!(choose_remote(Some("cli"), Some("env"), Some("proj"), Some("user")).unwrap(), "cli");
        assert_eq!(choose_remote(None, Some("env"), Some("proj"), Some("user")).unwrap(), "env");
        assert_eq!(choose_remote(None, None, Some("proj"), Some("user")).unwrap(), "proj");
        assert_eq!(choose_remote(None, Some(""), None, Some("user")).unwrap(), "user");
        let err = choose_remote(None, None, None, None).unwrap_err().to_string();
        assert!(err.contains("pass --remote NAME"), "{err}");
    }

    #[test]
    fn a_remotes_machine_is_configured_or_remembered() {
        let c = parse("[remotes.gh200]\nhost = \"g\"\nmachine = \"aarch64\"\n[remotes.b]\nhost = \"b\"\n").unwrap();
        assert_eq!(c.remote("gh200").unwrap().machine.as_deref(), Some("aarch64"));
        let err = parse("[remotes.a]\nhost = \"a\"\nmachine = \"arm64\"\n").unwrap_err().to_string();
        assert!(err.contains("at key `remotes.a.machine`: `arm64` is not one of x86_64, aarch64"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        assert_eq!(seen_machine(&cache, "b"), SeenMachine::default(), "never preflighted");
        let seen = SeenMachine { machine: Some("aarch64".into()), glibc: Some("2.35".into()) };
        remember_machine(&cache, "b", &seen);
        assert_eq!(seen_machine(&cache, "b"), seen, "the last preflight's machine and glibc");
        assert_eq!(seen_machine(&cache, "gh200"), SeenMachine::default(), "kept per remote");
        assert_eq!(seen.clone().under(None), seen);
        assert_eq!(seen.clone().under(Some("aarch64")), seen);
        let x86 = SeenMachine { machine: Some("x86_64".into()), glibc: None };
        assert_eq!(seen.under(Some("x86_64")), x86, "the configured machine wins; another machine's glibc is not its");
    }
}
