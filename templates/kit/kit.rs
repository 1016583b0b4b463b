//! The runner kit: the host-side code every `cargo gpu` runner needs, written once. It opens the
//! GPU with errors that say what is missing (driver, device, a cubin for this device, a driver new
//! enough for the cubin), picks and loads the right cubin, makes seeded random inputs, checks
//! results against a reference by relative error with a tolerance suited to the precision, times
//! kernels with CUDA events (warm-up, an L2 flush before every sample, min/median/max), times a
//! baseline the same way for comparison (cuBLASLt for a GEMM, the driver's copy for a streaming
//! kernel), and writes the results as JSON into `CARGO_GPU_OUT`.
//!
//! This one file is the source of truth: `cargo gpu new` writes it as `src/kit.rs` into every
//! project it generates, and the repository's kernels-example includes it by path. It depends on
//! `cudarc` (driver API and cuBLASLt, both loaded at run time) and std only, so a generated project
//! builds on its own.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use cudarc::driver::result::DriverError;
use cudarc::driver::{sys, CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DeviceRepr};
use cudarc::nvrtc::Ptx;

// ---------------------------------------------------------------------------------------------
// Failures and exit codes

/// Why a runner stopped. Each kind has its own exit code so a script can tell them apart.
#[derive(Debug, Clone, PartialEq)]
pub enum Fail {
    /// The kernel ran and its output is wrong (exit 1).
    Check(String),
    /// The command line is wrong (exit 2).
    Usage(String),
    /// The runner could not get as far as running: driver, GPU, cubin, memory (exit 3).
    Setup(String),
    /// A kernel faulted on the GPU: an illegal or misaligned address, an illegal instruction, a
    /// trap or assert, a failed launch (exit 4). The context is lost; a memory checker run on the
    /// same package finds the line (`cargo gpu remote-run` reruns it under compute-sanitizer).
    Fault(String),
}

/// The exit code of a kernel fault ([`Fail::Fault`]).
pub const FAULT_EXIT_CODE: u8 = 4;

impl Fail {
    pub fn exit_code(&self) -> u8 {
        match self {
            Fail::Check(_) => 1,
            Fail::Usage(_) => 2,
            Fail::Setup(_) => 3,
            Fail::Fault(_) => FAULT_EXIT_CODE,
        }
    }
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fail::Check(m) => write!(f, "check failed: {m}"),
            Fail::Usage(m) => write!(f, "{m}"),
            Fail::Setup(m) => write!(f, "{m}"),
            Fail::Fault(m) => write!(f, "kernel fault: {m}"),
        }
    }
}

pub type Result<T> = std::result::Result<T, Fail>;

/// Turns a driver error into a failure that says what was being done: a kernel fault when the
/// error is one a faulting kernel leaves behind ([`is_kernel_fault`]), else a setup failure.
pub fn cu<T>(what: &str, r: std::result::Result<T, DriverError>) -> Result<T> {
    r.map_err(|e| driver_failure(e.0, format!("failed to {what}: {}", driver_error_text(&e))))
}

/// The failure for driver error `code`, said by `text`.
fn driver_failure(code: sys::CUresult, text: String) -> Fail {
    if is_kernel_fault(code) {
        Fail::Fault(text)
    } else {
        Fail::Setup(text)
    }
}

/// The errors a kernel leaves in its context when it faults on the GPU. They are sticky: every
/// later call in the context returns them too, so whichever call reports one, a kernel faulted.
pub fn is_kernel_fault(e: sys::CUresult) -> bool {
    use sys::CUresult::*;
    matches!(
        e,
        CUDA_ERROR_ILLEGAL_ADDRESS
            | CUDA_ERROR_LAUNCH_TIMEOUT
            | CUDA_ERROR_ASSERT
            | CUDA_ERROR_HARDWARE_STACK_ERROR
            | CUDA_ERROR_ILLEGAL_INSTRUCTION
            | CUDA_ERROR_MISALIGNED_ADDRESS
            | CUDA_ERROR_INVALID_ADDRESS_SPACE
            | CUDA_ERROR_INVALID_PC
            | CUDA_ERROR_LAUNCH_FAILED
    )
}

fn driver_error_text(e: &DriverError) -> String {
    let name = e.error_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|_| format!("{:?}", e.0));
    match e.error_string() {
        Ok(s) => format!("{name} ({})", s.to_string_lossy()),
        Err(_) => name,
    }
}

/// Runs a runner's body and maps its outcome to an exit code: 0 pass, 1 wrong output, 2 usage,
/// 3 setup (no driver, no GPU, no cubin), 4 a kernel fault.
pub fn main_with(body: impl FnOnce(Args) -> Result<()>) -> ExitCode {
    finish(body(Args::from_env()))
}

/// Prints a failure and turns the outcome into the exit code (see [`main_with`]).
pub fn finish(outcome: Result<()>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(fail) => {
            eprintln!("error: {fail}");
            ExitCode::from(fail.exit_code())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Command line

/// A small command line: `--key value`, `--key=value`, `--flag` and positional words. The runner
/// says which options take a value and which are flags ([`Args::parse`]), so a flag never swallows
/// the word after it and an unknown option is an error, not silently ignored.
#[derive(Debug, Clone, Default)]
pub struct Args {
    words: Vec<String>,
    pub positional: Vec<String>,
    options: BTreeMap<String, Option<String>>,
}

impl Args {
    pub fn from_env() -> Args {
        Args::new(std::env::args().skip(1))
    }

    pub fn new(words: impl IntoIterator<Item = String>) -> Args {
        Args { words: words.into_iter().collect(), ..Args::default() }
    }

    /// The first word, unparsed (a subcommand, when a runner has them).
    pub fn first_word(&self) -> Option<&str> {
        self.words.first().map(String::as_str)
    }

    /// Removes the first word (after a runner dispatched on it).
    pub fn shift(&mut self) -> Option<String> {
        (!self.words.is_empty()).then(|| self.words.remove(0))
    }

    /// Sorts the words into options and positional words. `values` take a value (`--seed 7` or
    /// `--seed=7`), `flags` do not; `--help` and `-h` are always known.
    pub fn parse(&mut self, values: &[&str], flags: &[&str]) -> Result<()> {
        let known = || {
            let all: Vec<String> = values.iter().chain(flags).map(|k| format!("--{k}")).collect();
            all.join(", ")
        };
        let mut words = self.words.clone().into_iter();
        while let Some(w) = words.next() {
            if w == "-h" || w == "--help" {
                self.options.insert("help".into(), None);
                continue;
            }
            let Some(opt) = w.strip_prefix("--").filter(|o| !o.is_empty()) else {
                self.positional.push(w);
                continue;
            };
            let (key, inline) = match opt.split_once('=') {
                Some((k, v)) => (k, Some(v.to_string())),
                None => (opt, None),
            };
            if values.contains(&key) {
                let value = match inline {
                    Some(v) => v,
                    None => words.next().ok_or_else(|| Fail::Usage(format!("--{key} needs a value")))?,
                };
                self.options.insert(key.to_string(), Some(value));
            } else if flags.contains(&key) {
                if inline.is_some() {
                    return Err(Fail::Usage(format!("--{key} takes no value")));
                }
                self.options.insert(key.to_string(), None);
            } else {
                return Err(Fail::Usage(format!("unknown option --{key} (known: {})", known())));
            }
        }
        Ok(())
    }

    pub fn flag(&self, name: &str) -> bool {
        self.options.contains_key(name)
    }

    /// The value of `--name`, parsed; `None` when absent.
    pub fn get<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>> {
        match self.options.get(name) {
            None => Ok(None),
            Some(None) => Err(Fail::Usage(format!("--{name} needs a value"))),
            Some(Some(v)) => {
                v.parse().map(Some).map_err(|_| Fail::Usage(format!("--{name}: `{v}` is not a valid value")))
            }
        }
    }

    pub fn get_or<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T> {
        Ok(self.get(name)?.unwrap_or(default))
    }

    /// The seed for random inputs: `--seed N`, or fresh from the clock (printed, so a failing run
    /// can be repeated).
    pub fn seed(&self) -> Result<u64> {
        match self.get::<u64>("seed")? {
            Some(s) => Ok(s),
            None => Ok(std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0x5eed)),
        }
    }
}

/// Parses a size such as `4096`, `64Ki`, `256Mi`, `1Gi` (binary multiples) or `1e6`.
pub fn parse_size(s: &str) -> Result<usize> {
    let bad = || Fail::Usage(format!("`{s}` is not a size (examples: 4096, 64Ki, 256Mi, 1Gi)"));
    let (num, mult) = [("Ki", 1usize << 10), ("Mi", 1 << 20), ("Gi", 1 << 30)]
        .iter()
        .find_map(|(suf, m)| s.strip_suffix(suf).map(|n| (n, *m)))
        .unwrap_or((s, 1));
    if let Ok(n) = num.parse::<usize>() {
        return n.checked_mul(mult).ok_or_else(bad);
    }
    let f: f64 = num.parse().map_err(|_| bad())?;
    if f < 0.0 || f.fract() != 0.0 || f * mult as f64 > usize::MAX as f64 {
        return Err(bad());
    }
    Ok((f * mult as f64) as usize)
}

// ---------------------------------------------------------------------------------------------
// Which cubin runs on which device

/// A cubin target as written in file names: `sm_90a` is (9, 0, 'a'), `sm_100f` (10, 0, 'f'),
/// `sm_89` (8, 9, ' ').
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub major: u32,
    pub minor: u32,
    pub variant: char,
}

impl Target {
    pub fn parse(s: &str) -> Option<Target> {
        let digits = s.strip_prefix("sm_")?;
        let (digits, variant) = match digits.chars().last()? {
            c @ ('a' | 'f') => (&digits[..digits.len() - 1], c),
            _ => (digits, ' '),
        };
        if digits.len() < 2 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let (major, minor) = digits.split_at(digits.len() - 1);
        Some(Target { major: major.parse().ok()?, minor: minor.parse().ok()?, variant })
    }

    /// `sm_XYa` runs only on X.Y; `sm_XY` and `sm_XYf` on X.Z with Z >= Y.
    pub fn runs_on(self, cc: (u32, u32)) -> bool {
        match self.variant {
            'a' => cc == (self.major, self.minor),
            _ => cc.0 == self.major && cc.1 >= self.minor,
        }
    }

    /// Where this target runs, for error messages.
    pub fn runs_where(self) -> String {
        match self.variant {
            'a' => format!("runs on {}.{} only", self.major, self.minor),
            _ => format!("runs on {}.{} to {}.9", self.major, self.minor, self.major),
        }
    }

    /// Preference among targets that run: arch-specific, then family, then plain; then the
    /// highest minor (the code made for the newest features the device has).
    fn rank(self) -> (u8, u32) {
        let v = match self.variant {
            'a' => 3,
            'f' => 2,
            _ => 1,
        };
        (v, self.minor)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sm_{}{}", self.major, self.minor)?;
        if self.variant != ' ' {
            write!(f, "{}", self.variant)?;
        }
        Ok(())
    }
}

/// The cubins of kernel `stem` among `file_names` (`<stem>.<target>.cubin`), with their targets.
pub fn cubins_of(file_names: &[String], stem: &str) -> Vec<(String, Target)> {
    let mut found: Vec<(String, Target)> = file_names
        .iter()
        .filter_map(|f| {
            let target = f.strip_prefix(stem)?.strip_prefix('.')?.strip_suffix(".cubin")?;
            Some((f.clone(), Target::parse(target)?))
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// The best cubin of `stem` for a device of compute capability `cc`, by the rules of
/// [`Target::runs_on`] and [`Target::rank`].
pub fn choose_cubin(file_names: &[String], stem: &str, cc: (u32, u32)) -> Option<(String, Target)> {
    cubins_of(file_names, stem).into_iter().filter(|(_, t)| t.runs_on(cc)).max_by_key(|(_, t)| t.rank())
}

/// The folder holding the cubins: `$CARGO_GPU_KERNELS`, else `../kernels` beside the executable
/// (the package layout `bin/<runner>`, `kernels/`), else, for a test binary cargo built
/// (`<target>/<profile>/deps/<name>-<hash>`), the package `cargo gpu build` made beside it
/// (`<target>/gpu/<profile>/<crate>/kernels`).
pub fn kernels_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("CARGO_GPU_KERNELS").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    let exe = std::env::current_exe().map_err(|e| Fail::Setup(format!("failed to find this executable: {e}")))?;
    let exe = exe.canonicalize().unwrap_or(exe);
    let bin = exe.parent().unwrap_or(Path::new("."));
    let beside = bin.parent().unwrap_or(bin).join("kernels");
    if beside.is_dir() || bin.file_name().is_none_or(|n| n != "deps") {
        return Ok(beside);
    }
    let profile_dir = bin.parent().unwrap_or(bin);
    let (Some(profile), Some(target)) = (profile_dir.file_name(), profile_dir.parent()) else { return Ok(beside) };
    Ok(target.join("gpu").join(profile).join(env!("CARGO_PKG_NAME")).join("kernels"))
}

/// For a `#[test]` that launches kernels: the compute capability of the GPU it runs on, or
/// `None` (the test then passes, having said why) when this machine has no NVIDIA driver and the
/// test was not sent to a GPU by `cargo gpu test`, `cargo gpu exec` or a cargo target runner
/// (they set `CARGO_GPU_RUN_ID`). Sent to a GPU, a missing driver or GPU fails the test.
pub fn test_device() -> Option<(u32, u32)> {
    let sent = std::env::var_os("CARGO_GPU_RUN_ID").is_some();
    if !sent && !unsafe { sys::is_culib_present() } {
        eprintln!(
            "skipping: this machine has no NVIDIA driver; run the GPU tests on a GPU with \
             `cargo gpu test --remote NAME`"
        );
        return None;
    }
    match Gpu::open() {
        Ok(gpu) => Some(gpu.cc),
        Err(e) => panic!("{e}"),
    }
}

/// The CUDA version the package's cubins need from the driver, from the package manifest beside
/// the kernels folder (`min-driver-cuda`, else the `nvcc-version` that built them): it tells a
/// driver too old for the cubins apart from a plain bad file.
fn package_cuda_requirement(kernels: &Path) -> Option<(u32, u32)> {
    manifest_cuda_requirement(&std::fs::read_to_string(kernels.parent()?.join("manifest.toml")).ok()?)
}

pub fn manifest_cuda_requirement(manifest: &str) -> Option<(u32, u32)> {
    let value_of = |key: &str| {
        let line = manifest.lines().find(|l| l.split('=').next().map(str::trim) == Some(key))?;
        let v = line.split('"').nth(1)?;
        let mut parts = v.split('.');
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    };
    value_of("min-driver-cuda").or_else(|| value_of("nvcc-version"))
}

// ---------------------------------------------------------------------------------------------
// The device

/// One GPU, opened: its context and stream, what it is, and where its cubins are.
pub struct Gpu {
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    pub name: String,
    pub cc: (u32, u32),
    /// The driver's CUDA version, as (major, minor).
    pub driver_cuda: (u32, u32),
    pub kernels_dir: PathBuf,
    /// Cubins loaded so far, by stem: what the report says ran.
    pub loaded: Vec<String>,
    flush: Option<CudaSlice<u8>>,
}

impl Gpu {
    /// Opens GPU `$CARGO_GPU_DEVICE` (default 0), saying clearly when there is no driver or no GPU.
    pub fn open() -> Result<Gpu> {
        // cudarc panics on the first driver call when libcuda cannot be loaded: ask first.
        if !unsafe { sys::is_culib_present() } {
            return Err(Fail::Setup(
                "no NVIDIA driver: libcuda.so could not be loaded (install the NVIDIA driver, or run on the GPU \
                 machine with `cargo gpu remote-run`)"
                    .into(),
            ));
        }
        if let Err(e) = cudarc::driver::result::init() {
            return Err(Fail::Setup(match e.0 {
                sys::CUresult::CUDA_ERROR_NO_DEVICE => "no GPU: the NVIDIA driver is loaded but sees no CUDA device \
                    (check nvidia-smi and CUDA_VISIBLE_DEVICES)"
                    .into(),
                sys::CUresult::CUDA_ERROR_SYSTEM_DRIVER_MISMATCH => "the NVIDIA kernel module and libcuda.so are from \
                    different driver versions (reboot after a driver update, or reinstall the driver)"
                    .into(),
                _ => format!("failed to initialize the CUDA driver: {}", driver_error_text(&e)),
            }));
        }
        let count = cu("count the GPUs", CudaContext::device_count())?;
        if count == 0 {
            return Err(Fail::Setup("no GPU: the NVIDIA driver sees no CUDA device".into()));
        }
        let ordinal: usize = match std::env::var("CARGO_GPU_DEVICE") {
            Ok(v) => v.parse().map_err(|_| Fail::Usage(format!("CARGO_GPU_DEVICE=`{v}` is not a device number")))?,
            Err(_) => 0,
        };
        if ordinal >= count as usize {
            return Err(Fail::Setup(format!("no GPU {ordinal}: the driver sees {count}")));
        }
        let ctx = cu("create a CUDA context", CudaContext::new(ordinal))?;
        let stream = ctx.default_stream();
        let name = cu("read the GPU name", ctx.name())?;
        let (major, minor) = cu("read the compute capability", ctx.compute_capability())?;
        let mut v: std::ffi::c_int = 0;
        cu("read the driver version", unsafe { sys::cuDriverGetVersion(&mut v) }.result())?;
        let driver_cuda = ((v / 1000) as u32, ((v % 1000) / 10) as u32);
        Ok(Gpu {
            ctx,
            stream,
            name,
            cc: (major as u32, minor as u32),
            driver_cuda,
            kernels_dir: kernels_dir()?,
            loaded: Vec::new(),
            flush: None,
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "{} (compute capability {}.{}, driver CUDA {}.{})",
            self.name, self.cc.0, self.cc.1, self.driver_cuda.0, self.driver_cuda.1
        )
    }

    /// Loads the cubin of kernel `stem` made for this device.
    pub fn load(&mut self, stem: &str) -> Result<Arc<CudaModule>> {
        let dir = &self.kernels_dir;
        let names: Vec<String> = std::fs::read_dir(dir)
            .map_err(|e| {
                Fail::Setup(format!(
                    "failed to read the kernels folder {}: {e} (set CARGO_GPU_KERNELS, or run the runner from its \
                     package, where kernels/ is beside bin/)",
                    dir.display()
                ))
            })?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        let Some((file, target)) = choose_cubin(&names, stem, self.cc) else {
            let have = cubins_of(&names, stem);
            let (major, minor) = self.cc;
            let listing = if have.is_empty() {
                format!("there is no {stem}.*.cubin in {}", dir.display())
            } else {
                let each: Vec<String> = have.iter().map(|(f, t)| format!("{f} ({})", t.runs_where())).collect();
                format!("found {}", each.join(", "))
            };
            return Err(Fail::Setup(format!(
                "no cubin of `{stem}` runs on this GPU, {} (compute capability {major}.{minor}): {listing}; build \
                 with `cargo gpu build --target sm_{major}{minor}a` (or sm_{major}{minor})",
                self.name
            )));
        };
        let path = dir.join(&file);
        let bytes = std::fs::read(&path).map_err(|e| Fail::Setup(format!("failed to read {}: {e}", path.display())))?;
        let module = self.ctx.load_module(Ptx::from_binary(bytes)).map_err(|e| {
            let newer = package_cuda_requirement(dir).filter(|need| *need > self.driver_cuda);
            Fail::Setup(match newer {
                Some((a, b)) => format!(
                    "failed to load {} ({target}): its toolkit needs a driver for CUDA {a}.{b} or newer, and this \
                     driver supports CUDA {}.{}; update the driver or build with a CUDA {}.{} toolkit ({})",
                    path.display(),
                    self.driver_cuda.0,
                    self.driver_cuda.1,
                    self.driver_cuda.0,
                    self.driver_cuda.1,
                    driver_error_text(&e)
                ),
                None => format!("failed to load {} ({target}): {}", path.display(), driver_error_text(&e)),
            })
        })?;
        println!("loaded {file} on {}", self.describe());
        self.loaded.push(file);
        Ok(module)
    }

    /// Loads `stem`'s cubin and returns its function `name`.
    pub fn function(&mut self, stem: &str, name: &str) -> Result<CudaFunction> {
        let module = self.load(stem)?;
        cu(&format!("find kernel `{name}` in {stem}"), module.load_function(name))
    }

    /// Device memory holding `data`.
    pub fn upload<T: DeviceRepr>(&self, data: &[T]) -> Result<CudaSlice<T>> {
        cu("copy inputs to the GPU", self.stream.clone_htod(data))
    }

    /// Device memory for `n` results, filled with all-ones bytes (NaN as f32 and bf16) so that an
    /// element the kernel never writes fails the check.
    pub fn poisoned<T: DeviceRepr>(&self, n: usize) -> Result<CudaSlice<T>> {
        let mut out = cu("allocate the output", unsafe { self.stream.alloc::<T>(n) })?;
        self.poison(&mut out)?;
        Ok(out)
    }

    /// Fills `out` with all-ones bytes again (before each checked run).
    pub fn poison<T: DeviceRepr>(&self, out: &mut CudaSlice<T>) -> Result<()> {
        use cudarc::driver::DevicePtrMut;
        let bytes = out.len() * std::mem::size_of::<T>();
        let (ptr, _sync) = out.device_ptr_mut(&self.stream);
        cu("fill the output with NaN", unsafe {
            cudarc::driver::result::memset_d8_async(ptr, 0xff, bytes, self.stream.cu_stream())
        })
    }

    pub fn download<T: DeviceRepr + Default + Clone>(&self, data: &CudaSlice<T>) -> Result<Vec<T>> {
        cu("copy results from the GPU", self.stream.clone_dtoh(data))
    }

    /// The number of SMs: a persistent or grid-stride kernel's grid is a multiple of it.
    pub fn sm_count(&self) -> Result<usize> {
        let sms = cu(
            "read the number of SMs",
            self.ctx.attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT),
        )?;
        Ok(sms.max(1) as usize)
    }

    pub fn sync(&self) -> Result<()> {
        cu("run the kernel", self.stream.synchronize())
    }

    /// Writes over a buffer twice the L2 size, so the next sample starts with a cold L2.
    fn flush_l2(&mut self) -> Result<()> {
        if self.flush.is_none() {
            let l2 =
                cu("read the L2 size", self.ctx.attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE))?;
            let bytes = (l2.max(1 << 20) as usize) * 2;
            self.flush = Some(cu("allocate the L2 flush buffer", self.stream.alloc_zeros::<u8>(bytes))?);
        }
        let buf = self.flush.as_mut().expect("allocated above");
        cu("flush the L2", self.stream.memset_zeros(buf))
    }

    /// Times `launch` (which enqueues one run of the kernel on [`Gpu::stream`]) with CUDA events:
    /// warm-up first, then samples each preceded by an L2 flush, until there are enough for a
    /// stable median.
    pub fn time(&mut self, opts: &TimeOptions, mut launch: impl FnMut(&Gpu) -> Result<()>) -> Result<Timing> {
        let timing_event = Some(sys::CUevent_flags::CU_EVENT_DEFAULT);
        // Warm-up: module loading, clocks, TLBs. At least `warmup` runs and `warmup_ms` of work.
        let start = std::time::Instant::now();
        let mut runs = 0;
        while runs < opts.warmup || (start.elapsed().as_secs_f64() * 1e3 < opts.warmup_ms && runs < 1000) {
            launch(self)?;
            self.sync()?;
            runs += 1;
        }
        let mut samples = Vec::new();
        let mut total_ms = 0.0;
        while samples.len() < opts.min_samples || (total_ms < opts.target_ms && samples.len() < opts.max_samples) {
            let batch = 8.min(opts.max_samples - samples.len()).max(1);
            let mut events = Vec::with_capacity(batch);
            for _ in 0..batch {
                if opts.flush_l2 {
                    self.flush_l2()?;
                }
                let t0 = cu("record an event", self.stream.record_event(timing_event))?;
                launch(self)?;
                let t1 = cu("record an event", self.stream.record_event(timing_event))?;
                events.push((t0, t1));
            }
            self.sync()?;
            for (t0, t1) in events {
                let ms = cu("read an event time", t0.elapsed_ms(&t1))? as f64;
                total_ms += ms;
                samples.push(ms);
            }
        }
        Ok(Timing::from_samples(samples))
    }
}

// ---------------------------------------------------------------------------------------------
// Inputs

/// A small, seeded, fast generator (SplitMix64): the same seed gives the same inputs everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    pub fn next_f32(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32) * (2.0 / (1u64 << 24) as f32) - 1.0
    }

    pub fn f32s(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next_f32()).collect()
    }

    /// Uniform bf16 values in [-1, 1] (rounding may reach 1), as their bit patterns.
    pub fn bf16s(&mut self, n: usize) -> Vec<u16> {
        (0..n).map(|_| bf16_from_f32(self.next_f32())).collect()
    }
}

/// Rounds to the nearest bf16 (ties to even); NaN stays NaN.
pub fn bf16_from_f32(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) as u16) | 0x0040;
    }
    let round = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(round) >> 16) as u16
}

pub fn f32_from_bf16(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

// ---------------------------------------------------------------------------------------------
// TMA descriptors, for the GEMM runners

/// A TMA descriptor, passed to the kernel by value as a `__grid_constant__` parameter.
#[repr(transparent)]
#[derive(Clone, Copy)]
pub struct TensorMap(pub sys::CUtensorMap);

// Safety: a plain 128-byte, 128-aligned struct that the kernel reads as a CUtensorMap.
unsafe impl DeviceRepr for TensorMap {}

/// A TMA descriptor for a row-major `rows x cols` bf16 matrix, loaded in boxes of
/// `box_rows x box_cols` with the 128-byte swizzle (the layout wgmma's and tcgen05's
/// shared-memory descriptors describe); out-of-bounds elements read as zero.
pub fn tensor_map_bf16(
    gpu: &Gpu,
    mem: &CudaSlice<u16>,
    rows: usize,
    cols: usize,
    box_rows: u32,
    box_cols: u32,
) -> Result<TensorMap> {
    tensor_map(gpu, mem, sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, rows, cols, box_rows, box_cols)
}

/// A TMA descriptor for a row-major `rows x cols` matrix of `T` (whose TMA type is `data_type`)
/// in boxes of `box_rows x box_cols`, with the 128-byte swizzle.
pub fn tensor_map<T>(
    gpu: &Gpu,
    mem: &CudaSlice<T>,
    data_type: sys::CUtensorMapDataType,
    rows: usize,
    cols: usize,
    box_rows: u32,
    box_cols: u32,
) -> Result<TensorMap> {
    use cudarc::driver::DevicePtr;
    let (ptr, _sync) = mem.device_ptr(&gpu.stream);
    let dims: [u64; 2] = [cols as u64, rows as u64];
    let strides: [u64; 1] = [(cols * std::mem::size_of::<T>()) as u64];
    let boxes: [u32; 2] = [box_cols, box_rows];
    let element_strides: [u32; 2] = [1, 1];
    let mut map = std::mem::MaybeUninit::<sys::CUtensorMap>::zeroed();
    // Safety: every pointer is to a live local array of the length the call reads.
    let r = unsafe {
        sys::cuTensorMapEncodeTiled(
            map.as_mut_ptr(),
            data_type,
            2,
            ptr as *mut std::ffi::c_void,
            dims.as_ptr(),
            strides.as_ptr(),
            boxes.as_ptr(),
            element_strides.as_ptr(),
            sys::CUtensorMapInterleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
            sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_128B,
            sys::CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
            sys::CUtensorMapFloatOOBfill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
        )
        .result()
    };
    cu(&format!("encode the TMA descriptor of a {rows}x{cols} matrix"), r)?;
    // Safety: initialized by the successful call above.
    Ok(TensorMap(unsafe { map.assume_init() }))
}

// ---------------------------------------------------------------------------------------------
// Checking

/// The precision a kernel computes in, which sets how far from the reference it may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Fp32,
    /// fp32 data through tensor cores with 10-bit mantissas.
    Tf32,
    /// bf16 inputs (8-bit mantissas); accumulation in fp32.
    Bf16,
}

impl Precision {
    /// Largest relative error accepted: a few units in the last place of the inputs' format,
    /// with room for a different summation order.
    pub fn tolerance(self) -> f64 {
        match self {
            Precision::Fp32 => 1e-5,
            Precision::Tf32 => 5e-3,
            Precision::Bf16 => 2e-2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Tf32 => "tf32",
            Precision::Bf16 => "bf16",
        }
    }
}

/// One compared element.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Element {
    pub index: usize,
    pub got: f32,
    pub want: f32,
    /// |got - want| / max(|want|, scale); infinite when either is not finite.
    pub rel: f64,
}

/// The outcome of comparing a result with its reference.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub precision: Precision,
    pub tolerance: f64,
    pub checked: usize,
    pub failures: usize,
    /// The first element over the tolerance (or not finite), in the order compared.
    pub first_failure: Option<Element>,
    /// The element with the largest relative error (a non-finite one wins).
    pub worst: Option<Element>,
    /// The magnitude below which errors are measured against it instead of the element: the
    /// reference's root mean square, so that elements near zero do not make every error huge.
    pub scale: f64,
    /// When set, indices print as `[row, col]` of a matrix with this many columns.
    pub cols: Option<usize>,
}

/// Compares `got` with `want` element by element.
pub fn compare(got: &[f32], want: &[f32], precision: Precision) -> Comparison {
    assert_eq!(got.len(), want.len(), "result and reference differ in length");
    compare_pairs(got.iter().zip(want).enumerate().map(|(i, (g, w))| (i, *g, *w)), precision)
}

/// Compares `(index, got, want)` triples, such as a sample of a large result.
pub fn compare_pairs(pairs: impl IntoIterator<Item = (usize, f32, f32)>, precision: Precision) -> Comparison {
    let pairs: Vec<(usize, f32, f32)> = pairs.into_iter().collect();
    let finite: Vec<f64> = pairs.iter().map(|p| p.2 as f64).filter(|w| w.is_finite()).collect();
    let scale =
        if finite.is_empty() { 0.0 } else { (finite.iter().map(|w| w * w).sum::<f64>() / finite.len() as f64).sqrt() };
    let tolerance = precision.tolerance();
    let mut c = Comparison {
        precision,
        tolerance,
        checked: pairs.len(),
        failures: 0,
        first_failure: None,
        worst: None,
        scale,
        cols: None,
    };
    for (index, got, want) in pairs {
        let rel = if got.is_finite() && want.is_finite() {
            let denom = (want.abs() as f64).max(scale).max(f64::MIN_POSITIVE);
            (got as f64 - want as f64).abs() / denom
        } else {
            f64::INFINITY
        };
        let e = Element { index, got, want, rel };
        // Spelled out so that a NaN error could never pass.
        if rel.is_nan() || rel > tolerance {
            c.failures += 1;
            if c.first_failure.is_none() {
                c.first_failure = Some(e);
            }
        }
        match c.worst {
            Some(w) if w.rel >= rel => {}
            _ => c.worst = Some(e),
        }
    }
    c
}

impl Comparison {
    pub fn passed(&self) -> bool {
        self.failures == 0 && self.checked > 0
    }

    pub fn with_cols(mut self, cols: usize) -> Comparison {
        self.cols = Some(cols);
        self
    }

    fn at(&self, index: usize) -> String {
        match self.cols {
            Some(c) if c > 0 => format!("[{}, {}]", index / c, index % c),
            _ => format!("[{index}]"),
        }
    }

    fn element(&self, e: &Element) -> String {
        format!("{}: got {:e}, want {:e} (relative error {:.3e})", self.at(e.index), e.got, e.want, e.rel)
    }

    /// One line: what was compared and how it went, naming the worst element.
    pub fn summary(&self) -> String {
        let head = format!(
            "{} element{} checked, {} tolerance {:.0e}",
            self.checked,
            if self.checked == 1 { "" } else { "s" },
            self.precision.name(),
            self.tolerance
        );
        if self.checked == 0 {
            return format!("{head}: nothing was compared");
        }
        let worst = self.worst.as_ref().map(|w| format!("worst at {}", self.element(w))).unwrap_or_default();
        match &self.first_failure {
            None => format!("PASS {head}; {worst}"),
            Some(f) => format!("FAIL {head}: {} wrong, first at {}; {worst}", self.failures, self.element(f)),
        }
    }

    /// Prints the summary and turns a failure into [`Fail::Check`].
    pub fn check(&self, what: &str) -> Result<()> {
        println!("check {what}: {}", self.summary());
        if self.passed() {
            Ok(())
        } else {
            Err(Fail::Check(format!("{what}: {}", self.summary())))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// GEMM sizes and references

/// Below this many multiply-adds a GEMM check compares every element.
pub const GEMM_FULL_CHECK_MACS: usize = 1 << 30;
/// Random elements a large GEMM check compares, besides the edges.
pub const GEMM_SAMPLES: usize = 4096;

/// A GEMM size written `MxNxK`.
pub fn parse_shape(s: &str) -> Result<(usize, usize, usize)> {
    let dims: Vec<usize> = s.split(['x', 'X']).map(parse_size).collect::<Result<_>>()?;
    match dims.as_slice() {
        [m, n, k] if *m > 0 && *n > 0 && *k > 0 => Ok((*m, *n, *k)),
        _ => Err(Fail::Usage(format!("`{s}` is not a GEMM size MxNxK with M, N, K >= 1"))),
    }
}

/// The elements of an M x N GEMM result to check: all of them for small problems; otherwise the
/// last row, the last column, the corners of the first `tile` and random elements.
pub fn gemm_check_indices(m: usize, n: usize, k: usize, tile: (usize, usize), full: bool, rng: &mut Rng) -> Vec<usize> {
    if full || m * n * k <= GEMM_FULL_CHECK_MACS {
        return (0..m * n).collect();
    }
    let mut idx: Vec<usize> = Vec::new();
    let step_n = n.div_ceil(256).max(1);
    let step_m = m.div_ceil(256).max(1);
    idx.extend((0..n).step_by(step_n).map(|j| (m - 1) * n + j));
    idx.push(m * n - 1);
    idx.extend((0..m).step_by(step_m).map(|i| i * n + n - 1));
    let (bm, bn) = tile;
    for (i, j) in [(0, 0), (bm - 1, bn - 1), (bm, bn), (bm - 1, bn)] {
        if i < m && j < n {
            idx.push(i * n + j);
        }
    }
    idx.extend((0..GEMM_SAMPLES).map(|_| (rng.next_u64() % (m * n) as u64) as usize));
    idx.sort_unstable();
    idx.dedup();
    idx
}

/// The reference for the chosen elements of C = A * B^T (A M x K, B N x K, both row-major),
/// summed in f64, on every CPU core.
pub fn gemm_reference_bt(a: &[f32], b: &[f32], n: usize, k: usize, indices: &[usize]) -> Vec<f32> {
    let threads = std::thread::available_parallelism().map(|t| t.get()).unwrap_or(1);
    let chunk = indices.len().div_ceil(threads).max(1);
    let mut out = vec![0.0f32; indices.len()];
    std::thread::scope(|s| {
        for (idx, res) in indices.chunks(chunk).zip(out.chunks_mut(chunk)) {
            s.spawn(move || {
                for (i, r) in idx.iter().zip(res.iter_mut()) {
                    let (row, col) = (i / n, i % n);
                    let (ar, br) = (&a[row * k..(row + 1) * k], &b[col * k..(col + 1) * k]);
                    *r = ar.iter().zip(br).map(|(x, y)| *x as f64 * *y as f64).sum::<f64>() as f32;
                }
            });
        }
    });
    out
}

// ---------------------------------------------------------------------------------------------
// Timing

#[derive(Debug, Clone)]
pub struct TimeOptions {
    /// Untimed runs before the first sample (at least this many and `warmup_ms` of work).
    pub warmup: usize,
    pub warmup_ms: f64,
    pub min_samples: usize,
    pub max_samples: usize,
    /// Keep sampling (up to `max_samples`) until this much kernel time was measured.
    pub target_ms: f64,
    pub flush_l2: bool,
}

impl Default for TimeOptions {
    fn default() -> TimeOptions {
        TimeOptions { warmup: 3, warmup_ms: 50.0, min_samples: 20, max_samples: 500, target_ms: 500.0, flush_l2: true }
    }
}

impl TimeOptions {
    /// Reads `--samples N` (exactly N samples) and `--no-flush` from the command line.
    pub fn from_args(args: &Args) -> Result<TimeOptions> {
        let mut o = TimeOptions::default();
        if let Some(n) = args.get::<usize>("samples")? {
            if n == 0 {
                return Err(Fail::Usage("--samples must be at least 1".into()));
            }
            o.min_samples = n;
            o.max_samples = n;
        }
        o.flush_l2 = !args.flag("no-flush");
        Ok(o)
    }
}

/// Kernel times in milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    pub samples_ms: Vec<f64>,
    pub min_ms: f64,
    pub median_ms: f64,
    pub max_ms: f64,
}

impl Timing {
    pub fn from_samples(samples_ms: Vec<f64>) -> Timing {
        let mut s = samples_ms.clone();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = match n {
            0 => f64::NAN,
            _ if n % 2 == 1 => s[n / 2],
            _ => (s[n / 2 - 1] + s[n / 2]) / 2.0,
        };
        Timing {
            min_ms: s.first().copied().unwrap_or(f64::NAN),
            max_ms: s.last().copied().unwrap_or(f64::NAN),
            median_ms: median,
            samples_ms,
        }
    }
}

/// The work one kernel run does, to turn a time into a rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Work {
    /// Floating-point operations (a multiply-add counts 2).
    Flops(f64),
    /// Bytes read and written in device memory.
    Bytes(f64),
    None,
}

impl Work {
    /// The achieved rate at `ms` per run: TFLOP/s or GB/s.
    pub fn rate(self, ms: f64) -> Option<(f64, &'static str)> {
        match self {
            Work::Flops(f) => Some((f / (ms * 1e-3) / 1e12, "TFLOP/s")),
            Work::Bytes(b) => Some((b / (ms * 1e-3) / 1e9, "GB/s")),
            Work::None => None,
        }
    }
}

/// Prints one line: the times and the achieved rate.
pub fn print_timing(what: &str, t: &Timing, work: Work) {
    let rate = work.rate(t.median_ms).map(|(r, unit)| format!(", {r:.1} {unit}")).unwrap_or_default();
    println!(
        "time {what}: median {:.4} ms (min {:.4}, max {:.4}, {} samples){rate}",
        t.median_ms,
        t.min_ms,
        t.max_ms,
        t.samples_ms.len()
    );
}

// ---------------------------------------------------------------------------------------------
// Results as JSON

/// A JSON value, written by hand so that the kit needs no serializer.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Num(n) if n.is_finite() => {
                let _ = write!(out, "{n}");
            }
            // JSON has no NaN or infinity.
            Json::Num(_) => out.push_str("null"),
            Json::Str(s) => {
                out.push('"');
                for c in s.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        '\n' => out.push_str("\\n"),
                        c if (c as u32) < 0x20 => {
                            let _ = write!(out, "\\u{:04x}", c as u32);
                        }
                        c => out.push(c),
                    }
                }
                out.push('"');
            }
            Json::Arr(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write(out);
                }
                out.push(']');
            }
            Json::Obj(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    Json::Str(k.clone()).write(out);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        self.write(&mut s);
        f.write_str(&s)
    }
}

impl From<&str> for Json {
    fn from(s: &str) -> Json {
        Json::Str(s.to_string())
    }
}
impl From<String> for Json {
    fn from(s: String) -> Json {
        Json::Str(s)
    }
}
impl From<f64> for Json {
    fn from(n: f64) -> Json {
        Json::Num(n)
    }
}
impl From<usize> for Json {
    fn from(n: usize) -> Json {
        Json::Num(n as f64)
    }
}
impl From<u64> for Json {
    fn from(n: u64) -> Json {
        // Seeds and other large integers would lose digits as f64: keep them exact as text.
        if n < (1u64 << 53) {
            Json::Num(n as f64)
        } else {
            Json::Str(n.to_string())
        }
    }
}
impl From<bool> for Json {
    fn from(b: bool) -> Json {
        Json::Bool(b)
    }
}

/// A check as recorded in a report: passed or not, the tolerance, the first wrong and the worst
/// element.
pub fn check_json(c: &Comparison) -> Json {
    let elem = |e: &Option<Element>| match e {
        Some(e) => Json::Obj(vec![
            ("index".into(), e.index.into()),
            ("got".into(), (e.got as f64).into()),
            ("want".into(), (e.want as f64).into()),
            ("rel".into(), e.rel.into()),
        ]),
        None => Json::Null,
    };
    Json::Obj(vec![
        ("passed".into(), c.passed().into()),
        ("precision".into(), c.precision.name().into()),
        ("tolerance".into(), c.tolerance.into()),
        ("checked".into(), c.checked.into()),
        ("failures".into(), c.failures.into()),
        ("first_failure".into(), elem(&c.first_failure)),
        ("worst".into(), elem(&c.worst)),
    ])
}

/// A timing as recorded in a report: the median, min and max, the samples, the work and the rate.
pub fn timing_fields(t: &Timing, work: Work) -> Vec<(String, Json)> {
    let mut fields: Vec<(String, Json)> = vec![
        ("median_ms".into(), t.median_ms.into()),
        ("min_ms".into(), t.min_ms.into()),
        ("max_ms".into(), t.max_ms.into()),
        ("samples".into(), t.samples_ms.len().into()),
        ("samples_ms".into(), Json::Arr(t.samples_ms.iter().map(|s| Json::Num(*s)).collect())),
    ];
    match work {
        Work::Flops(f) => fields.push(("flops".into(), f.into())),
        Work::Bytes(b) => fields.push(("bytes".into(), b.into())),
        Work::None => {}
    }
    if let Some((r, unit)) = work.rate(t.median_ms) {
        let key = if unit == "TFLOP/s" { "tflops" } else { "gbps" };
        fields.push((key.into(), r.into()));
    }
    fields
}

/// One result file: what ran where, with which inputs, how it checked and how fast it was.
#[derive(Debug, Clone)]
pub struct Report {
    pub name: String,
    pub fields: Vec<(String, Json)>,
}

impl Report {
    pub fn new(name: &str, gpu: &Gpu) -> Report {
        let mut r = Report { name: name.to_string(), fields: Vec::new() };
        r.set("name", name);
        r.set("gpu", gpu.name.as_str());
        r.set("compute_capability", format!("{}.{}", gpu.cc.0, gpu.cc.1));
        r.set("driver_cuda", format!("{}.{}", gpu.driver_cuda.0, gpu.driver_cuda.1));
        r.set("cubins", Json::Arr(gpu.loaded.iter().map(|c| Json::from(c.as_str())).collect()));
        r
    }

    pub fn set(&mut self, key: &str, value: impl Into<Json>) {
        let value = value.into();
        match self.fields.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.fields.push((key.to_string(), value)),
        }
    }

    pub fn check(&mut self, c: &Comparison) {
        self.set("check", check_json(c));
    }

    pub fn timing(&mut self, t: &Timing, work: Work) {
        self.set("timing", Json::Obj(timing_fields(t, work)));
    }

    pub fn to_json(&self) -> String {
        Json::Obj(self.fields.clone()).to_string()
    }

    /// Writes `$CARGO_GPU_OUT/<name>.json`; without `CARGO_GPU_OUT` it writes nothing and says so.
    pub fn write(&self) -> Result<Option<PathBuf>> {
        let Some(dir) = std::env::var_os("CARGO_GPU_OUT").filter(|d| !d.is_empty()) else {
            println!("results not written: CARGO_GPU_OUT is not set");
            return Ok(None);
        };
        let dir = PathBuf::from(dir);
        let safe: String =
            self.name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
        let path = dir.join(format!("{safe}.json"));
        std::fs::create_dir_all(&dir)
            .and_then(|_| std::fs::write(&path, self.to_json() + "\n"))
            .map_err(|e| Fail::Setup(format!("failed to write {}: {e}", path.display())))?;
        println!("results written to {}", path.display());
        Ok(Some(path))
    }
}

// ---------------------------------------------------------------------------------------------
// Baselines

/// What a kernel is measured against: the standard way to do the same work (cuBLASLt for a GEMM,
/// the driver's device-to-device copy for a streaming kernel), timed by the same [`Gpu::time`] on
/// the same stream (warm-up, an L2 flush before every sample, the median), so that the ratio says
/// how close the kernel comes to what the hardware is known to reach.
#[derive(Debug, Clone, Copy)]
pub struct Baseline<'a> {
    /// What ran, as printed and recorded: `cuBLASLt (fp32 C)`, `copy (cuMemcpyDtoDAsync)`.
    pub name: &'a str,
    /// Its name in the ratio: `cuBLAS` prints `ours/cuBLAS 0.96`.
    pub short: &'a str,
    /// The check of the baseline's own result, when it computes one.
    pub check: Option<&'a Comparison>,
}

impl Baseline<'_> {
    /// Times `launch` (one run of the baseline, enqueued on [`Gpu::stream`]) exactly as the kernel
    /// was timed, prints [`Baseline::line`] and records [`Baseline::json`] as `baseline` in
    /// `report`. `ours` is the kernel's timing with `opts`; `work` is what each run does, the
    /// same for both.
    pub fn time(
        &self,
        gpu: &mut Gpu,
        opts: &TimeOptions,
        ours: &Timing,
        work: Work,
        report: &mut Report,
        launch: impl FnMut(&Gpu) -> Result<()>,
    ) -> Result<Timing> {
        let theirs = gpu.time(opts, launch)?;
        println!("{}", self.line(&theirs, ours, work));
        report.set("baseline", self.json(&theirs, ours, work));
        Ok(theirs)
    }

    /// `  vs cuBLASLt (fp32 C): 1.567 ms, 701.7 TFLOP/s; ours/cuBLAS 0.96`: the baseline's median
    /// time and rate, then ours over its rate (above 1: the kernel is faster).
    pub fn line(&self, theirs: &Timing, ours: &Timing, work: Work) -> String {
        let rate = work.rate(theirs.median_ms).map(|(r, unit)| format!(", {r:.1} {unit}")).unwrap_or_default();
        format!(
            "  vs {}: {:.3} ms{rate}; ours/{} {:.2}",
            self.name,
            theirs.median_ms,
            self.short,
            ours_over(ours, theirs)
        )
    }

    /// The report's `baseline`: its name, its timing as [`timing_fields`] writes the kernel's,
    /// `ours_over_baseline` and its check when it has one.
    pub fn json(&self, theirs: &Timing, ours: &Timing, work: Work) -> Json {
        let mut fields: Vec<(String, Json)> = vec![("name".into(), self.name.into())];
        fields.extend(timing_fields(theirs, work));
        fields.push(("ours_over_baseline".into(), ours_over(ours, theirs).into()));
        if let Some(c) = self.check {
            fields.push(("check".into(), check_json(c)));
        }
        Json::Obj(fields)
    }
}

/// Our rate over the baseline's for the same work: its median time over ours. Above 1 the kernel
/// is faster.
pub fn ours_over(ours: &Timing, theirs: &Timing) -> f64 {
    theirs.median_ms / ours.median_ms
}

// ---------------------------------------------------------------------------------------------
// cuBLASLt, the GEMM baseline

/// The file names of cuBLASLt the kit looks for, by preference: the major version its bindings
/// are for (cudarc's `cuda-13000`), then the previous one, whose API the kit's calls share.
pub const CUBLASLT_FILES: [&str; 2] = ["libcublasLt.so.13", "libcublasLt.so.12"];

/// Said once, when `--vs-cublas` finds no cuBLASLt; the run goes on without the baseline.
pub const CUBLASLT_MISSING: &str = "cuBLASLt not found (libcublasLt.so.13): --vs-cublas skipped; install the CUDA \
                                    toolkit's libcublas or set LD_LIBRARY_PATH";

/// The workspace cuBLASLt may use, allocated once: NVIDIA's recommendation for Hopper and later,
/// and what PyTorch gives it there.
pub const CUBLASLT_WORKSPACE_BYTES: usize = 32 << 20;

/// The folders searched for cuBLASLt when the dynamic loader does not find it by name: the
/// toolkit's under `$CUDA_HOME` and `$CUDA_PATH` (`lib64`, and `lib` as NVIDIA's pip wheels lay
/// it out), then `/usr/local/cuda`'s. `var` reads the environment, `arch` is
/// `std::env::consts::ARCH`.
pub fn cublaslt_dirs(var: impl Fn(&str) -> Option<String>, arch: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for key in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(root) = var(key).filter(|r| !r.is_empty()) {
            dirs.push(Path::new(&root).join("lib64"));
            dirs.push(Path::new(&root).join("lib"));
        }
    }
    dirs.push("/usr/local/cuda/lib64".into());
    // The toolkit names its aarch64 server libraries `sbsa-linux` and its Jetson ones `aarch64-linux`.
    let triples: &[&str] = if arch == "aarch64" { &["sbsa", "aarch64"] } else { &[arch] };
    dirs.extend(triples.iter().map(|t| PathBuf::from(format!("/usr/local/cuda/targets/{t}-linux/lib"))));
    let mut seen = Vec::new();
    dirs.retain(|d| {
        !seen.contains(d) && {
            seen.push(d.clone());
            true
        }
    });
    dirs
}

/// The files to try, in order: `$CARGO_GPU_CUBLASLT` (a path to the library) when set, then each
/// of [`CUBLASLT_FILES`] in each of `dirs`, the newer version first.
pub fn cublaslt_candidates(explicit: Option<String>, dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = explicit.filter(|p| !p.is_empty()).map(PathBuf::from).into_iter().collect();
    files.extend(CUBLASLT_FILES.iter().flat_map(|f| dirs.iter().map(move |d| d.join(f))));
    files
}

/// Opens a shared library by path for the whole process (`RTLD_NOW | RTLD_GLOBAL`), so that a
/// later open by its soname, cudarc's, finds the copy already loaded. The handle is never closed.
#[cfg(target_os = "linux")]
fn dlopen_global(path: &Path) -> bool {
    use std::ffi::{c_char, c_int, c_void, CString};
    use std::os::unix::ffi::OsStrExt;
    extern "C" {
        fn dlopen(filename: *const c_char, flags: c_int) -> *mut c_void;
    }
    const RTLD_NOW: c_int = 0x2;
    const RTLD_GLOBAL: c_int = 0x100;
    let Ok(name) = CString::new(path.as_os_str().as_bytes()) else { return false };
    // Safety: a valid NUL-terminated path; dlopen has no other precondition.
    !unsafe { dlopen(name.as_ptr(), RTLD_NOW | RTLD_GLOBAL) }.is_null()
}

#[cfg(not(target_os = "linux"))]
fn dlopen_global(_path: &Path) -> bool {
    false
}

/// Makes cuBLASLt loadable by cudarc, which panics on its first call when the library is missing:
/// found by name (`LD_LIBRARY_PATH`, the loader's cache), or else opened by path from
/// [`cublaslt_candidates`]. Says where it came from, or `None`.
fn find_cublaslt() -> Option<String> {
    use cudarc::cublaslt::sys::is_culib_present;
    // Safety: only tries to open the library.
    if unsafe { is_culib_present() } {
        return Some("found by the dynamic loader".into());
    }
    let var = |key: &str| std::env::var(key).ok();
    let dirs = cublaslt_dirs(var, std::env::consts::ARCH);
    for path in cublaslt_candidates(var("CARGO_GPU_CUBLASLT"), &dirs) {
        // Safety: as above.
        if path.is_file() && dlopen_global(&path) && unsafe { is_culib_present() } {
            return Some(path.display().to_string());
        }
    }
    None
}

/// The arguments of cuBLASLt's column-major `D = op(A) * op(B)` that compute the kit's row-major
/// `C[M x N] = A[M x K] * B[N x K]^T` with A and B K-contiguous.
///
/// A row-major matrix is the column-major view of its transpose with the same leading dimension:
/// row-major C (M x N, ld N) is column-major C^T (N x M, ld N), and C^T = B * A^T. So cuBLASLt's
/// m, n, k are our N, M, K; its first operand is our B, which it sees as a column-major K x N
/// matrix (ld K) and transposes (op T: N x K); its second is our A, a column-major K x M matrix
/// (ld K) used as it is (op N). Transposed A, plain B: the "TN" GEMM, cuBLAS's best-served layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LtGemm {
    /// cuBLASLt's m, n, k (D is m x n, the inner dimension k).
    pub m: u64,
    pub n: u64,
    pub k: u64,
    pub trans_a: bool,
    pub trans_b: bool,
    /// (rows, cols, ld) of the column-major layouts of cuBLASLt's A, B, and C (which is also D).
    pub a: (u64, u64, i64),
    pub b: (u64, u64, i64),
    pub c: (u64, u64, i64),
}

impl LtGemm {
    pub fn bf16_tn(m: usize, n: usize, k: usize) -> LtGemm {
        let (m, n, k) = (m as u64, n as u64, k as u64);
        LtGemm {
            m: n,
            n: m,
            k,
            trans_a: true,
            trans_b: false,
            a: (k, n, k as i64),
            b: (k, m, k as i64),
            c: (n, m, n as i64),
        }
    }

    /// cuBLASLt's (A, B) operands given ours: (our B, our A).
    pub fn operands<T>(&self, a: T, b: T) -> (T, T) {
        (b, a)
    }
}

/// The element types cuBLASLt writes C in for the kit: f32, and bf16 held as its bits in a u16
/// (as everywhere in the kit).
pub trait GemmOutput: DeviceRepr + Default + Clone + Copy {
    /// `fp32 C` or `bf16 C`, in the baseline's name.
    const NAME: &'static str;
    fn data_type() -> cudarc::cublaslt::sys::cudaDataType;
    fn to_f32(self) -> f32;
}

impl GemmOutput for f32 {
    const NAME: &'static str = "fp32 C";
    fn data_type() -> cudarc::cublaslt::sys::cudaDataType {
        cudarc::cublaslt::sys::cudaDataType::CUDA_R_32F
    }
    fn to_f32(self) -> f32 {
        self
    }
}

impl GemmOutput for u16 {
    const NAME: &'static str = "bf16 C";
    fn data_type() -> cudarc::cublaslt::sys::cudaDataType {
        cudarc::cublaslt::sys::cudaDataType::CUDA_R_16BF
    }
    fn to_f32(self) -> f32 {
        f32_from_bf16(self)
    }
}

/// Turns a cuBLASLt status into a setup failure that says what was being done.
fn lt<T>(what: &str, r: std::result::Result<T, cudarc::cublaslt::result::CublasError>) -> Result<T> {
    r.map_err(|e| {
        // Safety: returns a pointer to a static string for any status.
        let text = unsafe { cudarc::cublaslt::sys::cublasLtGetStatusString(e.0) };
        let text = if text.is_null() {
            String::new()
        } else {
            // Safety: a NUL-terminated static string.
            format!(" ({})", unsafe { std::ffi::CStr::from_ptr(text) }.to_string_lossy())
        };
        Fail::Setup(format!("failed to {what}: {:?}{text}", e.0))
    })
}

/// One GEMM shape and output type, ready to run: cuBLASLt's descriptors and the algorithm its
/// heuristic chose. Made once, on first use; the null handles of a half-made plan are skipped.
struct GemmPlan {
    key: (usize, usize, usize, &'static str),
    args: LtGemm,
    desc: cudarc::cublaslt::sys::cublasLtMatmulDesc_t,
    /// cuBLASLt's A, B and C (= D).
    layouts: [cudarc::cublaslt::sys::cublasLtMatrixLayout_t; 3],
    algo: cudarc::cublaslt::sys::cublasLtMatmulAlgo_t,
}

impl Drop for GemmPlan {
    fn drop(&mut self) {
        use cudarc::cublaslt::result::{destroy_matmul_desc, destroy_matrix_layout};
        // Safety: each handle was made by cuBLASLt for this plan alone and is destroyed once.
        unsafe {
            if !self.desc.is_null() {
                let _ = destroy_matmul_desc(self.desc);
            }
            for l in self.layouts.into_iter().filter(|l| !l.is_null()) {
                let _ = destroy_matrix_layout(l);
            }
        }
    }
}

/// The inputs and the reference of a runner's GEMM, `C[M x N] = A[M x K] * B[N x K]^T` with bf16
/// A and B (K contiguous): what a baseline runs on and is checked against.
pub struct GemmProblem<'a> {
    pub a: &'a CudaSlice<u16>,
    pub b: &'a CudaSlice<u16>,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// The elements of C the runner checked its kernel on, and their CPU reference.
    pub indices: &'a [usize],
    pub want: &'a [f32],
}

/// cuBLASLt on the kit's GPU and stream: a handle, a workspace allocated once, and a plan per
/// GEMM shape and output type, made on first use so that a timed run is one `cublasLtMatmul`.
pub struct Cublas {
    handle: cudarc::cublaslt::sys::cublasLtHandle_t,
    workspace: CudaSlice<u8>,
    plans: std::cell::RefCell<Vec<GemmPlan>>,
    /// `cuBLASLt 13.0.2`: the library's own version.
    pub version: String,
}

impl Drop for Cublas {
    fn drop(&mut self) {
        self.plans.borrow_mut().clear();
        // Safety: the handle is this value's own, destroyed once.
        let _ = unsafe { cudarc::cublaslt::result::destroy_handle(self.handle) };
    }
}

impl Cublas {
    /// cuBLASLt, ready on `gpu`; `None`, after printing [`CUBLASLT_MISSING`], when the library is
    /// not on this machine (see [`cublaslt_dirs`]), or after saying why, when it cannot start here
    /// (a library newer than the driver): a runner goes on without its baseline either way.
    pub fn load(gpu: &Gpu) -> Option<Cublas> {
        let Some(from) = find_cublaslt() else {
            println!("{CUBLASLT_MISSING}");
            return None;
        };
        // Safety: no arguments; the library is loaded.
        let v = unsafe { cudarc::cublaslt::sys::cublasLtGetVersion() };
        let version = format!("cuBLASLt {}.{}.{}", v / 10000, v / 100 % 100, v % 100);
        match Cublas::start(gpu, version.clone()) {
            Ok(cublas) => {
                println!("loaded {version} ({from})");
                Some(cublas)
            }
            Err(e) => {
                println!("{version} ({from}) did not start: {e}; --vs-cublas skipped");
                None
            }
        }
    }

    fn start(gpu: &Gpu, version: String) -> Result<Cublas> {
        cu("make the GPU's context current", gpu.ctx.bind_to_thread())?;
        let workspace = cu("allocate the cuBLASLt workspace", gpu.stream.alloc_zeros::<u8>(CUBLASLT_WORKSPACE_BYTES))?;
        let handle = lt("create a cuBLASLt handle", cudarc::cublaslt::result::create_handle())?;
        Ok(Cublas { handle, workspace, plans: Default::default(), version })
    }

    /// The index in `plans` of the plan for this shape and output type, made when missing:
    /// descriptors for [`LtGemm::bf16_tn`], fp32 compute and scale, and the first algorithm
    /// cuBLASLt's heuristic returns for the workspace (what PyTorch runs).
    fn plan<C: GemmOutput>(&self, m: usize, n: usize, k: usize) -> Result<usize> {
        use cudarc::cublaslt::{result, sys};
        let key = (m, n, k, C::NAME);
        if let Some(i) = self.plans.borrow().iter().position(|p| p.key == key) {
            return Ok(i);
        }
        let args = LtGemm::bf16_tn(m, n, k);
        let mut p = GemmPlan {
            key,
            args,
            desc: std::ptr::null_mut(),
            layouts: [std::ptr::null_mut(); 3],
            algo: sys::cublasLtMatmulAlgo_t { data: [0; 8] },
        };
        let compute = sys::cublasComputeType_t::CUBLAS_COMPUTE_32F;
        p.desc = lt(
            "create a cuBLASLt matmul descriptor",
            result::create_matmul_desc(compute, sys::cudaDataType::CUDA_R_32F),
        )?;
        for (attr, trans) in [
            (sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA, args.trans_a),
            (sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSB, args.trans_b),
        ] {
            // cublasOperation_t, an int32_t: CUBLAS_OP_N = 0, CUBLAS_OP_T = 1.
            let op: i32 = trans.into();
            // Safety: the attribute is an int32_t, read from a live local of that size.
            let r = unsafe { result::set_matmul_desc_attribute(p.desc, attr, (&op as *const i32).cast(), 4) };
            lt("set a cuBLASLt transpose", r)?;
        }
        let bf16 = sys::cudaDataType::CUDA_R_16BF;
        for (slot, (ty, (rows, cols, ld))) in
            p.layouts.iter_mut().zip([(bf16, args.a), (bf16, args.b), (C::data_type(), args.c)])
        {
            *slot = lt("create a cuBLASLt matrix layout", result::create_matrix_layout(ty, rows, cols, ld))?;
        }
        let pref = lt("create a cuBLASLt preference", result::create_matmul_pref())?;
        let workspace = CUBLASLT_WORKSPACE_BYTES as u64;
        // Safety: the attribute is a uint64_t, read from a live local of that size; the
        // descriptors are live; the preference is destroyed once, below.
        let heuristic = unsafe {
            result::set_matmul_pref_attribute(
                pref,
                sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                (&workspace as *const u64).cast(),
                8,
            )
            .and_then(|()| {
                result::get_matmul_algo_heuristic(
                    self.handle,
                    p.desc,
                    p.layouts[0],
                    p.layouts[1],
                    p.layouts[2],
                    p.layouts[2],
                    pref,
                )
            })
        };
        // Safety: made above, destroyed once.
        let _ = unsafe { result::destroy_matmul_pref(pref) };
        let heuristic =
            lt(&format!("find a cuBLASLt algorithm for a {m}x{n}x{k} bf16 GEMM with {}", C::NAME), heuristic)?;
        p.algo = heuristic.algo;
        let mut plans = self.plans.borrow_mut();
        plans.push(p);
        Ok(plans.len() - 1)
    }

    /// Enqueues `C[M x N] = A[M x K] * B[N x K]^T` (row-major, A and B bf16 and K-contiguous, C
    /// f32 or bf16, fp32 accumulation) on `gpu`'s stream: the kit's GEMM layout, mapped onto
    /// cuBLASLt by [`LtGemm::bf16_tn`].
    #[allow(clippy::too_many_arguments)]
    pub fn gemm_bf16_tn<C: GemmOutput>(
        &self,
        gpu: &Gpu,
        a: &CudaSlice<u16>,
        b: &CudaSlice<u16>,
        c: &mut CudaSlice<C>,
        m: usize,
        n: usize,
        k: usize,
    ) -> Result<()> {
        use cudarc::driver::{DevicePtr, DevicePtrMut};
        if a.len() < m * k || b.len() < n * k || c.len() < m * n {
            return Err(Fail::Setup(format!(
                "cuBLASLt {m}x{n}x{k}: buffers of {}, {} and {} elements are too small",
                a.len(),
                b.len(),
                c.len()
            )));
        }
        let i = self.plan::<C>(m, n, k)?;
        let plans = self.plans.borrow();
        let p = &plans[i];
        let (pa, _a) = a.device_ptr(&gpu.stream);
        let (pb, _b) = b.device_ptr(&gpu.stream);
        let (pc, _c) = c.device_ptr_mut(&gpu.stream);
        let (pw, _w) = self.workspace.device_ptr(&gpu.stream);
        let (first, second) = p.args.operands(pa, pb);
        let (alpha, beta) = (1.0f32, 0.0f32);
        // Safety: the descriptors and algorithm are this plan's, made for these sizes; the buffers
        // are live and at least as large as the layouts say (checked above); alpha and beta are
        // f32 like the scale type; C is also D, and with beta 0 it is only written.
        let r = unsafe {
            cudarc::cublaslt::result::matmul(
                self.handle,
                p.desc,
                (&alpha as *const f32).cast(),
                (&beta as *const f32).cast(),
                first as *const _,
                p.layouts[0],
                second as *const _,
                p.layouts[1],
                pc as *const _,
                p.layouts[2],
                pc as *mut _,
                p.layouts[2],
                &p.algo,
                pw as *mut _,
                CUBLASLT_WORKSPACE_BYTES,
                gpu.stream.cu_stream() as _,
            )
        };
        lt(&format!("run cuBLASLt's {m}x{n}x{k} GEMM"), r)
    }

    /// `--vs-cublas`: cuBLASLt's GEMM with output type `C` on the runner's inputs, checked against
    /// the runner's reference (so a wrong layout fails on the GPU, not silently), then timed like
    /// the kernel and compared with `ours` ([`Baseline::time`]). A failed check is recorded and the
    /// report written before the failure returns, so the kernel's own results are kept. A shape
    /// cuBLASLt refuses (no algorithm) is a note, recorded, and `None`: the run goes on.
    pub fn versus<C: GemmOutput>(
        &self,
        gpu: &mut Gpu,
        opts: &TimeOptions,
        p: &GemmProblem,
        ours: &Timing,
        report: &mut Report,
    ) -> Result<Option<Timing>> {
        let (m, n, k) = (p.m, p.n, p.k);
        let name = format!("cuBLASLt ({})", C::NAME);
        report.set("cublaslt", self.version.as_str());
        let mut c = gpu.poisoned::<C>(m * n)?;
        match self.gemm_bf16_tn(gpu, p.a, p.b, &mut c, m, n, k) {
            Ok(()) => {}
            // cuBLASLt's own refusal; a fault of the GPU (a Fault) still ends the run.
            Err(Fail::Setup(why)) => {
                println!("  vs {name}: skipped: {why}");
                let fields = vec![("name".into(), name.as_str().into()), ("skipped".into(), why.into())];
                report.set("baseline", Json::Obj(fields));
                return Ok(None);
            }
            Err(fail) => return Err(fail),
        }
        gpu.sync()?;
        let got = gpu.download(&c)?;
        let pairs = p.indices.iter().zip(p.want).map(|(i, w)| (*i, got[*i].to_f32(), *w));
        let comparison = compare_pairs(pairs, Precision::Bf16).with_cols(n);
        // Indented under the kernel's own lines, so that scripts counting `check ...: PASS` lines
        // count kernels.
        let what = format!("{name} {m}x{n}x{k} vs CPU f64");
        println!("  check {what}: {}", comparison.summary());
        if !comparison.passed() {
            report.set(
                "baseline",
                Json::Obj(vec![("name".into(), name.as_str().into()), ("check".into(), check_json(&comparison))]),
            );
            report.write()?;
            return Err(Fail::Check(format!("{what}: {}", comparison.summary())));
        }
        let baseline = Baseline { name: &name, short: "cuBLAS", check: Some(&comparison) };
        let work = Work::Flops(2.0 * m as f64 * n as f64 * k as f64);
        baseline.time(gpu, opts, ours, work, report, |gpu| self.gemm_bf16_tn(gpu, p.a, p.b, &mut c, m, n, k)).map(Some)
    }
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_faulting_kernel_has_its_own_exit_code() {
        use sys::CUresult::*;
        // (No driver call here: the error's own text needs libcuda, which a test machine lacks.)
        let text = || "failed to run the kernel: CUDA_ERROR_ILLEGAL_ADDRESS".to_string();
        for e in [
            CUDA_ERROR_ILLEGAL_ADDRESS,
            CUDA_ERROR_MISALIGNED_ADDRESS,
            CUDA_ERROR_ILLEGAL_INSTRUCTION,
            CUDA_ERROR_ASSERT,
            CUDA_ERROR_LAUNCH_FAILED,
            CUDA_ERROR_HARDWARE_STACK_ERROR,
        ] {
            let fail = driver_failure(e, text());
            assert_eq!(fail.exit_code(), FAULT_EXIT_CODE, "{e:?}");
            assert_eq!(fail.to_string(), "kernel fault: failed to run the kernel: CUDA_ERROR_ILLEGAL_ADDRESS");
        }
        for e in [CUDA_ERROR_OUT_OF_MEMORY, CUDA_ERROR_NO_BINARY_FOR_GPU, CUDA_ERROR_INVALID_VALUE] {
            assert_eq!(driver_failure(e, text()).exit_code(), 3, "{e:?}");
        }
    }

    #[test]
    fn targets_parse_and_print() {
        for s in ["sm_90a", "sm_90", "sm_100a", "sm_100f", "sm_120", "sm_89"] {
            assert_eq!(Target::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(Target::parse("sm_100f"), Some(Target { major: 10, minor: 0, variant: 'f' }));
        for bad in ["sm_", "sm_9", "sm_9x", "compute_90", "sm_90b", "90a"] {
            assert_eq!(Target::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn arch_specific_cubins_run_only_on_their_own_device() {
        let t = Target::parse("sm_90a").unwrap();
        assert!(t.runs_on((9, 0)));
        assert!(!t.runs_on((10, 0)));
        let f = Target::parse("sm_100f").unwrap();
        assert!(f.runs_on((10, 0)) && f.runs_on((10, 3)) && !f.runs_on((12, 0)));
        let p = Target::parse("sm_86").unwrap();
        assert!(p.runs_on((8, 9)) && !p.runs_on((8, 0)) && !p.runs_on((9, 0)));
    }

    #[test]
    fn cubin_choice_prefers_specific_then_family_then_plain_with_highest_minor() {
        let files = names(&[
            "hgemm.sm_90a.cubin",
            "hgemm.sm_90.cubin",
            "hgemm.sm_100a.cubin",
            "hgemm.sm_100f.cubin",
            "hgemm.sm_100.cubin",
            "hgemm.sm_103.cubin",
            "other.sm_90a.cubin",
            "hgemm.sm_90a.cubin.tmp",
            "hgemmx.sm_90a.cubin",
        ]);
        let pick = |cc| choose_cubin(&files, "hgemm", cc).map(|(f, _)| f);
        assert_eq!(pick((9, 0)).as_deref(), Some("hgemm.sm_90a.cubin"));
        assert_eq!(pick((10, 0)).as_deref(), Some("hgemm.sm_100a.cubin"));
        assert_eq!(pick((10, 3)).as_deref(), Some("hgemm.sm_100f.cubin"));
        assert_eq!(pick((12, 0)), None);
        let plain = names(&["k.sm_80.cubin", "k.sm_86.cubin", "k.sm_89.cubin"]);
        assert_eq!(choose_cubin(&plain, "k", (8, 6)).map(|(f, _)| f).as_deref(), Some("k.sm_86.cubin"));
        assert_eq!(choose_cubin(&plain, "k", (8, 9)).map(|(f, _)| f).as_deref(), Some("k.sm_89.cubin"));
        assert_eq!(cubins_of(&files, "other").len(), 1);
    }

    #[test]
    fn a_skipped_last_element_fails_with_its_index() {
        let want: Vec<f32> = (0..1000).map(|i| (i as f32).sin() + 2.0).collect();
        let mut got = want.clone();
        got[999] = f32::from_bits(u32::MAX); // what `Gpu::poisoned` leaves behind
        let c = compare(&got, &want, Precision::Fp32);
        assert!(!c.passed());
        assert_eq!(c.failures, 1);
        assert_eq!(c.first_failure.unwrap().index, 999);
        assert!(c.summary().contains("[999]"), "{}", c.summary());
        assert!(c.check("vector_add").is_err());
        got[999] = 0.0;
        let c = compare(&got, &want, Precision::Bf16);
        assert_eq!(c.first_failure.unwrap().index, 999);
        assert!(c.clone().with_cols(100).summary().contains("[9, 99]"));
    }

    #[test]
    fn nan_never_passes() {
        for p in [Precision::Fp32, Precision::Tf32, Precision::Bf16] {
            assert!(!compare(&[f32::NAN], &[1.0], p).passed());
            assert!(!compare(&[1.0], &[f32::NAN], p).passed());
            assert!(!compare(&[f32::NAN], &[f32::NAN], p).passed());
            assert!(!compare(&[f32::INFINITY], &[f32::INFINITY], p).passed());
            assert!(!compare(&[], &[], p).passed(), "an empty check proves nothing");
        }
        let c = compare(&[1.0, f32::NAN, 1.0], &[1.0, 1.0, 5.0], Precision::Bf16);
        assert_eq!(c.worst.unwrap().index, 1, "a NaN is the worst element");
    }

    #[test]
    fn tolerance_follows_the_precision() {
        let want = vec![1.0f32; 4];
        let off = |rel: f32| vec![1.0 + rel; 4];
        assert!(compare(&off(5e-6), &want, Precision::Fp32).passed());
        assert!(!compare(&off(1e-4), &want, Precision::Fp32).passed());
        assert!(compare(&off(1e-3), &want, Precision::Tf32).passed());
        assert!(!compare(&off(1e-2), &want, Precision::Tf32).passed());
        assert!(compare(&off(1e-2), &want, Precision::Bf16).passed());
        assert!(!compare(&off(5e-2), &want, Precision::Bf16).passed());
    }

    #[test]
    fn elements_near_zero_are_measured_against_the_reference_scale() {
        // A result of 1e-4 where 0 was expected is a tiny error in a result of magnitude 1.
        let want = [1.0, -1.0, 0.0, 1.0];
        let got = [1.0, -1.0, 1e-6, 1.0];
        assert!(compare(&got, &want, Precision::Fp32).passed());
        let got = [1.0, -1.0, 0.5, 1.0];
        assert!(!compare(&got, &want, Precision::Bf16).passed());
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        assert_eq!(bf16_from_f32(1.0), 0x3f80);
        assert_eq!(f32_from_bf16(0x3f80), 1.0);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0).
        assert_eq!(bf16_from_f32(1.0 + 1.0 / 256.0), 0x3f80);
        assert_eq!(bf16_from_f32(1.0 + 3.0 / 256.0), 0x3f82);
        assert!(f32_from_bf16(bf16_from_f32(f32::NAN)).is_nan());
        let mut r = Rng::new(7);
        assert!(r.bf16s(1000).iter().all(|b| (-1.0..=1.0).contains(&f32_from_bf16(*b))));
    }

    #[test]
    fn random_inputs_are_seeded() {
        let a = Rng::new(42).f32s(100);
        assert_eq!(a, Rng::new(42).f32s(100));
        assert_ne!(a, Rng::new(43).f32s(100));
        assert!(a.iter().all(|x| (-1.0..1.0).contains(x)));
    }

    #[test]
    fn timing_statistics() {
        let t = Timing::from_samples(vec![3.0, 1.0, 2.0, 10.0]);
        assert_eq!((t.min_ms, t.median_ms, t.max_ms), (1.0, 2.5, 10.0));
        assert_eq!(Timing::from_samples(vec![5.0, 1.0, 3.0]).median_ms, 3.0);
        let (r, unit) = Work::Flops(2.0e12).rate(1000.0).unwrap();
        assert_eq!((r, unit), (2.0, "TFLOP/s"));
        let (r, unit) = Work::Bytes(3.0e9).rate(1.0).unwrap();
        assert_eq!((r, unit), (3000.0, "GB/s"));
    }

    #[test]
    fn sizes_and_arguments() {
        assert_eq!(parse_size("1Gi").unwrap(), 1 << 30);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("1e6").unwrap(), 1_000_000);
        assert!(parse_size("1.5").is_err() && parse_size("x").is_err());
        let words = |w: &[&str]| Args::new(w.iter().map(|s| s.to_string()));
        let mut a = words(&["512", "--seed", "9", "--no-flush", "1024", "--samples=5"]);
        a.parse(&["seed", "samples"], &["no-flush"]).unwrap();
        assert_eq!(a.positional, vec!["512", "1024"], "a flag does not take the next word");
        assert_eq!(a.seed().unwrap(), 9);
        assert!(a.flag("no-flush") && !a.flag("help"));
        assert_eq!(TimeOptions::from_args(&a).unwrap().max_samples, 5);
        let fails = |w: &[&str]| matches!(words(w).parse(&["seed"], &["no-time"]), Err(Fail::Usage(_)));
        assert!(fails(&["--sed", "1"]) && fails(&["--seed"]) && fails(&["--no-time=1"]));
        let mut h = words(&["hgemm", "-h"]);
        assert_eq!(h.shift().as_deref(), Some("hgemm"));
        h.parse(&[], &[]).unwrap();
        assert!(h.flag("help") && h.positional.is_empty());
    }

    #[test]
    fn json_is_escaped_and_has_no_nan() {
        let j = Json::Obj(vec![
            ("s".into(), "a\"b\\c\n".into()),
            ("n".into(), Json::Num(f64::NAN)),
            ("a".into(), Json::Arr(vec![1.5.into(), true.into(), Json::Null])),
            ("big".into(), u64::MAX.into()),
        ]);
        assert_eq!(j.to_string(), r#"{"s":"a\"b\\c\n","n":null,"a":[1.5,true,null],"big":"18446744073709551615"}"#);
    }

    #[test]
    fn gemm_shapes_parse() {
        assert_eq!(parse_shape("1000x999x520").unwrap(), (1000, 999, 520));
        assert_eq!(parse_shape("8Kix8Kix8Ki").unwrap(), (8192, 8192, 8192));
        assert_eq!(parse_shape("8192X8192X8192").unwrap(), (8192, 8192, 8192));
        assert!(parse_shape("10x10").is_err() && parse_shape("0x1x1").is_err());
    }

    #[test]
    fn large_gemm_checks_cover_the_edges() {
        let (m, n, k) = (8192, 8000, 8192);
        let idx = gemm_check_indices(m, n, k, (128, 256), false, &mut Rng::new(1));
        assert!(idx.contains(&(m * n - 1)) && idx.contains(&(n - 1)) && idx.contains(&((m - 1) * n)));
        assert!(idx.contains(&(128 * n + 256)), "the first element of the second tile");
        assert!(idx.len() > GEMM_SAMPLES / 2 && idx.len() < 10_000);
        assert_eq!(gemm_check_indices(100, 100, 64, (128, 256), false, &mut Rng::new(1)).len(), 100 * 100);
    }

    #[test]
    fn gemm_reference_is_a_dot_product_of_rows() {
        // A = [[1, 2], [3, 4]], B = [[5, 6], [7, 8]]: C = A * B^T = [[17, 23], [39, 53]].
        let c = gemm_reference_bt(&[1.0, 2.0, 3.0, 4.0], &[5.0, 6.0, 7.0, 8.0], 2, 2, &[0, 1, 2, 3]);
        assert_eq!(c, vec![17.0, 23.0, 39.0, 53.0]);
    }

    #[test]
    fn the_cuda_a_package_needs_comes_from_its_manifest() {
        let m = "[package]\nnvcc-version = \"13.0.88\"\nmin-driver-cuda = \"13.0\"\n";
        assert_eq!(manifest_cuda_requirement(m), Some((13, 0)));
        assert_eq!(manifest_cuda_requirement("nvcc-version = \"12.9.41\"\n"), Some((12, 9)));
        assert_eq!(manifest_cuda_requirement("name = \"x\"\n"), None);
    }

    /// The kit's rules against cargo-gpu's own, row by row, from a table that cargo-gpu's test
    /// suite writes from its `arch` and `Manifest` code (tests/kit_arch.rs) and names in
    /// `CARGO_GPU_KIT_TABLE`. A project's own `cargo test` has no table and compares nothing;
    /// the suite checks the row count printed here, so an empty comparison cannot pass there.
    #[test]
    fn agrees_with_cargo_gpu() {
        let Some(table) = std::env::var_os("CARGO_GPU_KIT_TABLE") else { return };
        let text = std::fs::read_to_string(&table).expect("the table cargo-gpu's tests wrote");
        let cc = |s: &str| -> (u32, u32) {
            let (major, minor) = s.split_once('.').expect("MAJOR.MINOR");
            (major.parse().unwrap(), minor.parse().unwrap())
        };
        let mut rows = 0;
        for line in text.lines() {
            match line.split(' ').collect::<Vec<_>>()[..] {
                ["runs", target, device, runs] => {
                    let t = Target::parse(target).unwrap_or_else(|| panic!("the kit cannot read {target}"));
                    assert_eq!(t.to_string(), target);
                    assert_eq!(t.runs_on(cc(device)), runs == "yes", "{line}");
                }
                ["best", device, targets, best] => {
                    let files: Vec<String> = targets.split(',').map(|t| format!("k.{t}.cubin")).collect();
                    let chosen = choose_cubin(&files, "k", cc(device)).map(|(_, t)| t.to_string());
                    assert_eq!(chosen.as_deref().unwrap_or("-"), best, "{line}");
                }
                ["cubin", file, stem, target] => {
                    let found = cubins_of(&[file.to_string()], stem);
                    assert_eq!(found, vec![(file.to_string(), Target::parse(target).unwrap())], "{line}");
                }
                ["package", kernels_dir, cuda] => {
                    assert_eq!(package_cuda_requirement(Path::new(kernels_dir)), Some(cc(cuda)), "{line}");
                }
                _ => panic!("unknown row in {}: {line}", Path::new(&table).display()),
            }
            rows += 1;
        }
        println!("kit agrees with cargo-gpu on {rows} rows");
    }

    #[test]
    fn results_are_written_as_json_into_cargo_gpu_out() {
        let dir = std::env::temp_dir().join(format!("kit-report-{}", std::process::id()));
        let mut r = Report { name: "hgemm-8x8x8".into(), fields: Vec::new() };
        r.set("m", 8usize);
        r.check(&compare(&[1.0, 2.0], &[1.0, 2.0], Precision::Bf16));
        r.timing(&Timing::from_samples(vec![1.0, 2.0, 3.0]), Work::Flops(3e9));
        // The only test that touches the environment.
        std::env::set_var("CARGO_GPU_OUT", &dir);
        let path = r.write().unwrap().unwrap();
        std::env::remove_var("CARGO_GPU_OUT");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(path.file_name().unwrap(), "hgemm-8x8x8.json");
        assert!(text.starts_with(r#"{"m":8,"check":{"passed":true,"precision":"bf16""#), "{text}");
        assert!(text.contains(r#""median_ms":2,"#) && text.contains(r#""tflops":1.5"#), "{text}");
        assert_eq!(r.write().unwrap(), None, "without CARGO_GPU_OUT nothing is written");
    }

    /// cuBLAS's column-major `D = op(A) * op(B)` by its own definition (element (i, j) of a
    /// matrix with leading dimension ld is at `i + j * ld`), after checking that the stored shapes
    /// agree with the transposes and sizes.
    fn blas_gemm(g: &LtGemm, a: &[f32], b: &[f32]) -> Vec<f32> {
        let (m, n, k) = (g.m as usize, g.n as usize, g.k as usize);
        let stored = |trans: bool, (rows, cols, ld): (u64, u64, i64), want: (usize, usize)| {
            let shape = if trans { (cols as usize, rows as usize) } else { (rows as usize, cols as usize) };
            assert_eq!(shape, want, "op() of a {rows} x {cols} matrix");
            assert!(ld as u64 >= rows);
        };
        stored(g.trans_a, g.a, (m, k));
        stored(g.trans_b, g.b, (k, n));
        stored(false, g.c, (m, n));
        let at = |data: &[f32], ld: i64, i: usize, j: usize| data[i + j * ld as usize];
        let op_a = |i, p| if g.trans_a { at(a, g.a.2, p, i) } else { at(a, g.a.2, i, p) };
        let op_b = |p, j| if g.trans_b { at(b, g.b.2, j, p) } else { at(b, g.b.2, p, j) };
        let ldc = g.c.2 as usize;
        let mut d = vec![f32::NAN; ldc * n];
        for j in 0..n {
            for i in 0..m {
                d[i + j * ldc] = (0..k).map(|p| op_a(i, p) as f64 * op_b(p, j) as f64).sum::<f64>() as f32;
            }
        }
        d
    }

    #[test]
    fn cublaslt_arguments_compute_the_kits_row_major_gemm() {
        assert_eq!(
            LtGemm::bf16_tn(2, 3, 8),
            LtGemm { m: 3, n: 2, k: 8, trans_a: true, trans_b: false, a: (8, 3, 8), b: (8, 2, 8), c: (3, 2, 3) }
        );
        let mut rng = Rng::new(3);
        for (m, n, k) in [(3, 5, 7), (1, 4, 2), (6, 1, 3), (4, 4, 4), (17, 9, 24)] {
            let (a, b) = (rng.f32s(m * k), rng.f32s(n * k));
            let g = LtGemm::bf16_tn(m, n, k);
            let (first, second) = g.operands(a.as_slice(), b.as_slice());
            let got = blas_gemm(&g, first, second);
            let want = gemm_reference_bt(&a, &b, n, k, &(0..m * n).collect::<Vec<_>>());
            assert_eq!(got, want, "{m}x{n}x{k}: cuBLASLt's D read as row-major C");
        }
        // The operands the other way round compute C^T, which the comparison tells apart.
        let (a, b) = (rng.f32s(16), rng.f32s(16));
        let g = LtGemm::bf16_tn(4, 4, 4);
        assert_ne!(blas_gemm(&g, &a, &b), gemm_reference_bt(&a, &b, 4, 4, &(0..16).collect::<Vec<_>>()));
    }

    #[test]
    fn a_baseline_prints_its_time_rate_and_our_ratio() {
        let ours = Timing::from_samples(vec![1.6, 1.5, 1.7]);
        let theirs = Timing::from_samples(vec![2.0, 2.1, 1.9]);
        let gemm = Baseline { name: "cuBLASLt (fp32 C)", short: "cuBLAS", check: None };
        assert_eq!(
            gemm.line(&theirs, &ours, Work::Flops(1.5e12)),
            "  vs cuBLASLt (fp32 C): 2.000 ms, 750.0 TFLOP/s; ours/cuBLAS 1.25"
        );
        let copy = Baseline { name: "copy (cuMemcpyDtoDAsync)", short: "copy", check: None };
        let slower = Timing::from_samples(vec![3.1]);
        let copied = Timing::from_samples(vec![3.0]);
        assert_eq!(
            copy.line(&copied, &slower, Work::Bytes(12e9)),
            "  vs copy (cuMemcpyDtoDAsync): 3.000 ms, 4000.0 GB/s; ours/copy 0.97"
        );
        assert!((ours_over(&slower, &copied) - 3.0 / 3.1).abs() < 1e-12);
    }

    #[test]
    fn a_baseline_is_recorded_beside_the_kernels_timing() {
        let ours = Timing::from_samples(vec![1.0]);
        let theirs = Timing::from_samples(vec![0.5, 0.5]);
        let c = compare(&[1.0], &[1.0], Precision::Bf16);
        let b = Baseline { name: "cuBLASLt (bf16 C)", short: "cuBLAS", check: Some(&c) };
        let text = b.json(&theirs, &ours, Work::Flops(1e9)).to_string();
        assert!(text.starts_with(r#"{"name":"cuBLASLt (bf16 C)","median_ms":0.5,"#), "{text}");
        assert!(text.contains(r#""tflops":2,"ours_over_baseline":0.5,"check":{"passed":true,"#), "{text}");
        let mut r = Report { name: "hgemm".into(), fields: Vec::new() };
        r.set("baseline", Baseline { check: None, ..b }.json(&theirs, &ours, Work::Flops(1e9)));
        assert!(!r.to_json().contains("check"), "{}", r.to_json());
    }

    #[test]
    fn cublaslt_is_looked_for_in_the_toolkit_folders() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| v.to_string())
        };
        let dirs = cublaslt_dirs(env(&[("CUDA_HOME", "/opt/cu13")]), "x86_64");
        let want =
            ["/opt/cu13/lib64", "/opt/cu13/lib", "/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib"];
        assert_eq!(dirs, want.iter().map(PathBuf::from).collect::<Vec<_>>());
        let same = cublaslt_dirs(env(&[("CUDA_HOME", "/usr/local/cuda"), ("CUDA_PATH", "/usr/local/cuda")]), "x86_64");
        assert_eq!(same.len(), 3, "each folder once: {same:?}");
        let arm = cublaslt_dirs(env(&[("CUDA_PATH", ""), ("CUDA_HOME", "")]), "aarch64");
        assert_eq!(
            arm,
            [
                "/usr/local/cuda/lib64",
                "/usr/local/cuda/targets/sbsa-linux/lib",
                "/usr/local/cuda/targets/aarch64-linux/lib"
            ]
            .iter()
            .map(PathBuf::from)
            .collect::<Vec<_>>()
        );
        let files = cublaslt_candidates(Some("/x/libcublasLt.so.13.0.2".into()), &dirs[..2]);
        let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        assert_eq!(
            files,
            [
                "/x/libcublasLt.so.13.0.2",
                "/opt/cu13/lib64/libcublasLt.so.13",
                "/opt/cu13/lib/libcublasLt.so.13",
                "/opt/cu13/lib64/libcublasLt.so.12",
                "/opt/cu13/lib/libcublasLt.so.12",
            ]
        );
        assert_eq!(cublaslt_candidates(Some(String::new()), &[]), Vec::<PathBuf>::new());
        assert!(CUBLASLT_MISSING.contains("libcublasLt.so.13") && CUBLASLT_MISSING.contains("--vs-cublas skipped"));
    }

    #[test]
    fn cublaslt_writes_fp32_or_bf16() {
        assert_eq!(<f32 as GemmOutput>::NAME, "fp32 C");
        assert_eq!(<u16 as GemmOutput>::NAME, "bf16 C");
        assert_eq!(GemmOutput::to_f32(0x3f80u16), 1.0);
        assert_eq!(GemmOutput::to_f32(-2.5f32), -2.5);
        assert_eq!(<u16 as GemmOutput>::data_type() as u32, 14, "CUDA_R_16BF");
        assert_eq!(<f32 as GemmOutput>::data_type() as u32, 0, "CUDA_R_32F");
    }
}
