//! The compiler driver of the CUDA 12 toolchains. NVIDIA's CUDA 12 wheels carry no nvcc, only
//! NVRTC (nvcc's front end and optimizer as a library, with ptxas inside) and ptxas: a build with
//! such a toolchain runs `cargo-gpu __nvrtc --toolchain DIR` followed by the same words it gives
//! nvcc, and this driver does what nvcc would with them: the cubin (or PTX) at `-o`, the compile
//! log on stderr (ptxas's `-v` lines included), and a make-style dependency file at `-MF`.
//!
//! Kernel files are device code, so NVRTC's `-default-device` applies (declarations such as
//! those in `cuda.h` become device declarations), and the few C headers a kernel file includes
//! for its types (`stdint.h`, `stddef.h`, ...) come from small device headers written into the
//! toolchain at install. NVRTC writes no dependency file: the driver follows the `#include`s of
//! the project's own files itself.

use std::ffi::{c_char, c_int, c_void, CStr, CString, OsString};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::toolchain::installed;

/// The first argument that turns `cargo-gpu` into this driver.
pub const DRIVER_ARG: &str = "__nvrtc";
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    Cubin,
    Ptx,
}

/// What the driver was asked.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Version,
    ListGpuCode,
    Compile(Compile),
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Compile {
    output: Option<Output>,
    /// NVRTC's options, translated from nvcc's.
    options: Vec<String>,
    /// The project's include folders (`-I`), which the dependency scan follows.
    include_dirs: Vec<PathBuf>,
    depfile: Option<PathBuf>,
    out: Option<PathBuf>,
    source: Option<PathBuf>,
}

/// The words after `--toolchain DIR`, as nvcc would take them.
fn parse(args: &[String]) -> Result<Request> {
    let mut c = Compile::default();
    let mut it = args.iter();
    let value = |it: &mut std::slice::Iter<String>, flag: &str| {
        it.next().cloned().with_context(|| format!("{flag} needs a value"))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--version" => return Ok(Request::Version),
            "--list-gpu-code" => return Ok(Request::ListGpuCode),
            "-cubin" => c.output = Some(Output::Cubin),
            "-ptx" => c.output = Some(Output::Ptx),
            "-gencode" => {
                let spec = value(&mut it, "-gencode")?;
                let code = spec
                    .split(',')
                    .find_map(|p| p.strip_prefix("code="))
                    .with_context(|| format!("-gencode `{spec}` names no code="))?;
                c.options.push(format!("-arch={code}"));
            }
            // NVRTC optimises unless -G is given, and takes no -O level.
            "-O0" | "-O1" | "-O2" | "-O3" => {}
            "-Xptxas" => {
                c.options.push("-Xptxas".into());
                c.options.push(value(&mut it, "-Xptxas")?);
            }
            "-I" => {
                let dir = value(&mut it, "-I")?;
                c.options.push(format!("-I{dir}"));
                c.include_dirs.push(dir.into());
            }
            "-MD" => {}
            "-MF" => c.depfile = Some(value(&mut it, "-MF")?.into()),
            "-o" => c.out = Some(value(&mut it, "-o")?.into()),
            s if s.starts_with("-I") => {
                c.options.push(s.to_string());
                c.include_dirs.push(s[2..].into());
            }
            s if s.starts_with('-') => c.options.push(s.to_string()),
            s => {
                if c.source.replace(s.into()).is_some() {
                    bail!("more than one source file: this driver compiles one kernel file at a time");
                }
            }
        }
    }
    Ok(Request::Compile(c))
}

/// `cargo-gpu __nvrtc --toolchain DIR ...`: the process's exit code. `args` starts after
/// [`DRIVER_ARG`].
pub fn main(args: Vec<OsString>) -> i32 {
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
    }
}

fn run(args: Vec<OsString>) -> Result<i32> {
    let args: Vec<String> = args
        .into_iter()
        .map(|a| a.into_string().map_err(|a| anyhow::anyhow!("argument {a:?} is not UTF-8")))
        .collect::<Result<_>>()?;
    let [flag, dir, rest @ ..] = args.as_slice() else {
        bail!("usage: cargo-gpu {DRIVER_ARG} --toolchain DIR NVCC-ARGS...");
    };
    if flag != "--toolchain" {
        bail!("usage: cargo-gpu {DRIVER_ARG} --toolchain DIR NVCC-ARGS...");
    }
    let toolchain = installed::read(Path::new(dir))
        .with_context(|| format!("{dir} is not a CUDA toolchain that cargo-gpu installed"))?;
    let site = toolchain.site_packages()?;
    let lib = Nvrtc::load(&site.join("nvidia/cuda_nvrtc/lib/libnvrtc.so.12"))?;
    match parse(rest)? {
        Request::Version => {
            let (major, minor) = lib.version()?;
            println!("cargo-gpu NVRTC driver (NVRTC {major}.{minor})");
            println!(
                "Cuda compilation tools, release {}, V{}",
                toolchain.record.version, toolchain.record.full_version
            );
            Ok(0)
        }
        Request::ListGpuCode => {
            for a in lib.supported_archs()? {
                println!("sm_{a}");
            }
            Ok(0)
        }
        Request::Compile(mut c) => {
            let source = c.source.clone().context("no kernel file to compile")?;
            let out = c.out.clone().context("no output file (-o)")?;
            let output = c.output.context("neither -cubin nor -ptx")?;
            // nvcc looks for quoted includes beside the file first; then come the device headers
            // and the toolkit's.
            if let Some(parent) = source.parent().filter(|p| !p.as_os_str().is_empty()) {
                c.options.push(format!("-I{}", parent.display()));
            }
            c.options.push("-default-device".into());
            c.options.push(format!("-I{}", Path::new(dir).join(installed::HEADERS_DIR).display()));
            for inc in ["cuda_runtime/include", "cuda_cccl/include", "cuda_nvcc/include"] {
                c.options.push(format!("-I{}", site.join("nvidia").join(inc).display()));
            }
            let text = std::fs::read(&source).with_context(|| format!("failed to read {}", source.display()))?;
            let compiled = lib.compile(&text, &source.display().to_string(), &c.options, output)?;
            eprint!("{}", compiled.log);
            let Some(bytes) = compiled.output else { return Ok(1) };
            std::fs::write(&out, bytes).with_context(|| format!("failed to write {}", out.display()))?;
            if let Some(depfile) = &c.depfile {
                let deps = dependencies(&source, &c.include_dirs);
                std::fs::write(depfile, make_rule(&out, &deps))
                    .with_context(|| format!("failed to write {}", depfile.display()))?;
            }
            Ok(0)
        }
    }
}

/// `#include "x"` and `#include <x>` names in a source text.
fn include_names(text: &str) -> Vec<(bool, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.trim_start().strip_prefix('#') else { continue };
        let Some(rest) = rest.trim_start().strip_prefix("include") else { continue };
        let rest = rest.trim_start();
        let (quoted, close) = match rest.chars().next() {
            Some('"') => (true, '"'),
            Some('<') => (false, '>'),
            _ => continue,
        };
        if let Some(end) = rest[1..].find(close) {
            out.push((quoted, rest[1..1 + end].to_string()));
        }
    }
    out
}

/// The source and every file it includes that is found beside its includer (quoted forms) or
/// in `include_dirs`, transitively; what is not found there (the toolkit's headers) is left out,
/// as the build leaves toolkit headers out of fingerprints.
fn dependencies(source: &Path, include_dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut seen = vec![source.to_path_buf()];
    let mut i = 0;
    while i < seen.len() {
        let file = seen[i].clone();
        i += 1;
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        for (quoted, name) in include_names(&text) {
            let beside = file.parent().map(|p| p.join(&name)).filter(|_| quoted);
            let found = beside.into_iter().chain(include_dirs.iter().map(|d| d.join(&name))).find(|p| p.is_file());
            if let Some(p) = found {
                if !seen.contains(&p) {
                    seen.push(p);
                }
            }
        }
    }
    seen
}

/// `out : a.cu b.cuh` with spaces escaped, as nvcc's `-MD` writes it.
fn make_rule(out: &Path, deps: &[PathBuf]) -> String {
    let esc = |p: &Path| p.display().to_string().replace(' ', "\\ ");
    let mut s = format!("{} :", esc(out));
    for d in deps {
        s.push_str(" \\\n    ");
        s.push_str(&esc(d));
    }
    s.push('\n');
    s
}

type NvrtcResult = c_int;
type Program = *mut c_void;

/// libnvrtc, opened from a toolchain's folder.
struct Nvrtc {
    lib: libloading::Library,
    path: PathBuf,
}

struct Compiled {
    log: String,
    output: Option<Vec<u8>>,
}

impl Nvrtc {
    fn load(path: &Path) -> Result<Nvrtc> {
        // SAFETY: libnvrtc runs no code at load time that depends on the caller.
        let lib = unsafe { libloading::Library::new(path) }
            .with_context(|| format!("failed to load NVRTC from {}: reinstall the toolchain", path.display()))?;
        Ok(Nvrtc { lib, path: path.to_path_buf() })
    }

    fn sym<T>(&self, name: &str) -> Result<libloading::Symbol<'_, T>> {
        // SAFETY: every name is looked up with the signature NVRTC's header declares for it.
        unsafe { self.lib.get(name.as_bytes()) }.with_context(|| format!("{} has no {name}", self.path.display()))
    }

    fn check(&self, what: &str, r: NvrtcResult) -> Result<()> {
        if r == 0 {
            return Ok(());
        }
        let text = self
            .sym::<unsafe extern "C" fn(NvrtcResult) -> *const c_char>("nvrtcGetErrorString")
            // SAFETY: the function returns a static string for any code.
            .map(|f| unsafe { CStr::from_ptr(f(r)) }.to_string_lossy().into_owned())
            .unwrap_or_else(|_| format!("error {r}"));
        bail!("{what} failed: {text}")
    }

    fn version(&self) -> Result<(i32, i32)> {
        let f = self.sym::<unsafe extern "C" fn(*mut c_int, *mut c_int) -> NvrtcResult>("nvrtcVersion")?;
        let (mut major, mut minor) = (0, 0);
        // SAFETY: two valid out-pointers.
        self.check("nvrtcVersion", unsafe { f(&mut major, &mut minor) })?;
        Ok((major, minor))
    }

    fn supported_archs(&self) -> Result<Vec<i32>> {
        let count = self.sym::<unsafe extern "C" fn(*mut c_int) -> NvrtcResult>("nvrtcGetNumSupportedArchs")?;
        let list = self.sym::<unsafe extern "C" fn(*mut c_int) -> NvrtcResult>("nvrtcGetSupportedArchs")?;
        let mut n = 0;
        // SAFETY: a valid out-pointer, then a buffer of the size NVRTC gave.
        self.check("nvrtcGetNumSupportedArchs", unsafe { count(&mut n) })?;
        let mut archs = vec![0; n.max(0) as usize];
        self.check("nvrtcGetSupportedArchs", unsafe { list(archs.as_mut_ptr()) })?;
        Ok(archs)
    }

    /// Compiles one source; `output` is `None` when the source does not compile (the log says why).
    fn compile(&self, source: &[u8], name: &str, options: &[String], kind: Output) -> Result<Compiled> {
        type Create = unsafe extern "C" fn(
            *mut Program,
            *const c_char,
            *const c_char,
            c_int,
            *const *const c_char,
            *const *const c_char,
        ) -> NvrtcResult;
        type CompileFn = unsafe extern "C" fn(Program, c_int, *const *const c_char) -> NvrtcResult;
        type Size = unsafe extern "C" fn(Program, *mut usize) -> NvrtcResult;
        type Get = unsafe extern "C" fn(Program, *mut c_char) -> NvrtcResult;
        type Destroy = unsafe extern "C" fn(*mut Program) -> NvrtcResult;
        let create = self.sym::<Create>("nvrtcCreateProgram")?;
        let compile = self.sym::<CompileFn>("nvrtcCompileProgram")?;
        let log_size = self.sym::<Size>("nvrtcGetProgramLogSize")?;
        let log = self.sym::<Get>("nvrtcGetProgramLog")?;
        let (out_size, out) = match kind {
            Output::Cubin => (self.sym::<Size>("nvrtcGetCUBINSize")?, self.sym::<Get>("nvrtcGetCUBIN")?),
            Output::Ptx => (self.sym::<Size>("nvrtcGetPTXSize")?, self.sym::<Get>("nvrtcGetPTX")?),
        };
        let destroy = self.sym::<Destroy>("nvrtcDestroyProgram")?;

        let source = CString::new(source).context("the kernel file holds a NUL byte")?;
        let name = CString::new(name).context("the kernel file's name holds a NUL byte")?;
        let options: Vec<CString> = options
            .iter()
            .map(|o| CString::new(o.as_str()))
            .collect::<Result<_, _>>()
            .context("an option holds NUL")?;
        let option_ptrs: Vec<*const c_char> = options.iter().map(|o| o.as_ptr()).collect();
        let mut prog: Program = std::ptr::null_mut();
        // SAFETY: NUL-terminated strings that outlive the call; no headers passed.
        let r = unsafe { create(&mut prog, source.as_ptr(), name.as_ptr(), 0, std::ptr::null(), std::ptr::null()) };
        self.check("nvrtcCreateProgram", r)?;
        let read = |size: &Size, get: &Get| -> Result<Vec<u8>> {
            let mut n = 0usize;
            // SAFETY: `prog` is a live program; the buffer has the size NVRTC reported.
            self.check("reading NVRTC's output size", unsafe { size(prog, &mut n) })?;
            let mut buf = vec![0u8; n];
            self.check("reading NVRTC's output", unsafe { get(prog, buf.as_mut_ptr().cast()) })?;
            Ok(buf)
        };
        // SAFETY: `prog` is live and the option pointers outlive the call.
        let r = unsafe { compile(prog, option_ptrs.len() as c_int, option_ptrs.as_ptr()) };
        let result = (|| {
            let mut log_bytes = read(&log_size, &log)?;
            while log_bytes.last() == Some(&0) {
                log_bytes.pop();
            }
            let log = String::from_utf8_lossy(&log_bytes).into_owned();
            if r != 0 {
                // An option NVRTC refuses is an error of the command line; a compile error is in the log.
                if log.trim().is_empty() {
                    self.check("nvrtcCompileProgram", r)?;
                }
                return Ok(Compiled { log, output: None });
            }
            let mut bytes = read(&out_size, &out)?;
            if kind == Output::Ptx {
                while bytes.last() == Some(&0) {
                    bytes.pop();
                }
            }
            Ok(Compiled { log, output: Some(bytes) })
        })();
        // SAFETY: destroys the program created above, once.
        unsafe { destroy(&mut prog) };
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn nvcc_words_become_nvrtc_options() {
        let req = parse(&words(
            "-cubin -gencode arch=compute_90a,code=sm_90a -O3 -lineinfo -Xptxas -v -I kernels -Iinclude \
             --use_fast_math -MD -MF k.d -o k.cubin kernels/k.cu",
        ))
        .unwrap();
        let Request::Compile(c) = req else { panic!("{req:?}") };
        assert_eq!(c.output, Some(Output::Cubin));
        assert_eq!(c.options, words("-arch=sm_90a -lineinfo -Xptxas -v -Ikernels -Iinclude --use_fast_math"));
        assert_eq!(c.include_dirs, [PathBuf::from("kernels"), PathBuf::from("include")]);
        assert_eq!(c.depfile, Some("k.d".into()));
        assert_eq!(c.out, Some("k.cubin".into()));
        assert_eq!(c.source, Some("kernels/k.cu".into()));
        assert_eq!(parse(&words("--version")).unwrap(), Request::Version);
        assert!(parse(&words("-cubin a.cu b.cu")).is_err());
        assert!(parse(&words("-cubin -o")).is_err());
    }

    #[test]
    fn the_dependency_scan_follows_project_headers_only() {
        let tmp = tempfile::tempdir().unwrap();
        let k = tmp.path().join("kernels");
        let inc = tmp.path().join("include");
        std::fs::create_dir_all(k.join("sub")).unwrap();
        std::fs::create_dir_all(&inc).unwrap();
        std::fs::write(
            k.join("a.cu"),
            "#include <stdint.h>\n  #  include \"sub/b.cuh\"\n#include <shared.h>\n#include \"a.cu\"\n",
        )
        .unwrap();
        std::fs::write(k.join("sub/b.cuh"), "#include \"c.cuh\"\n#include \"missing.h\"\n").unwrap();
        std::fs::write(k.join("sub/c.cuh"), "// leaf\n").unwrap();
        std::fs::write(inc.join("shared.h"), "#pragma once\n").unwrap();
        let deps = dependencies(&k.join("a.cu"), std::slice::from_ref(&inc));
        assert_eq!(deps, [k.join("a.cu"), k.join("sub/b.cuh"), inc.join("shared.h"), k.join("sub/c.cuh")]);
        let rule = make_rule(Path::new("out dir/k.cubin"), &deps[..1]);
        assert!(rule.starts_with("out\\ dir/k.cubin : \\\n"), "{rule}");
        assert!(rule.ends_with(&format!("{}\n", k.join("a.cu").display())), "{rule}");
    }
}
