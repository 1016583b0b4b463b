//! `cargo gpu new` and `cargo gpu init` through the real binary: each template generated into a
//! temporary folder and built with the real nvcc, its SASS read with cuobjdump (HGMMA in the
//! Hopper GEMM; TMA, mbarriers, UTCHMMA and the TMEM allocation and loads in the Blackwell one),
//! the kit copied byte for byte, the git repository and `.gitignore` of a new project (checked
//! with the real git), init's edit of a hand-written manifest, the expected SASS instructions the
//! templates declare, and every refusal (bad names, existing folders, existing
//! `[package.metadata.gpu]`).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{
    cargo_gpu, cuobjdump, fake_nvidia_smi, path_with, repo_root, require_cuda, templates_target_dir, Run, TestProject,
};

/// `cargo-gpu gpu ARGS` in `dir`, with the given toolkit, a private cache and a target folder
/// shared by these tests (so cudarc is compiled once).
fn gpu(dir: &Path, cuda: Option<&Path>, args: &[&str]) -> Command {
    let mut c = cargo_gpu(args);
    c.current_dir(dir);
    c.env("CARGO_GPU_CACHE_DIR", dir.join(".cargo-gpu-cache"));
    c.env("CARGO_TARGET_DIR", templates_target_dir());
    // Whether `new` makes a repository must not depend on a repository above the temporary folder.
    c.env("GIT_CEILING_DIRECTORIES", std::env::temp_dir());
    match cuda {
        Some(h) => c.env("CUDA_HOME", h),
        None => c.env_remove("CUDA_HOME"),
    };
    c
}

fn run(mut c: Command) -> Run {
    Run::of(&mut c)
}

/// `git ARGS` in `dir`, to see what `new` made.
fn git(dir: &Path, args: &[&str]) -> Run {
    let mut c = Command::new("git");
    c.args(args).current_dir(dir).env("GIT_CEILING_DIRECTORIES", std::env::temp_dir());
    c.env_remove("GIT_DIR").env_remove("GIT_WORK_TREE");
    run(c)
}

/// A PATH holding a fake `nvidia-smi` that prints `output` (or fails when it is None), so the
/// basic template's target does not depend on this machine's GPU.
fn fake_smi_path(dir: &Path, output: Option<&str>) -> std::ffi::OsString {
    let bin = dir.join("fake-bin");
    fake_nvidia_smi(&bin, output);
    path_with(&bin)
}

fn cuobjdump_sass(cuda: &Path, cubin: &Path) -> String {
    cuobjdump(cuda, &["-sass"], cubin)
}

fn sass_lines<'a>(sass: &'a str, mnemonic: &str) -> Vec<&'a str> {
    sass.lines().filter(|l| l.contains(mnemonic)).collect()
}

fn manifest(dir: &Path) -> toml::Table {
    toml::from_str(&std::fs::read_to_string(dir.join("Cargo.toml")).unwrap()).unwrap()
}

/// Generates `name` from `template`, checks what was written, builds it and returns the package.
fn generate_and_build(tmp: &Path, cuda: &Path, name: &str, template: &str, expect_target: &str) -> PathBuf {
    let mut new = gpu(tmp, Some(cuda), &["new", name, "--template", template]);
    new.env("PATH", fake_smi_path(tmp, None));
    let created = run(new).ok();
    created.stderr_has(&format!("Created `{template}` project `{name}` for {expect_target}"));
    let dir = tmp.join(name);
    let kit = std::fs::read(dir.join("src/kit.rs")).unwrap();
    assert_eq!(
        kit,
        std::fs::read(repo_root().join("templates/kit/kit.rs")).unwrap(),
        "src/kit.rs is the kit, byte for byte"
    );
    let m = manifest(&dir);
    let gpu_table = &m["package"]["metadata"]["gpu"];
    assert_eq!(gpu_table["targets"].as_array().unwrap()[0].as_str(), Some(expect_target));
    assert_eq!(gpu_table["runner"].as_str(), Some(name));
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    assert!(readme.contains("cargo gpu remote-run") && readme.contains(name), "{readme}");
    assert!(!readme.contains("{{"), "placeholders left in the README");

    run(gpu(&dir, Some(cuda), &["build", "--release"])).ok().stderr_has(&format!("[{expect_target}] package"));
    let pkg = templates_target_dir().join("gpu/release").join(name);
    assert!(pkg.join("bin").join(name).is_file(), "the runner is in the package");
    // The runner explains itself without a GPU.
    let help = Command::new(pkg.join("bin").join(name)).arg("--help").output().unwrap();
    assert!(help.status.success() && String::from_utf8_lossy(&help.stdout).contains("usage:"));
    let usage = Command::new(pkg.join("bin").join(name)).arg("--bogus").output().unwrap();
    assert_eq!(usage.status.code(), Some(2), "an unknown option is a usage error");
    pkg
}

#[test]
fn basic_template_builds_and_its_kit_tests_pass_on_their_own() {
    let Some(cuda) = require_cuda() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let pkg = generate_and_build(tmp.path(), &cuda, "my-kernels", "basic", "sm_90a");
    let sass = cuobjdump_sass(&cuda, &pkg.join("kernels/vector_add.sm_90a.cubin"));
    assert!(sass.contains("vector_add"), "{sass}");
    // The generated project is a crate of its own: its tests (the kit's among them) pass there.
    let mut test = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    test.args(["test", "--quiet"])
        .current_dir(tmp.path().join("my-kernels"))
        .env("CARGO_TARGET_DIR", templates_target_dir());
    let out = run(test).ok();
    assert!(
        out.stdout.contains("a_skipped_last_element_fails_with_its_index") || out.stdout.contains("test result: ok")
    );
}

#[test]
fn hopper_template_builds_hgmma() {
    let Some(cuda) = require_cuda() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let pkg = generate_and_build(tmp.path(), &cuda, "hgemm", "hopper-wgmma", "sm_90a");
    let sass = cuobjdump_sass(&cuda, &pkg.join("kernels/hgemm.sm_90a.cubin"));
    // Four tile widths, each built for fp32 and bf16 C, alone and in pairs: four wgmma per
    // 64-wide K slice in each.
    for width in [256, 240, 192, 128] {
        let hgmma = sass_lines(&sass, &format!("HGMMA.64x{width}x16.F32.BF16"));
        assert_eq!(hgmma.len(), 16, "128 x {width} tiles: {hgmma:#?}");
    }
    let hgmma = sass_lines(&sass, "HGMMA.64x256x16.F32.BF16");
    assert!(!sass_lines(&sass, "UTMALDG.2D").is_empty(), "TMA loads");
    // The 8 pair kernels each multicast their half of B.
    assert_eq!(sass_lines(&sass, "UTMALDG.2D.MULTICAST").len(), 8, "B shared in clusters of two");
    assert!(!sass_lines(&sass, "UTMASTG.2D").is_empty(), "the TMA-store epilogue");
    assert!(!sass_lines(&sass, "WARPGROUP.ARRIVE").is_empty());
    assert!(!sass_lines(&sass, "USETMAXREG").is_empty(), "producer and consumers rebalance registers");
    println!("{}", hgmma.join("\n"));
}

/// The Blackwell GEMM's pipeline as its sm_100a SASS shows it, release and debug (`-G`) builds
/// alike, with the PTX each comes from: the instructions `[package.metadata.gpu.expect]` must
/// name for `tcgen05_gemm`.
const TCGEN05_PIPELINE: [(&str, &str); 6] = [
    ("UTMALDG", "cp.async.bulk.tensor: the producer's TMA loads"),
    ("SYNCS.ARRIVE.TRANS64", "mbarrier.arrive.expect_tx: the producer announces a stage's bytes"),
    ("SYNCS.PHASECHK.TRANS64.TRYWAIT", "mbarrier.try_wait.parity: every role waits for its stage"),
    ("UTCHMMA", "tcgen05.mma"),
    ("UTCBAR", "tcgen05.commit: stages back to the producer, the accumulator to the epilogue"),
    ("LDTM", "tcgen05.ld: the epilogue reads the accumulator from tensor memory"),
];

#[test]
fn blackwell_template_builds_the_whole_tcgen05_pipeline() {
    let Some(cuda) = require_cuda() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let pkg = generate_and_build(tmp.path(), &cuda, "bgemm", "blackwell-tcgen05", "sm_100a");
    let sass = cuobjdump_sass(&cuda, &pkg.join("kernels/tcgen05_gemm.sm_100a.cubin"));
    for (instruction, what) in TCGEN05_PIPELINE {
        assert!(!sass_lines(&sass, instruction).is_empty(), "no {instruction} ({what}) in the SASS:\n{sass}");
    }
    // mbarrier.init; a -G build stores the barrier with STS.64 instead, hence not in `expect`.
    assert_eq!(sass_lines(&sass, "SYNCS.EXCH.64").len(), 9, "full and empty for each of 4 stages, done");
    let mma = sass_lines(&sass, "UTCHMMA");
    assert_eq!(mma.len(), 4, "four tcgen05.mma (K = 16) per 64-wide K stage: {mma:#?}");
    assert_eq!(sass_lines(&sass, "UTMALDG.2D").len(), 2, "one TMA load for A, one for B");
    assert_eq!(sass_lines(&sass, "UTCBAR").len(), 2, "a commit per stage and one for the epilogue");
    assert_eq!(sass_lines(&sass, "LDTM.x32").len(), 1, "the epilogue loads 32 columns at a time");
    assert!(!sass_lines(&sass, "UTCATOMSWS.FIND_AND_SET").is_empty(), "tcgen05.alloc");
    assert!(!sass_lines(&sass, "UTCATOMSWS.AND").is_empty(), "tcgen05.dealloc");
    println!("{}", mma.join("\n"));

    // The debug (-G) build passes the same `expect` table.
    let dir = tmp.path().join("bgemm");
    run(gpu(&dir, Some(&cuda), &["build"])).ok().stderr_has("[sm_100a] package");
    let debug = templates_target_dir().join("gpu/debug/bgemm/kernels/tcgen05_gemm.sm_100a.cubin");
    let sass = cuobjdump_sass(&cuda, &debug);
    for (instruction, what) in TCGEN05_PIPELINE {
        assert!(!sass_lines(&sass, instruction).is_empty(), "no {instruction} ({what}) in the -G SASS");
    }
}

/// The template and kernels-example both make the build fail when the Blackwell GEMM's SASS
/// lacks a step of its pipeline.
#[test]
fn blackwell_pipeline_is_expected_by_the_template_and_the_example() {
    let template = cargo_gpu::templates::find("blackwell-tcgen05").unwrap();
    let declared: toml::Table = toml::from_str(template.expect).unwrap();
    let example = manifest(&repo_root().join("kernels-example"));
    let example_expect = &example["package"]["metadata"]["gpu"]["expect"];
    for (source, table) in
        [("the template", &declared["tcgen05_gemm"]), ("kernels-example", &example_expect["tcgen05_gemm"])]
    {
        let listed: Vec<&str> = table["sm_100a"].as_array().unwrap().iter().map(|i| i.as_str().unwrap()).collect();
        for (instruction, what) in TCGEN05_PIPELINE {
            assert!(listed.contains(&instruction), "{source} does not expect {instruction} ({what}): {listed:?}");
        }
    }
}

#[test]
fn basic_template_targets_the_local_gpu() {
    let tmp = tempfile::tempdir().unwrap();
    let mut new = gpu(tmp.path(), None, &["new", "consumer"]);
    new.env("PATH", fake_smi_path(tmp.path(), Some("NVIDIA GeForce RTX 5060 Ti, 12.0, 580.95.05")));
    run(new).ok().stderr_has("for sm_120a (the local GPU: NVIDIA GeForce RTX 5060 Ti)");
    let m = manifest(&tmp.path().join("consumer"));
    assert_eq!(m["package"]["metadata"]["gpu"]["targets"].as_array().unwrap()[0].as_str(), Some("sm_120a"));

    let mut new = gpu(tmp.path(), None, &["new", "nogpu"]);
    new.env("PATH", fake_smi_path(tmp.path(), None));
    run(new).ok().stderr_has("for sm_90a (no local GPU; Hopper)");
}

#[test]
fn bad_names_are_refused_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    for (args, why) in [
        (vec!["new", "1gemm"], "`1gemm` is not a valid crate name: it starts with a digit"),
        (vec!["new", "my kernels"], "` ` is not allowed"),
        (vec!["new", "fn"], "it is a Rust keyword"),
        (vec!["new", "ok-folder", "--name", "std"], "cargo reserves it"),
    ] {
        let r = run(gpu(tmp.path(), None, &args)).fails_with(1);
        r.stderr_has(why);
    }
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "nothing was written");
    run(gpu(tmp.path(), None, &["new", "x", "--template", "ampere"])).fails_with(2).stderr_has("hopper-wgmma");
}

#[test]
fn new_refuses_to_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("taken");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("keep.txt"), "mine").unwrap();
    run(gpu(tmp.path(), None, &["new", "taken"])).fails_with(1).stderr_has("refusing to overwrite");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    assert_eq!(std::fs::read_to_string(dir.join("keep.txt")).unwrap(), "mine");
}

/// A crate with a manifest the way people write them: comments, one of them on a header.
fn existing_crate(dir: &Path) -> String {
    let manifest = "# An existing crate.\n[package]\nname = \"existing\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
                    [dependencies] # none yet\n\n[profile.dev]\nopt-level = 1 # keep tests quick\n";
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
    std::fs::write(dir.join("src/main.rs"), "fn main() {}\n").unwrap();
    manifest.to_string()
}

#[test]
fn init_adds_metadata_kernels_and_a_runner_that_builds() {
    let Some(cuda) = require_cuda() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("existing");
    existing_crate(&dir);
    let mut init = gpu(&dir, Some(&cuda), &["init", "--template", "hopper-wgmma"]);
    init.env("PATH", fake_smi_path(tmp.path(), None));
    run(init).ok().stderr_has("Added [package.metadata.gpu] for sm_90a");
    let m = manifest(&dir);
    assert_eq!(m["package"]["metadata"]["gpu"]["runner"].as_str(), Some("gpu-runner"));
    let expected = m["package"]["metadata"]["gpu"]["expect"]["hgemm"]["sm_90a"].as_array().unwrap();
    assert!(expected.iter().any(|i| i.as_str() == Some("HGMMA")), "the template's expected instructions come along");
    assert!(m["dependencies"]["cudarc"].is_table());
    let edited = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    for kept in [
        "# An existing crate.\n[package]\n",
        "\n[dependencies] # none yet\ncudarc = ",
        "opt-level = 1 # keep tests quick\n",
    ] {
        assert!(edited.contains(kept), "{kept:?} was not kept:\n{edited}");
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("src/main.rs")).unwrap(),
        "fn main() {}\n",
        "the crate's own code is kept"
    );
    assert_eq!(
        std::fs::read(dir.join("src/bin/gpu-runner/kit.rs")).unwrap(),
        std::fs::read(repo_root().join("templates/kit/kit.rs")).unwrap()
    );
    run(gpu(&dir, Some(&cuda), &["build"])).ok();
    let pkg = templates_target_dir().join("gpu/debug/existing");
    assert!(pkg.join("bin/gpu-runner").is_file());
    let sass = cuobjdump_sass(&cuda, &pkg.join("kernels/hgemm.sm_90a.cubin"));
    assert!(sass.contains("HGMMA"));

    // Again: the table is there now.
    let before = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    run(gpu(&dir, None, &["init"])).fails_with(1).stderr_has("already has [package.metadata.gpu]");
    assert_eq!(std::fs::read_to_string(dir.join("Cargo.toml")).unwrap(), before);
}

#[test]
fn init_under_autobins_false_adds_a_runner_bin_that_builds() {
    let Some(cuda) = require_cuda() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("no-autobins");
    let original = "[package]\nname = \"no-autobins\"\nversion = \"0.1.0\"\nedition = \"2021\"\nautobins = false\n\n\
                    [[bin]]\nname = \"no-autobins\"\npath = \"src/main.rs\"\n";
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("Cargo.toml"), original).unwrap();
    std::fs::write(dir.join("src/main.rs"), "fn main() {}\n").unwrap();
    let mut init = gpu(&dir, Some(&cuda), &["init"]);
    init.env("PATH", fake_smi_path(tmp.path(), None));
    run(init).ok();
    let bins: Vec<String> =
        manifest(&dir)["bin"].as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(bins, ["no-autobins", "gpu-runner"]);
    // Without the [[bin]] cargo would not build src/bin/gpu-runner/ and the package would lack it.
    run(gpu(&dir, Some(&cuda), &["build"])).ok();
    let pkg = templates_target_dir().join("gpu/debug/no-autobins");
    assert!(pkg.join("bin/gpu-runner").is_file());
    assert!(pkg.join("kernels/vector_add.sm_90a.cubin").is_file());
}

#[test]
fn new_makes_a_git_repository_that_ignores_target() {
    let tmp = tempfile::tempdir().unwrap();
    run(gpu(tmp.path(), None, &["new", "fresh", "--template", "hopper-wgmma"])).ok();
    let dir = tmp.path().join("fresh");
    assert!(dir.join(".git").is_dir(), "git init ran in the project");
    assert_eq!(std::fs::read_to_string(dir.join(".gitignore")).unwrap(), "/target\n");
    let top = git(&dir, &["rev-parse", "--show-toplevel"]).ok();
    assert_eq!(Path::new(top.stdout.trim()), dir.canonicalize().unwrap());
    git(&dir, &["check-ignore", "--quiet", "target/gpu/release/fresh/bin/fresh"]).ok();
    // Like cargo new: nothing committed, every generated file waiting to be added.
    let status = git(&dir, &["status", "--porcelain", "--untracked-files=all"]).ok();
    for file in [".gitignore", "Cargo.toml", "src/kit.rs", "kernels/hgemm.cu"] {
        assert!(status.stdout.contains(&format!("?? {file}\n")), "{file}: {}", status.stdout);
    }
}

#[test]
fn new_inside_a_repository_makes_no_nested_one() {
    let tmp = tempfile::tempdir().unwrap();
    let outer = tmp.path().join("outer");
    std::fs::create_dir(&outer).unwrap();
    git(&outer, &["init", "--quiet"]).ok();
    std::fs::write(outer.join(".gitignore"), "/scratch/\n").unwrap();
    let hopper = ["--template", "hopper-wgmma"];

    run(gpu(&outer, None, &[&["new", "inner"][..], &hopper].concat())).ok();
    let inner = outer.join("inner");
    assert!(inner.join("Cargo.toml").is_file());
    assert!(!inner.join(".git").exists(), "no repository inside the repository");
    let top = git(&inner, &["rev-parse", "--show-toplevel"]).ok();
    assert_eq!(Path::new(top.stdout.trim()), outer.canonicalize().unwrap(), "it belongs to the outer repository");
    git(&outer, &["check-ignore", "--quiet", "inner/target/x"]).ok();

    // As with cargo new, a folder the repository ignores is no part of it: the project gets its own.
    run(gpu(&outer, None, &[&["new", "scratch/mine"][..], &hopper].concat())).ok();
    assert!(outer.join("scratch/mine/.git").is_dir());
    // Asked for by name, a repository is made even inside another.
    run(gpu(&outer, None, &[&["new", "forced", "--vcs", "git"][..], &hopper].concat())).ok();
    assert!(outer.join("forced/.git").is_dir());
    run(gpu(&outer, None, &[&["new", "bare", "--vcs", "none"][..], &hopper].concat())).ok();
    assert!(outer.join("bare/Cargo.toml").is_file());
    assert!(!outer.join("bare/.git").exists() && !outer.join("bare/.gitignore").exists());
}

#[test]
fn new_without_git_still_writes_the_gitignore_and_raises_no_alarm() {
    let tmp = tempfile::tempdir().unwrap();
    let empty_path = tmp.path().join("no-tools");
    std::fs::create_dir(&empty_path).unwrap();
    let mut new = gpu(tmp.path(), None, &["new", "offline", "--template", "hopper-wgmma"]);
    new.env("PATH", &empty_path);
    let out = run(new).ok();
    for alarm in ["warning", "error", "git"] {
        assert!(!out.stderr.contains(alarm), "{alarm}: {}", out.stderr);
    }
    let dir = tmp.path().join("offline");
    assert_eq!(std::fs::read_to_string(dir.join(".gitignore")).unwrap(), "/target\n");
    assert!(!dir.join(".git").exists());

    // Asked for by name, git's absence is an error, before anything is written.
    let mut forced = gpu(tmp.path(), None, &["new", "forced", "--vcs", "git", "--template", "hopper-wgmma"]);
    forced.env("PATH", &empty_path);
    run(forced).fails_with(1).stderr_has("failed to find git, which --vcs git asks for");
    assert!(!tmp.path().join("forced").exists());
}

#[test]
fn init_refuses_to_overwrite_files_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("existing");
    let manifest = existing_crate(&dir);
    std::fs::create_dir_all(dir.join("kernels")).unwrap();
    std::fs::write(dir.join("kernels/vector_add.cu"), "// mine\n").unwrap();
    let mut init = gpu(&dir, None, &["init"]);
    init.env("PATH", fake_smi_path(tmp.path(), None));
    run(init).fails_with(1).stderr_has("refusing to overwrite 1 file");
    assert_eq!(std::fs::read_to_string(dir.join("Cargo.toml")).unwrap(), manifest);
    assert_eq!(std::fs::read_to_string(dir.join("kernels/vector_add.cu")).unwrap(), "// mine\n");
    assert!(!dir.join("src/bin").exists());

    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    run(gpu(&empty, None, &["init"])).fails_with(1).stderr_has("Cargo.toml does not exist");
}

#[test]
fn example_kernels_are_the_templates_kernels() {
    for (example, template) in [
        ("vector_add.cu", "basic/kernels/vector_add.cu"),
        ("hgemm.cu", "hopper-wgmma/kernels/hgemm.cu"),
        ("tcgen05_gemm.cu", "blackwell-tcgen05/kernels/tcgen05_gemm.cu"),
    ] {
        // One file, two projects: the example's kernels are links to the templates' kernels.
        let a = repo_root().join("kernels-example/kernels").join(example).canonicalize().unwrap();
        let b = repo_root().join("templates").join(template).canonicalize().unwrap();
        assert_eq!(a, b, "kernels-example/kernels/{example} must link to templates/{template}");
    }
    let main = std::fs::read_to_string(repo_root().join("kernels-example/src/main.rs")).unwrap();
    for path in [
        "../../templates/kit/kit.rs",
        "../../templates/basic/src/vector_add.rs",
        "../../templates/hopper-wgmma/src/hgemm.rs",
        "../../templates/blackwell-tcgen05/src/tcgen05_gemm.rs",
    ] {
        assert!(main.contains(&format!("#[path = \"{path}\"]")), "kernels-example uses {path}");
    }
}

#[test]
fn example_builds_every_kernel_for_hopper_and_blackwell() {
    let Some(cuda) = require_cuda() else { return };
    let p = TestProject::new("kernels-example", Some(cuda.clone()));
    let mut build = p.cmd(&["build", "--release", "--target", "sm_90a", "--target", "sm_100a"]);
    Run::of(build.env("CARGO_TARGET_DIR", templates_target_dir())).ok();
    let pkg = templates_target_dir().join("gpu/release/kernels-example");
    let sass = |name: &str| cuobjdump_sass(&cuda, &pkg.join("kernels").join(name));
    assert_eq!(sass_lines(&sass("hgemm.sm_90a.cubin"), "HGMMA.64x256x16.F32.BF16").len(), 16);
    assert_eq!(sass_lines(&sass("tcgen05_gemm.sm_100a.cubin"), "UTCHMMA").len(), 4);
    // Each GEMM built for the other architecture is a stub that traps, not a build failure.
    for stub in ["hgemm.sm_100a.cubin", "tcgen05_gemm.sm_90a.cubin"] {
        let s = sass(stub);
        assert!(!s.contains("HGMMA") && !s.contains("UTCHMMA") && s.contains("BPT.TRAP"), "{stub}: {s}");
    }
    let runner = pkg.join("bin/vector-add");
    let help = Command::new(&runner).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(help.status.success() && text.contains("hgemm") && text.contains("tcgen05-gemm"), "{text}");
    let hgemm_help = Command::new(&runner).args(["hgemm", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&hgemm_help.stdout).contains("MxNxK"));
    let bad = Command::new(&runner).arg("sgemm").output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown kernel `sgemm`"));
    let bad_k = Command::new(&runner).args(["hgemm", "100x100x100"]).output().unwrap();
    assert_eq!(bad_k.status.code(), Some(2), "K must be a multiple of 8 (TMA strides)");
}

/// Each template's Cargo.toml declares the instructions its kernels must have, for kernels the
/// template has and targets it builds, in a table the build reads; `init` adds the same.
#[test]
fn hopper_and_blackwell_templates_declare_their_expected_instructions() {
    use cargo_gpu::templates::{find, project_files, Vars};
    for (name, kernel, target, instruction) in
        [("hopper-wgmma", "hgemm", "sm_90a", "HGMMA"), ("blackwell-tcgen05", "tcgen05_gemm", "sm_100a", "UTCHMMA")]
    {
        let template = find(name).unwrap();
        let targets = template.targets.iter().map(|t| t.parse().unwrap()).collect();
        let files = project_files(template, &Vars { name: "x".into(), targets, expect: template.expect }).unwrap();
        let (_, cargo_toml) = files.iter().find(|(p, _)| p == Path::new("Cargo.toml")).unwrap();
        let value: toml::Table = toml::from_str(cargo_toml).unwrap_or_else(|e| panic!("{e}\n{cargo_toml}"));
        let json = serde_json::to_value(&value["package"]["metadata"]["gpu"]).unwrap();
        let gpu = cargo_gpu::project::GpuMetadata::from_value(&json, Path::new("Cargo.toml")).unwrap();
        assert_eq!(gpu.expect.keys().collect::<Vec<_>>(), [kernel], "{cargo_toml}");
        let per_target = &gpu.expect[kernel];
        assert_eq!(per_target.keys().map(|t| t.to_string()).collect::<Vec<_>>(), [target], "{cargo_toml}");
        assert!(per_target.values().next().unwrap().iter().any(|i| i == instruction), "{cargo_toml}");
        assert!(files.iter().any(|(p, _)| p == Path::new(&format!("kernels/{kernel}.cu"))));
    }
}
