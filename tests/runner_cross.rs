//! Runners for any image: a floor older than this machine's glibc (`runner-glibc`) and an aarch64
//! runner, built with the real cargo-zigbuild and zig from PyPI, read back from their ELF headers
//! and started (the aarch64 one under qemu-user); and a remote that is an aarch64 machine, which
//! gets the package's aarch64 runner or a refusal that says how to get one.

mod support;

use std::path::{Path, PathBuf};

use cargo_gpu::compile::elf::required_glibc_of;
use cargo_gpu::config::seen_machine;
use cargo_gpu::package::manifest::{Manifest, RunnerEntry, MANIFEST_FILE};
use object::Object;
use support::{
    make_package, require_cuda, required, templates_target_dir, tree, write_exe, write_manifest, Remote, Run,
    SshdOptions, TestProject,
};

const ARM: &str = "aarch64-unknown-linux-gnu";
const X86: &str = "x86_64-unknown-linux-gnu";

/// The fixture runner (the kit and cudarc, one kernel) as package `name`, with `runner-glibc`.
fn project(name: &str, cuda: PathBuf, floor: &str) -> TestProject {
    let p = TestProject::new("fault-oob", Some(cuda));
    let manifest = std::fs::read_to_string(p.path("Cargo.toml")).unwrap();
    let manifest = manifest
        .replace("name = \"fault-oob\"", &format!("name = \"{name}\""))
        .replace("[package.metadata.gpu]\n", &format!("[package.metadata.gpu]\nrunner-glibc = \"{floor}\"\n"));
    p.write("Cargo.toml", &manifest);
    p
}

/// Where these builds go: the generated projects' target folder, so that cudarc compiles once
/// for this machine, and cargo-zigbuild with zig installed once beside it.
fn build(p: &TestProject, args: &[&str]) -> Run {
    let target = templates_target_dir();
    let mut c = p.cmd(&[&["build"], args].concat());
    c.env("CARGO_TARGET_DIR", &target).env("CARGO_GPU_HOME", target.join("cargo-gpu-home"));
    Run::of(&mut c).ok()
}

fn package_dir(name: &str) -> PathBuf {
    templates_target_dir().join("gpu/debug").join(name)
}

/// Forgets what an earlier run of this test taught the shared build state about `name`.
fn forget_zig_decisions(name: &str) {
    let state = templates_target_dir().join("gpu/debug/.build").join(name);
    for e in std::fs::read_dir(state).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with("runner-zigbuild-") {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
}

fn glibc_of(exe: &Path) -> (u32, u32) {
    required_glibc_of(exe).unwrap().expect("the runner links glibc")
}

/// A runner that starts without a GPU reports that there is no NVIDIA driver, with the kit's
/// setup exit code.
#[track_caller]
fn reports_no_driver(out: std::process::Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("no NVIDIA driver: libcuda.so could not be loaded"), "{stderr}");
}

#[test]
fn a_floor_older_than_this_machines_glibc_links_with_zigbuild_and_the_next_build_goes_there_directly() {
    let Some(cuda) = require_cuda() else { return };
    let name = "floor-2-28";
    forget_zig_decisions(name);
    let p = project(name, cuda, "2.28");
    let first = build(&p, &[]);
    first.stderr_has("Relinking the runner `floor-2-28` with cargo-zigbuild: the plain build needs glibc 2.3");
    first.stderr_has("newer than the floor 2.28 (`runner-glibc`)");
    let pkg = package_dir(name);
    let runner = pkg.join("bin").join(name);
    let need = glibc_of(&runner);
    assert!(need <= (2, 28), "the runner needs glibc {need:?}");
    let m = Manifest::read(&pkg).unwrap();
    assert_eq!(
        m.runners,
        [RunnerEntry {
            path: format!("bin/{name}"),
            triple: X86.into(),
            glibc_floor: "2.28".into(),
            glibc: Some(format!("{}.{}", need.0, need.1)),
        }]
    );
    if !Path::new("/dev/nvidia0").exists() {
        reports_no_driver(std::process::Command::new(&runner).output().unwrap());
    }
    // The next build knows: cargo-zigbuild at once, no plain build first.
    let again = build(&p, &["-v"]);
    assert!(!again.stderr.contains("Relinking"), "{}", again.stderr);
    let runner_builds: Vec<&str> = again.stderr.lines().filter(|l| l.contains(&format!("--bin {name}"))).collect();
    assert_eq!(runner_builds.len(), 1, "{runner_builds:?}");
    assert!(runner_builds[0].contains("cargo-zigbuild zigbuild "), "{}", runner_builds[0]);
    assert!(runner_builds[0].contains(&format!("--target {X86}.2.28")), "{}", runner_builds[0]);
    assert_eq!(Manifest::read(&pkg).unwrap(), m);
}

#[test]
fn an_aarch64_runner_is_cross_built_for_its_floor_and_starts_under_qemu() {
    let Some(cuda) = require_cuda() else { return };
    let how = "apt-get install qemu-user libc6-arm64-cross (scripts/test.sh does)";
    let Some(qemu) = required(which::which("qemu-aarch64").ok(), "qemu-aarch64", how) else { return };
    let sysroot = Path::new("/usr/aarch64-linux-gnu");
    let Some(_) = required(sysroot.join("lib/ld-linux-aarch64.so.1").exists().then_some(()), "an aarch64 glibc", how)
    else {
        return;
    };
    let name = "two-machines";
    let p = project(name, cuda, "2.28");
    build(&p, &["--runner-target", X86, "--runner-target", ARM]);
    let pkg = package_dir(name);
    let m = Manifest::read(&pkg).unwrap();
    let triples: Vec<&str> = m.runners.iter().map(|r| r.triple.as_str()).collect();
    assert_eq!(triples, [X86, ARM]);
    for r in &m.runners {
        assert_eq!(r.path, format!("bin/{}/{name}", r.triple));
        assert_eq!(r.glibc_floor, "2.28");
        let exe = pkg.join(&r.path);
        let need = glibc_of(&exe);
        assert!(need <= (2, 28), "{}: glibc {need:?}", r.path);
        assert_eq!(r.glibc, Some(format!("{}.{}", need.0, need.1)));
        let bytes = std::fs::read(&exe).unwrap();
        let arch = object::File::parse(&*bytes).unwrap().architecture();
        let want = if r.triple == ARM { object::Architecture::Aarch64 } else { object::Architecture::X86_64 };
        assert_eq!(arch, want, "{}", r.path);
    }
    assert_eq!(tree(&pkg.join("bin")).len(), 2, "one runner per triple, nothing else");
    let arm = pkg.join(format!("bin/{ARM}/{name}"));
    reports_no_driver(std::process::Command::new(qemu).arg("-L").arg(sysroot).arg(arm).output().unwrap());
}

/// What `uname -m` says on an aarch64 machine (the remote's PATH finds the fake tools first).
const UNAME_AARCH64: &str = "#!/bin/sh\n[ \"$1\" = -m ] && { echo aarch64; exit 0; }\nexec /bin/uname \"$@\"\n";

#[test]
fn an_aarch64_remote_runs_the_aarch64_runner_and_a_package_without_one_is_refused() {
    let Some(it) = Remote::start(SshdOptions::default()) else { return };
    write_exe(&it.world.fakebin.join("uname"), UNAME_AARCH64);
    it.configure("");

    // Only this machine's runner: refused before anything is uploaded, and the machine noted.
    let one = it.world.path("one");
    make_package(&one, "#!/bin/sh\necho x86\n", &[("a.sm_90a.cubin", b"\x7fELF a")], &["sm_90a"]);
    let out = it.remote_run(&one, &[]).fails_with(1);
    out.stderr_has(&format!(
        "it is an aarch64 machine and the package has no runner for it (it has {}-unknown-linux-gnu): cargo-gpu has \
         noted it's machine, so running the same command again builds the runner for {ARM}",
        std::env::consts::ARCH
    ));
    out.stderr_has("or set `machine = \"aarch64\"` in [remotes.it]");
    assert!(tree(&it.work.join("blobs")).is_empty(), "nothing was uploaded");
    let seen = seen_machine(&it.world.cache_dir(), "it");
    assert_eq!(seen.machine.as_deref(), Some("aarch64"), "{seen:?}");
    assert!(seen.glibc.is_some(), "{seen:?}");

    // A runner per machine: the aarch64 one runs there, and the other is not even uploaded.
    let two = it.world.path("two");
    std::fs::create_dir_all(two.join("kernels")).unwrap();
    std::fs::write(two.join("kernels/a.sm_90a.cubin"), b"\x7fELF a").unwrap();
    for (triple, says) in [(X86, "x86"), (ARM, "aarch64")] {
        write_exe(&two.join(format!("bin/{triple}/runner")), &format!("#!/bin/sh\necho {says} runner\n"));
    }
    let mut m = write_manifest(&two, &["sm_90a"]);
    m.runners = [X86, ARM]
        .iter()
        .map(|t| RunnerEntry {
            path: format!("bin/{t}/runner"),
            triple: t.to_string(),
            glibc_floor: "2.28".into(),
            glibc: Some("2.17".into()),
        })
        .collect();
    std::fs::write(two.join(MANIFEST_FILE), m.to_toml()).unwrap();
    let out = it.remote_run(&two, &[]).ok();
    assert_eq!(out.stdout, "aarch64 runner\n");
    out.stderr_has(&format!("Running bin/{ARM}/runner on it"));
    let x86 = m.files.iter().find(|f| f.path == format!("bin/{X86}/runner")).unwrap();
    assert!(!it.work.join("blobs").join(&x86.sha256).exists(), "the x86_64 runner stayed here");
    assert_eq!(it.world.last_record().blobs_uploaded, 2, "the aarch64 runner and the cubin");
}
