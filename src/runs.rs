//! Local run records: `target/gpu/runs/<id>/` holds what a run brought back (`stdout.log`,
//! `stderr.log`, `exit-status`, `nvidia-smi.txt`, `env.txt`, `out/`) and `record.toml`: remote,
//! target, package digest, exit status, wall time per phase, blobs uploaded and cost. The cost
//! ledger is the sum of the records, so it can never disagree with them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

pub const RECORD_FILE: &str = "record.toml";
/// The folder of run records under `<target>/gpu/`.
pub const RUNS_FOLDER: &str = "runs";

/// Adds the time `f` takes to `slot` (seconds), whatever it returns.
pub fn timed<T>(slot: &mut f64, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let t = std::time::Instant::now();
    let r = f();
    *slot += t.elapsed().as_secs_f64();
    r
}

/// Wall time per phase, in seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Phases {
    /// Start hook, waiting for SSH and the first connection.
    pub connect: f64,
    pub preflight: f64,
    /// Upload (of the blobs the remote lacks) and launch: one remote command.
    pub upload: f64,
    pub run: f64,
    pub fetch: f64,
    pub stop: f64,
}

impl Phases {
    pub fn total(&self) -> f64 {
        self.connect + self.preflight + self.upload + self.run + self.fetch + self.stop
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Launched and not yet seen to finish (detached, or the connection dropped).
    Running,
    Finished,
    Interrupted,
    /// cargo-gpu itself failed (see `error`).
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Record {
    pub id: String,
    pub remote: String,
    /// The ssh host; absent for `local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Where the run lives there.
    pub workdir: String,
    /// The package's target that runs on the remote GPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_capability: Option<String>,
    pub package: String,
    pub package_name: String,
    /// `Manifest::digest()`.
    pub package_digest: String,
    pub args: Vec<String>,
    /// The options that ran the runner under a CUDA tool, as given (`--sanitize=racecheck`,
    /// `--profile`, `--ncu-args=--set full`, `--debug`, `--no-autosanitize`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    /// The tools' report files that came back (`sanitizer.txt`, `profile.ncu-rep`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reports: Vec<String>,
    /// UTC, `2026-11-28T14:03:11Z`.
    pub started: String,
    pub state: State,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub blobs_uploaded: usize,
    pub bytes_uploaded: u64,
    pub blobs_present: usize,
    /// Entries of the fetched tar that were refused (unsafe paths or links).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<String>,
    /// Whether the instance was left up (`--keep-up`, `--detach`, or no stop command).
    pub left_up: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_per_hour: Option<f64>,
    /// Price times the wall time from start hook to stop hook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    pub wall_seconds: f64,
    pub phases: Phases,
    /// The Slurm job that ran it (`123`, or `123_4` for a task of an array).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm_job: Option<String>,
    /// How that job ended when not by itself: `TIMEOUT`, `CANCELLED`, `NODE_FAIL`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm_state: Option<String>,
    /// The sweep this run is one combination of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<SweepTag>,
}

/// A run's place in a sweep: the sweep's id (its first run's id), its index, and the values of
/// its combination, in the order of the `--sweep` options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SweepTag {
    pub id: String,
    pub index: usize,
    pub values: Vec<(String, String)>,
}

impl SweepTag {
    /// `BLOCK=64 STAGES=2`.
    pub fn label(&self) -> String {
        self.values.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
    }
}

/// Where a run goes and what it runs: what a record knows before the run starts.
#[derive(Debug, Clone)]
pub struct Origin<'a> {
    pub remote: &'a str,
    pub host: Option<&'a str>,
    pub workdir: &'a str,
    pub price_per_hour: Option<f64>,
    /// The package folder, absolute.
    pub package: &'a str,
    pub package_name: &'a str,
    pub package_digest: String,
}

impl Record {
    /// The record of a run about to start: failed until it is seen to get further, and counted
    /// as leaving its instance up until it is seen to stop it.
    pub fn new(id: &str, origin: Origin<'_>, args: &[String], started: u64) -> Record {
        Record {
            id: id.to_string(),
            remote: origin.remote.to_string(),
            host: origin.host.map(str::to_string),
            workdir: origin.workdir.to_string(),
            target: None,
            gpu: None,
            compute_capability: None,
            package: origin.package.to_string(),
            package_name: origin.package_name.to_string(),
            package_digest: origin.package_digest,
            args: args.to_vec(),
            tools: Vec::new(),
            reports: Vec::new(),
            started: rfc3339(started),
            state: State::Failed,
            exit_status: None,
            error: None,
            blobs_uploaded: 0,
            bytes_uploaded: 0,
            blobs_present: 0,
            refused: Vec::new(),
            left_up: true,
            price_per_hour: origin.price_per_hour,
            cost: None,
            wall_seconds: 0.0,
            phases: Phases::default(),
            slurm_job: None,
            slurm_state: None,
            sweep: None,
        }
    }

    /// Writes `record.toml` as a new file renamed into place (never through a link), with every
    /// registered secret masked.
    pub fn save(&self, runs_dir: &Path) -> Result<()> {
        let path = runs_dir.join(&self.id).join(RECORD_FILE);
        let text = toml::to_string(self).context("failed to serialize the run record")?;
        crate::safe_fs::write_if_changed(&path, crate::redact::scrub(&text).as_bytes())
            .with_context(|| format!("failed to write run record {}", path.display()))?;
        Ok(())
    }

    pub fn load(runs_dir: &Path, id: &str) -> Result<Record> {
        let path = runs_dir.join(id).join(RECORD_FILE);
        let bytes = crate::safe_fs::read_no_follow(&path)
            .with_context(|| format!("failed to read run record {}", path.display()))?;
        toml::from_str(&String::from_utf8_lossy(&bytes))
            .with_context(|| format!("failed to parse run record {}", path.display()))
    }

    pub fn exit_text(&self) -> String {
        match (self.state, self.exit_status) {
            (State::Running, _) => "running".into(),
            (_, _) if self.slurm_state.as_deref() == Some("TIMEOUT") => "time limit".into(),
            (_, _) if self.slurm_state.as_deref() == Some("CANCELLED") => "cancelled".into(),
            (State::Finished, _) if self.slurm_state.is_some() => {
                self.slurm_state.as_deref().unwrap_or_default().to_lowercase().replace('_', " ")
            }
            (State::Failed, _) => "error".into(),
            (State::Interrupted, _) => "interrupted".into(),
            (_, Some(c)) => c.to_string(),
            (_, None) => "?".into(),
        }
    }
}

/// Every record under `runs_dir`, oldest first (ids sort by time).
pub fn list(runs_dir: &Path) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(runs_dir) else { return Ok(out) };
    let mut ids: Vec<String> = entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    ids.sort();
    for id in ids {
        if runs_dir.join(&id).join(RECORD_FILE).is_file() {
            out.push(Record::load(runs_dir, &id)?);
        }
    }
    Ok(out)
}

/// `2026-11-28T14:03:11Z`.
pub fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string()
}

/// `2026-11-28T14-03-11.482-h100`: how the id of a run started at `millis` (since the Unix
/// epoch, UTC) on `remote` begins. Ids sort in start order, to the millisecond.
pub fn run_id(millis: u64, remote: &str) -> String {
    let time = humantime::format_rfc3339_millis(UNIX_EPOCH + std::time::Duration::from_millis(millis)).to_string();
    // `2026-11-28T14:03:11.482Z`, without the colons that some file systems and tools refuse.
    let time = time.trim_end_matches('Z').replace(':', "-");
    let remote: String =
        remote.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    format!("{time}-{remote}")
}

pub fn now_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Makes a fresh run folder and returns its id: [`run_id`] and six random hex digits, so that
/// runs started at the same moment, by other processes or on other machines sharing a remote's
/// workdir, never share an id (the id also names the run's folder there).
pub fn create_run_dir(runs_dir: &Path, remote: &str, millis: u64) -> Result<(String, PathBuf)> {
    std::fs::create_dir_all(runs_dir).with_context(|| format!("failed to create {}", runs_dir.display()))?;
    let base = run_id(millis, remote);
    let mut rng = fastrand::Rng::new();
    loop {
        let id = format!("{base}-{:06x}", rng.u32(..1 << 24));
        let dir = runs_dir.join(&id);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok((id, dir)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("failed to create run folder {}", dir.display())),
        }
    }
}

/// `1m 03s`, `4.2s`.
pub fn human_duration(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else if secs < 3600.0 {
        format!("{}m {:02}s", (secs / 60.0) as u64, secs as u64 % 60)
    } else {
        format!("{}h {:02}m", (secs / 3600.0) as u64, secs as u64 / 60 % 60)
    }
}

pub fn money(v: f64) -> String {
    if v < 0.01 && v > 0.0 {
        format!("${v:.4}")
    } else {
        format!("${v:.2}")
    }
}

/// The `cargo gpu runs` table.
pub fn table(records: &[Record]) -> String {
    let mut rows = vec![[
        "RUN".to_string(),
        "REMOTE".into(),
        "TARGET".into(),
        "EXIT".into(),
        "TIME".into(),
        "COST".into(),
        "REPORTS".into(),
    ]];
    for r in records {
        rows.push([
            r.id.clone(),
            r.remote.clone(),
            r.target.clone().unwrap_or_else(|| "-".into()),
            r.exit_text(),
            human_duration(r.wall_seconds),
            r.cost.map(money).unwrap_or_else(|| "-".into()),
            crate::tool_reports::summary::short_names(&r.reports),
        ]);
    }
    let widths: Vec<usize> = (0..7).map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// One kit result of a run: the report's name, its median time and rate, whether it checked.
#[derive(Debug, Clone, PartialEq)]
struct KitResult {
    name: String,
    median_ms: f64,
    rate: Option<(f64, &'static str)>,
    passed: Option<bool>,
}

/// The kit's results in a run's `out/` (`*.json` with a `timing`), by file name; what the remote
/// wrote is a stranger's text: names are escaped and cut short, big files are not read.
/// The kernel a kit report is of: its name without the problem size the kit appends
/// (`hgemm-4096x4096x4096` is `hgemm`), so that a sweep over sizes lines its runs up in one
/// column.
fn kernel_of(name: &str) -> &str {
    match name.rsplit_once('-') {
        Some((kernel, size)) if !kernel.is_empty() && size.starts_with(|c: char| c.is_ascii_digit()) => kernel,
        _ => name,
    }
}

fn kit_results(run_dir: &Path) -> Vec<KitResult> {
    let Ok(entries) = std::fs::read_dir(run_dir.join("out")) else { return Vec::new() };
    let mut paths: Vec<PathBuf> =
        entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "json")).collect();
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        let Ok(bytes) = crate::safe_fs::read_no_follow(&p) else { continue };
        if bytes.len() > 1 << 20 {
            continue;
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else { continue };
        let Some(median_ms) = v["timing"]["median_ms"].as_f64() else { continue };
        let name = v["name"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default());
        let rate = match (v["timing"]["tflops"].as_f64(), v["timing"]["gbps"].as_f64()) {
            (Some(t), _) => Some((t, "TFLOP/s")),
            (None, Some(g)) => Some((g, "GB/s")),
            _ => None,
        };
        out.push(KitResult {
            name: crate::escape::line(kernel_of(&name)).chars().take(40).collect(),
            median_ms,
            rate,
            passed: v["check"]["passed"].as_bool(),
        });
    }
    out
}

/// Lines of cells, columns padded to their widest cell.
fn columns(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..n).map(|i| rows.iter().map(|r| r.get(i).map_or(0, |c| c.chars().count())).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The summary of each sweep among `records`: a row per run with its values, its exit and the
/// kit's timing results side by side (the median time and rate of each report), best (the
/// lowest median of the first report) first; runs without one last, in sweep order.
pub fn sweep_table(records: &[Record], runs_dir: &Path) -> String {
    let mut sweeps: Vec<&str> = records.iter().filter_map(|r| r.sweep.as_ref().map(|s| s.id.as_str())).collect();
    sweeps.dedup();
    let mut out = String::new();
    for sweep in sweeps {
        let mut runs: Vec<(&Record, &SweepTag, Vec<KitResult>)> = records
            .iter()
            .filter_map(|r| r.sweep.as_ref().filter(|s| s.id == sweep).map(|s| (r, s)))
            .map(|(r, s)| (r, s, kit_results(&runs_dir.join(&r.id))))
            .collect();
        let Some((_, first, _)) = runs.first() else { continue };
        let names: Vec<String> = first.values.iter().map(|(k, _)| k.clone()).collect();
        let mut reports: Vec<String> = Vec::new();
        for (_, _, results) in &runs {
            for k in results {
                if !reports.contains(&k.name) {
                    reports.push(k.name.clone());
                }
            }
        }
        // Best first: the highest rate (TFLOP/s, GB/s) when the first report has one, which
        // compares runs of different sizes fairly; else the shortest median.
        let key = |results: &[KitResult]| {
            let k = reports.first().and_then(|n| results.iter().find(|k| &k.name == n))?;
            Some(k.rate.map_or(k.median_ms, |(rate, _)| -rate))
        };
        runs.sort_by(|a, b| match (key(&a.2), key(&b.2)) {
            (Some(x), Some(y)) => x.total_cmp(&y).then(a.1.index.cmp(&b.1.index)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.1.index.cmp(&b.1.index),
        });
        let mut header: Vec<String> = names.clone();
        header.push("EXIT".into());
        for r in &reports {
            header.push(format!("{r} MS"));
            header.push("RATE".into());
            header.push("CHECK".into());
        }
        header.push("RUN".into());
        let mut rows = vec![header];
        for (record, tag, results) in &runs {
            let mut row: Vec<String> = tag.values.iter().map(|(_, v)| crate::escape::line(v)).collect();
            row.push(record.exit_text());
            for r in &reports {
                match results.iter().find(|k| &k.name == r) {
                    Some(k) => {
                        row.push(format!("{:.4}", k.median_ms));
                        row.push(k.rate.map(|(v, unit)| format!("{v:.1} {unit}")).unwrap_or_else(|| "-".into()));
                        row.push(match k.passed {
                            Some(true) => "pass".into(),
                            Some(false) => "FAIL".into(),
                            None => "-".into(),
                        });
                    }
                    None => row.extend(["-".to_string(), "-".into(), "-".into()]),
                }
            }
            row.push(record.id.clone());
            rows.push(row);
        }
        out.push_str(&format!("\nsweep {sweep}: {} runs, best first\n", runs.len()));
        out.push_str(&columns(&rows));
    }
    out
}

/// The ledger: runs, paid time and cost per remote, and the total.
pub fn ledger(records: &[Record]) -> String {
    let mut per: BTreeMap<&str, (usize, f64, f64)> = BTreeMap::new();
    for r in records {
        let e = per.entry(&r.remote).or_default();
        e.0 += 1;
        e.1 += r.wall_seconds;
        e.2 += r.cost.unwrap_or(0.0);
    }
    let mut out = String::from("REMOTE  RUNS  TIME  COST\n");
    let (mut n, mut t, mut c) = (0, 0.0, 0.0);
    for (remote, (runs, time, cost)) in &per {
        out.push_str(&format!("{remote}  {runs}  {}  {}\n", human_duration(*time), money(*cost)));
        n += runs;
        t += time;
        c += cost;
    }
    out.push_str(&format!("total  {n}  {}  {}\n", human_duration(t), money(c)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn sample(id: &str, remote: &str, cost: Option<f64>) -> Record {
        Record {
            id: id.into(),
            remote: remote.into(),
            host: Some("h".into()),
            workdir: "~/.cache/cargo-gpu".into(),
            target: Some("sm_90a".into()),
            gpu: Some("NVIDIA H100 80GB HBM3".into()),
            compute_capability: Some("9.0".into()),
            package: "/p".into(),
            package_name: "demo".into(),
            package_digest: "ab".repeat(32),
            args: vec!["--n".into(), "5".into()],
            tools: Vec::new(),
            reports: Vec::new(),
            started: "2026-11-28T14:03:11Z".into(),
            state: State::Finished,
            exit_status: Some(7),
            error: None,
            blobs_uploaded: 1,
            bytes_uploaded: 10,
            blobs_present: 2,
            refused: vec![],
            left_up: false,
            price_per_hour: Some(2.4),
            cost,
            wall_seconds: 75.0,
            phases: Phases { connect: 1.0, run: 74.0, ..Phases::default() },
            slurm_job: None,
            slurm_state: None,
            sweep: None,
        }
    }

    #[test]
    fn ids_are_utc_time_and_remote() {
        assert_eq!(run_id(0, "h100"), "1970-01-01T00-00-00.000-h100");
        // 2026-11-28T14:03:11.482Z
        assert_eq!(run_id(1_795_874_591_482, "h100"), "2026-11-28T14-03-11.482-h100");
        assert_eq!(rfc3339(1_795_874_591), "2026-11-28T14:03:11Z");
        assert_eq!(run_id(951_782_400_007, "a/b c"), "2000-02-29T00-00-00.007-a_b_c");
        assert!(run_id(1_795_874_591_999, "h100") < run_id(1_795_874_592_000, "h100"), "ids sort by time");
    }

    #[test]
    fn runs_in_the_same_second_get_their_own_ids() {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<String> = (0..50).map(|_| create_run_dir(dir.path(), "h100", 0).unwrap().0).collect();
        for id in &ids {
            let suffix = id.strip_prefix("1970-01-01T00-00-00.000-h100-").expect(id);
            assert!(suffix.len() == 6 && suffix.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        }
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len());
    }

    #[test]
    fn records_round_trip_and_list_in_order() {
        let dir = tempfile::tempdir().unwrap();
        for id in ["2026-b", "2026-a"] {
            std::fs::create_dir_all(dir.path().join(id)).unwrap();
            sample(id, "h100", Some(0.05)).save(dir.path()).unwrap();
        }
        let all = list(dir.path()).unwrap();
        assert_eq!(all.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["2026-a", "2026-b"]);
        assert_eq!(all[0], sample("2026-a", "h100", Some(0.05)));
        let text = std::fs::read_to_string(dir.path().join("2026-a/record.toml")).unwrap();
        assert!(text.contains("exit-status = 7") && text.contains("[phases]"), "{text}");
    }

    #[test]
    fn table_and_ledger() {
        let rs = vec![sample("r1", "h100", Some(0.05)), sample("r2", "h100", Some(0.10)), sample("r3", "b200", None)];
        let t = table(&rs);
        assert!(t.starts_with("RUN  REMOTE  TARGET  EXIT  TIME    COST   REPORTS\n"), "{t}");
        assert!(t.contains("r1   h100    sm_90a  7     1m 15s  $0.05"), "{t}");
        let l = ledger(&rs);
        assert!(l.contains("h100  2  2m 30s  $0.15\n"), "{l}");
        assert!(l.ends_with("total  3  3m 45s  $0.15\n"), "{l}");
    }

    #[test]
    fn a_sweep_over_sizes_lines_its_reports_up_by_kernel() {
        assert_eq!(kernel_of("hgemm-4096x4096x4096"), "hgemm");
        assert_eq!(kernel_of("vector_add-1000003"), "vector_add");
        assert_eq!(kernel_of("tcgen05-gemm"), "tcgen05-gemm", "a name's own dash stays");
        assert_eq!(kernel_of("-42"), "-42");
    }

    #[test]
    fn a_sweep_over_sizes_is_ranked_by_rate() {
        let tmp = tempfile::tempdir().unwrap();
        let mut records = Vec::new();
        for (index, (size, ms, tflops)) in [("4096", 0.21, 654.7), ("8192", 0.75, 735.2)].into_iter().enumerate() {
            let id = format!("run-{size}");
            let out = tmp.path().join(&id).join("out");
            std::fs::create_dir_all(&out).unwrap();
            std::fs::write(
                out.join(format!("hgemm-{size}x{size}x4096.json")),
                format!(r#"{{"name":"hgemm-{size}x{size}x4096","timing":{{"median_ms":{ms},"tflops":{tflops}}},"check":{{"passed":true}}}}"#),
            )
            .unwrap();
            let mut r = sample(&id, "h200", None);
            r.exit_status = Some(0);
            r.sweep = Some(SweepTag { id: "run-4096".into(), index, values: vec![("M".into(), size.into())] });
            records.push(r);
        }
        let table = sweep_table(&records, tmp.path());
        let rows: Vec<&str> = table.lines().filter(|l| l.starts_with(|c: char| c.is_ascii_digit())).collect();
        assert_eq!(rows.len(), 2, "{table}");
        assert!(rows[0].starts_with("8192") && rows[0].contains("735.2 TFLOP/s"), "the faster rate first: {table}");
        assert!(table.contains("hgemm MS"), "one column for the kernel, whatever the size: {table}");
    }
}
