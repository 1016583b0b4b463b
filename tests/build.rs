//! `cargo gpu build` against the real nvcc: outputs, freshness, profiles and every bad input.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use support::{cuda_home, cuobjdump, fake_nvcc, repo_root, require_cuda, required, Run, TestProject, BIN};

fn mtimes(dir: &Path) -> BTreeMap<PathBuf, SystemTime> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| (e.path().to_path_buf(), e.metadata().unwrap().modified().unwrap()))
        .collect()
}

#[test]
fn noop_rebuild_compiles_nothing_and_rewrites_nothing() {
    let Some(cuda) = require_cuda() else { return };
    let p = TestProject::new("tiny", Some(cuda));
    let first = p.run(&["build", "--target", "sm_90a", "--target", "sm_100a"]).ok();
    assert_eq!(
        first.compiled(),
        vec!["fill.cu (sm_100a)", "fill.cu (sm_90a)", "scale.cu (sm_100a)", "scale.cu (sm_90a)"]
    );
    first.stderr_has("(4 kernels compiled, 0 fresh)");
    let pkg = p.package("debug");
    let before = mtimes(&pkg);
    assert_eq!(before.len(), 6, "runner, 4 cubins, manifest: {before:?}");

    let second = p.run(&["build", "--target", "sm_90a", "--target", "sm_100a"]).ok();
    assert!(second.compiled().is_empty(), "{}", second.stderr);
    second.stderr_has("(0 kernels compiled, 4 fresh)");
    assert_eq!(mtimes(&pkg), before, "an unchanged build must rewrite nothing");
}

/// The remembered cargo command of `p`'s last build: the one early-start entry of its cache.
fn early_entry(p: &TestProject) -> PathBuf {
    let entries: Vec<PathBuf> = std::fs::read_dir(p.tmp.path().join("cache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|e| e.file_name().unwrap().to_string_lossy().starts_with("early-"))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries[0].clone()
}

#[test]
fn a_cargo_started_early_that_runs_another_command_is_killed_and_the_real_one_run() {
    let Some(cuda) = require_cuda() else { return };
    let p = TestProject::new("tiny", Some(cuda));
    let args = ["build", "--target", "sm_90a"];
    p.run(&args).ok();
    let entry = early_entry(&p);
    let remembered = std::fs::read_to_string(&entry).unwrap();
    assert!(remembered.contains("--message-format=json-render-diagnostics"), "{remembered}");

    // The same command line again, but the entry now names another command: it starts first,
    // is killed with its process group, and the runner's real build runs instead. The marker, a
    // fraction of a second added to `sleep`'s 30, names this test in the command line.
    let marker = format!("0.000{}", std::process::id());
    let program = replace_between(&remembered, "\"program\":\"", "\"", "sh");
    let tampered = with_args(&program, &format!("[\"-c\",\"sleep 30 {marker}; true\"]"));
    std::fs::write(&entry, tampered).unwrap();
    let second = p.run(&args).ok();
    second.stderr_has("(0 kernels compiled, 2 fresh)");
    assert_eq!(support::processes_with(&format!("sleep 30 {marker}")), Vec::<String>::new(), "outlived the build");
    assert_eq!(std::fs::read_to_string(&entry).unwrap(), remembered, "the real command is remembered again");

    // Remembered and unchanged: the third build takes over the cargo started early.
    p.run(&args).ok().stderr_has("(0 kernels compiled, 2 fresh)");
}

/// `text` with the value between `start` and the next `end` replaced by `with`.
fn replace_between(text: &str, start: &str, end: &str, with: &str) -> String {
    let from = text.find(start).unwrap() + start.len();
    let to = from + text[from..].find(end).unwrap();
    format!("{}{with}{}", &text[..from], &text[to..])
}

/// `text` (an early-start entry) with its `args` array replaced by `args`.
fn with_args(text: &str, args: &str) -> String {
    let from = text.find("\"args\":").unwrap() + "\"args\":".len();
    let to = from + text[from..].find(']').unwrap() + 1;
    format!("{}{args}{}", &text[..from], &text[to..])
}

#[test]
fn switching_targets_back_and_forth_compiles_each_only_once() {
    let Some(cuda) = require_cuda() else { return };
    let p = TestProject::new("tiny", Some(cuda.clone()));
    let kernels = |p: &TestProject| {
        let mut v: Vec<String> = std::fs::read_dir(p.package("debug").join("kernels"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    p.run(&["build", "--target", "sm_90a"]).ok().stderr_has("(2 kernels compiled, 0 fresh)");
    p.run(&["build", "--target", "sm_100a"]).ok().stderr_has("(2 kernels compiled, 0 fresh)");
    assert_eq!(kernels(&p), ["fill.sm_100a.cubin", "scale.sm_100a.cubin"], "the package holds only its targets");
    let back = p.run(&["build", "--target", "sm_90a"]).ok();
    assert!(back.compiled().is_empty(), "switching back compiles nothing: {}", back.stderr);
    back.stderr_has("(0 kernels compiled, 2 fresh)");
    assert_eq!(kernels(&p), ["fill.sm_90a.cubin", "scale.sm_90a.cubin"]);
    let out = cuobjdump(&cuda, &["-lelf"], &p.package("debug").join("kernels/fill.sm_90a.cubin"));
    assert!(out.contains("sm_90a"), "{out}");
    p.run(&["build", "--target", "sm_100a"]).ok().stderr_has("(0 kernels compiled, 2 fresh)");
}

#[test]
fn touching_a_header_recompiles_exactly_the_kernels_that_include_it() {
    let Some(cuda) = require_cuda() else { return };
    let p = TestProject::new("tiny", Some(cuda));
    p.run(&["build", "--target", "sm_90a", "--target", "sm_100a"]).ok();
    let pkg = p.package("debug");
    let fill_before = std::fs::metadata(pkg.join("kernels/fill.sm_90a.cubin")).unwrap().modified().unwrap();

    // Touch: same bytes, new modification time.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let header = p.path("kernels/common.cuh");
    let text = std::fs::read(&header).unwrap();
    std::fs::write(&header, text).unwrap();

    let again = p.run(&["build", "--target", "sm_90a", "--target", "sm_100a"]).ok();
    assert_eq!(again.compiled(), vec!["scale.cu (sm_100a)", "scale.cu (sm_90a)"]);
    let fill_after = std::fs::metadata(pkg.join("kernels/fill.sm_90a.cubin")).unwrap().modified().unwrap();
    assert_eq!(fill_before, fill_after);

    // A changed flag set (the release profile) is its own package and compiles everything once.
    let rel = p.run(&["build", "--target", "sm_90a", "--release"]).ok();
    assert_eq!(rel.compiled(), vec!["fill.cu (sm_90a)", "scale.cu (sm_90a)"]);
}

#[test]
fn removed_kernel_leaves_the_package_and_manifest() {
    let Some(cuda) = require_cuda() else { return };
    let p = TestProject::new("tiny", Some(cuda));
    p.run(&["build"]).ok();
    std::fs::remove_file(p.path("kernels/fill.cu")).unwrap();
    p.run(&["build"]).ok();
    let pkg = p.package("debug");
    assert!(!pkg.join("kernels/fill.sm_90a.cubin").exists());
    let manifest = std::fs::read_to_string(pkg.join("manifest.toml")).unwrap();
    assert!(!manifest.contains("fill"), "{manifest}");
    assert!(manifest.contains("kernels/scale.sm_90a.cubin"), "{manifest}");
}

#[test]
fn json_messages_name_every_artifact() {
    let Some(cuda) = require_cuda() else { return };
    let p = TestProject::new("tiny", Some(cuda));
    let run = p.run(&["build", "--message-format", "json", "-j", "1"]).ok();
    let msgs: Vec<serde_json::Value> = run.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let kinds: Vec<(&str, &str)> =
        msgs.iter().map(|m| (m["reason"].as_str().unwrap(), m["kind"].as_str().unwrap_or("-"))).collect();
    assert_eq!(
        kinds,
        vec![("gpu-artifact", "cubin"), ("gpu-artifact", "cubin"), ("gpu-artifact", "runner"), ("gpu-package", "-")]
    );
    assert_eq!(msgs[0]["kernel"], "fill");
    assert_eq!(msgs[0]["target"], "sm_90a");
    assert_eq!(msgs[0]["fresh"], false);
    assert!(Path::new(msgs[0]["path"].as_str().unwrap()).is_file());
    assert!(Path::new(msgs[2]["path"].as_str().unwrap()).is_file());
    assert_eq!(msgs[3]["profile"], "debug");
}

#[test]
fn example_builds_for_hopper_and_blackwell_with_and_without_debug_info() {
    let Some(cuda) = require_cuda() else { return };
    let p = TestProject::new("kernels-example", Some(cuda.clone()));
    // Keep one shared target folder for cudarc across test runs.
    let run = |args: &[&str]| Run::of(p.cmd(args).env("CARGO_TARGET_DIR", repo_root().join("target/test-example")));
    let target = repo_root().join("target/test-example/gpu");
    let _ = std::fs::remove_dir_all(&target);

    run(&["build", "--target", "sm_90a", "--target", "sm_100a"]).ok();
    run(&["build", "--target", "sm_90a", "--target", "sm_100a", "--release"]).ok();
    for (profile, debug) in [("debug", true), ("release", false)] {
        let pkg = target.join(profile).join("kernels-example");
        for t in ["sm_90a", "sm_100a"] {
            let cubin = pkg.join(format!("kernels/vector_add.{t}.cubin"));
            let elf = cuobjdump(&cuda, &["-elf"], &cubin);
            let arch = t.trim_start_matches("sm_");
            let headers: Vec<&str> = elf.lines().filter(|l| l.contains("ELF: type=")).collect();
            assert_eq!(headers.len(), 1, "one ELF in {}: {headers:?}", cubin.display());
            assert!(headers[0].contains(&format!("sm={arch},")), "{} holds {}", cubin.display(), headers[0]);
            assert_eq!(elf.contains(".debug_info"), debug, "{profile} {t}: .debug_info present = {debug}");
            assert!(elf.contains(".debug_line"), "{profile} {t}: line info is always kept");
            let sass = cuobjdump(&cuda, &["-sass"], &cubin);
            assert!(sass.contains(&format!("code for {t}")), "{sass}");
            assert!(!sass.contains("code for sm_") || sass.matches("code for sm_").count() == 1);
        }
        let manifest = std::fs::read_to_string(pkg.join("manifest.toml")).unwrap();
        assert!(manifest.contains(&format!("profile = \"{profile}\"")), "{manifest}");
        assert!(manifest.contains("[[runner]]\npath = \"bin/vector-add\"\ntriple = \""), "{manifest}");
        assert!(manifest.contains("glibc-floor = \"2.34\"\nglibc = \"2."), "{manifest}");
        assert!(manifest.contains("nvcc-version = \"13."), "{manifest}");
        assert!(manifest.contains("min-driver-cuda = \"13.0\""), "{manifest}");
        // Without a GPU the runner explains itself instead of crashing.
        let out = std::process::Command::new(pkg.join("bin/vector-add")).output().unwrap();
        if !Path::new("/dev/nvidia0").exists() {
            assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
            assert!(String::from_utf8_lossy(&out.stderr).contains("no NVIDIA driver"));
        }
    }
}

#[test]
fn unknown_target_is_a_usage_error_listing_valid_targets() {
    let p = TestProject::new("tiny", cuda_home());
    let run = p.run(&["build", "--target", "sm_99z"]).fails_with(2);
    run.stderr_has("invalid --target: `sm_99z` is not a GPU target; valid targets are: sm_75,");
    run.stderr_has("sm_90a, sm_100, sm_100a, sm_100f");
}

#[test]
fn target_too_new_for_the_installed_nvcc_is_refused_before_compiling() {
    let p = TestProject::new("tiny", None);
    let log = fake_nvcc(&p.tmp.path().join("old-cuda"), "12.4.131", "sm_50 sm_90");
    let run = p.run_with_env(&["build", "--target", "sm_100a"], &[("CUDA_HOME", p.tmp.path().join("old-cuda"))]);
    let run = run.fails_with(1);
    run.stderr_has("sm_100a needs CUDA 12.8 or newer, found 12.4");
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(calls.lines().all(|l| l == "--version" || l == "--list-gpu-code"), "compiled anyway: {calls}");
}

#[test]
fn missing_nvcc_says_where_it_looked_and_what_to_install() {
    let p = TestProject::new("tiny", None);
    // Hide the compiler scripts/setup.sh may have installed into this checkout.
    let no_venv = p.tmp.path().join("no-venv");
    let run =
        Run::of(p.cmd(&["build"]).env("PATH", "/usr/bin:/bin").env("CARGO_GPU_CUDA_VENV", &no_venv)).fails_with(1);
    if Path::new("/usr/local/cuda/bin/nvcc").exists() {
        return; // a system toolkit is found by design
    }
    run.stderr_has(&format!(
        "no CUDA compiler (nvcc) found: looked in $CARGO_GPU_NVCC, $CUDA_HOME/bin, $CUDA_PATH/bin, \
         /usr/local/cuda/bin, the toolchains in {}, PATH and {}/lib/python3*/site-packages/nvidia/cu13/bin",
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("no-cargo-gpu-home/toolchains").display(),
        no_venv.display()
    ));
    run.stderr_has("Run `cargo gpu toolchain install 13.0` (no root needed)");
    run.stderr_has("set CUDA_HOME");
}

/// nvcc in this checkout's `.venv-cuda`, where scripts/setup.sh (and so scripts/test.sh) installs
/// it when the machine has no CUDA toolkit.
fn checkout_venv_nvcc() -> Option<PathBuf> {
    let lib = repo_root().join(".venv-cuda/lib");
    let mut found: Vec<PathBuf> = std::fs::read_dir(lib)
        .ok()?
        .flatten()
        .map(|e| e.path().join("site-packages/nvidia/cu13/bin/nvcc"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.into_iter().next()
}

#[test]
fn a_new_shell_finds_the_compiler_setup_installed() {
    let how = "run scripts/test.sh (it installs the CUDA compiler there)";
    let Some(nvcc) = required(checkout_venv_nvcc(), "nvcc in this checkout's .venv-cuda", how) else { return };
    if ["/usr/local/cuda/bin/nvcc", "/usr/bin/nvcc", "/bin/nvcc"].iter().any(|n| Path::new(n).exists()) {
        eprintln!("skipping: a system nvcc comes first by design, so the checkout's one is never reached");
        return;
    }
    // The shell after scripts/setup.sh: no CUDA_HOME, no CUDA on PATH. Cargo and rustc come from
    // the toolchain that runs this test (its bin folder holds no nvcc).
    let cargo = PathBuf::from(std::env::var_os("CARGO").expect("cargo test sets CARGO"));
    let toolchain = cargo.parent().unwrap();
    assert!(!toolchain.join("nvcc").exists(), "{} must not hold nvcc", toolchain.display());
    let p = TestProject::new("tiny", None);
    let home = p.tmp.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let mut cmd = std::process::Command::new("env");
    cmd.arg("-i").arg(format!("PATH={}:/usr/bin:/bin", toolchain.display())).arg(format!("HOME={}", home.display()));
    for var in ["RUSTUP_HOME", "RUSTUP_TOOLCHAIN"] {
        if let Ok(v) = std::env::var(var) {
            cmd.arg(format!("{var}={v}"));
        }
    }
    cmd.arg(BIN).args(["gpu", "build", "-v", "--target", "sm_90a"]).current_dir(&p.dir);
    let run = Run::of(&mut cmd).ok();
    run.stderr_has(&format!("{} ", nvcc.display()));
    assert!(p.package("debug").join("kernels/fill.sm_90a.cubin").is_file(), "{}", run.stderr);
}

#[test]
fn syntax_error_shows_the_cu_file_and_line() {
    let Some(cuda) = require_cuda() else { return };
    let p = TestProject::new("tiny", Some(cuda));
    p.write("kernels/broken.cu", "extern \"C\" __global__ void broken(float* x) {\n    x[0] = not_declared;\n}\n");
    let run = p.run(&["build"]).fails_with(1);
    run.stderr_has("kernels/broken.cu(2): error: identifier \"not_declared\" is undefined");
    run.stderr_has("error: could not compile kernels/broken.cu for sm_90a");
    assert!(!p.package("debug").join("kernels/broken.sm_90a.cubin").exists());
}

#[test]
fn a_kernel_that_does_not_compile_stops_the_runner_build_instead_of_waiting_for_it() {
    let Some(cuda) = require_cuda() else { return };
    let p = TestProject::new("tiny", Some(cuda));
    // A runner whose build takes a minute: the build script sleeps, and says when it was stopped.
    let marker = p.path("build-finished");
    p.write("build.rs", &format!("fn main() {{ std::thread::sleep(std::time::Duration::from_secs(60)); std::fs::write({:?}, \"\").unwrap(); }}\n", marker.display().to_string()));
    p.write("kernels/broken.cu", "extern \"C\" __global__ void broken(float* x) {\n    x[0] = not_declared;\n}\n");
    let started = std::time::Instant::now();
    let run = p.run(&["build"]).fails_with(1);
    run.stderr_has("kernels/broken.cu(2): error: identifier \"not_declared\" is undefined");
    assert!(started.elapsed() < std::time::Duration::from_secs(40), "waited {:?} for the runner", started.elapsed());
    // Not left running either: no process of that build (cargo, the build script) lives on.
    let build_dir = p.path("target").display().to_string();
    support::wait_for("the runner build to be gone", std::time::Duration::from_secs(5), || {
        support::processes_with(&build_dir).is_empty()
    });
    assert!(!marker.exists());
}

#[test]
fn wgmma_for_plain_sm90_names_the_line_and_the_target_that_accepts_it() {
    let Some(cuda) = require_cuda() else { return };
    let p = TestProject::new("tiny", Some(cuda));
    p.write(
        "kernels/mma.cu",
        "extern \"C\" __global__ void mma() {\n    // fence before the async MMA\n    asm volatile(\"wgmma.fence.sync.aligned;\\n\" ::: \"memory\");\n}\n",
    );
    let run = p.run(&["build", "--target", "sm_90"]).fails_with(1);
    run.stderr_has("Instruction 'wgmma.fence' not supported on .target 'sm_90'");
    run.stderr_has("error: instruction `wgmma.fence` is not available on sm_90, at kernels/mma.cu:3");
    run.stderr_has("wgmma.fence.sync.aligned");
    run.stderr_has("help: `wgmma.fence` needs sm_90a: build with --target sm_90a");
    // The same kernel builds for sm_90a.
    p.run(&["build", "--target", "sm_90a"]).ok();
}

#[test]
fn tcgen05_for_hopper_points_at_blackwell_targets() {
    let Some(cuda) = require_cuda() else { return };
    let p = TestProject::new("tiny", Some(cuda));
    p.write(
        "kernels/tmem.cu",
        "extern \"C\" __global__ void tmem() {\n    __shared__ unsigned slot;\n    unsigned addr = (unsigned)__cvta_generic_to_shared(&slot);\n    asm volatile(\"tcgen05.alloc.cta_group::1.sync.aligned.shared::cta.b32 [%0], 32;\" :: \"r\"(addr) : \"memory\");\n}\n",
    );
    let run = p.run(&["build", "--target", "sm_90a"]).fails_with(1);
    run.stderr_has("error: instruction `tcgen05.alloc` is not available on sm_90a, at kernels/tmem.cu:4");
    run.stderr_has(
        "help: `tcgen05.alloc` needs sm_100a, sm_100f, sm_103a, sm_103f, sm_110a, sm_110f: build with --target sm_100a",
    );
    p.run(&["build", "--target", "sm_100a"]).ok();
}

#[test]
fn malformed_metadata_names_the_file_and_key() {
    let p = TestProject::new("tiny", cuda_home());
    let manifest = p.path("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text.replace("targets = [\"sm_90a\"]", "targets = \"sm_90a\"\nkernel-dir = \"k\""))
        .unwrap();
    let run = p.run(&["build"]).fails_with(1);
    run.stderr_has(&format!("invalid `[package.metadata.gpu]` in {}", manifest.display()));
    run.stderr_has("at key `");

    std::fs::write(&manifest, text.replace("targets = [\"sm_90a\"]", "targets = [\"sm_90a\", \"sm_99z\"]")).unwrap();
    let run = p.run(&["build"]).fails_with(1);
    run.stderr_has("at key `targets[1]`: `sm_99z` is not a GPU target");
}

#[test]
fn a_library_without_a_runner_binary_is_refused() {
    let p = TestProject::new("tiny", cuda_home());
    std::fs::remove_file(p.path("src/main.rs")).unwrap();
    p.write("src/lib.rs", "pub fn f() {}\n");
    let run = p.run(&["build"]).fails_with(1);
    run.stderr_has("package `tiny` has no binary to use as the host runner");
}

#[test]
fn manifest_path_that_does_not_exist() {
    let p = TestProject::new("tiny", cuda_home());
    let run = p.run(&["build", "--manifest-path", "nope/Cargo.toml"]).fails_with(1);
    run.stderr_has("manifest path `nope/Cargo.toml` does not exist");
}

#[test]
fn manifest_path_is_honoured_from_elsewhere() {
    let Some(cuda) = require_cuda() else { return };
    let p = TestProject::new("tiny", Some(cuda));
    let manifest = p.path("Cargo.toml");
    Run::of(p.cmd(&["build", "--manifest-path", manifest.to_str().unwrap()]).current_dir(p.tmp.path())).ok();
    assert!(p.package("debug").join("kernels/fill.sm_90a.cubin").is_file());
}

#[test]
fn cargo_target_dir_is_honoured() {
    let Some(cuda) = require_cuda() else { return };
    let p = TestProject::new("tiny", Some(cuda));
    let elsewhere = p.tmp.path().join("elsewhere");
    let run = Run::of(p.cmd(&["build", "-q"]).env("CARGO_TARGET_DIR", &elsewhere)).ok();
    assert!(run.stderr.is_empty(), "-q prints nothing: {}", run.stderr);
    assert!(elsewhere.join("gpu/debug/tiny/kernels/scale.sm_90a.cubin").is_file());
    assert!(!p.path("target/gpu").exists());
}

#[test]
fn verbose_prints_every_command_line() {
    let Some(cuda) = require_cuda() else { return };
    let p = TestProject::new("tiny", Some(cuda));
    let run = p.run(&["build", "-v"]).ok();
    let nvcc_lines: Vec<&str> = run.stderr.lines().filter(|l| l.contains("Running") && l.contains("-cubin")).collect();
    assert_eq!(nvcc_lines.len(), 2, "{}", run.stderr);
    assert!(nvcc_lines.iter().all(|l| l.contains("-gencode arch=compute_90a,code=sm_90a -G ")), "{nvcc_lines:?}");
    assert!(!run.stderr.contains("-lineinfo"), "debug builds never pass -lineinfo");
    run.stderr_has("cargo build --message-format=json-render-diagnostics");
}
