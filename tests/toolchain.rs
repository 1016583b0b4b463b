//! `cargo gpu toolchain`: real CUDA toolchains installed from PyPI (CUDA 12.9 through NVRTC,
//! CUDA 13.0 with nvcc), a project pinned to each building kernels-example, the pin's errors,
//! and list and remove on a data folder of the test's own.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{repo_root, required, Run, TestProject};

/// The toolchains the tests install, kept between test runs (each is 150 to 300 MB).
fn toolchains_home() -> PathBuf {
    repo_root().join("target/test-toolchains")
}

/// Installs CUDA 12.9 and 13.0 into the shared test home, or `None` (a skip outside CI) when
/// this machine cannot reach PyPI.
fn installed_toolchains() -> Option<PathBuf> {
    let home = toolchains_home();
    let out =
        support::cargo_gpu(&["toolchain", "install", "12.9", "13.0"]).env("CARGO_GPU_HOME", &home).output().unwrap();
    let ok = out.status.success().then_some(home);
    if ok.is_none() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    required(ok, "CUDA toolchains from PyPI", "this machine must reach PyPI (pip install cuda-toolkit)")
}

fn cuobjdump(home: &Path, args: &[&str], file: &Path) -> String {
    let site = std::fs::read_dir(home.join("toolchains/cuda-12.9/lib")).unwrap().next().unwrap().unwrap().path();
    Run::of(Command::new(site.join("site-packages/nvidia/cu13/bin/cuobjdump")).args(args).arg(file)).ok().stdout
}

fn pin(p: &TestProject, version: &str) {
    let manifest = p.path("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let pinned =
        text.replacen("[package.metadata.gpu]\n", &format!("[package.metadata.gpu]\ncuda = \"{version}\"\n"), 1);
    assert_ne!(text, pinned, "kernels-example has a [package.metadata.gpu] table");
    std::fs::write(manifest, pinned).unwrap();
}

#[test]
fn a_project_pinned_to_cuda_12_9_builds_through_nvrtc_and_cargo_gpu_cuda_overrides_the_pin() {
    let Some(home) = installed_toolchains() else { return };
    let p = TestProject::new("kernels-example", None);
    pin(&p, "12.9");
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = p.cmd(args);
        c.env("CARGO_GPU_HOME", &home).env("CARGO_TARGET_DIR", repo_root().join("target/test-toolchains-example"));
        for (k, v) in env {
            c.env(k, v);
        }
        Run::of(&mut c)
    };

    let list = run(&["toolchain", "list"], &[]).ok();
    list.stdout_has("12.9   12.9.86   NVRTC  installed");
    list.stdout_has("13.0   13.0.88   nvcc   installed");
    list.stdout_has("This project builds with NVRTC 12.9.86 (pinned to 12.9 by `cuda` in");
    list.stdout_has("its packages load on drivers of CUDA 12.8 or newer");

    let pkg = repo_root().join("target/test-toolchains-example/gpu/release/kernels-example");
    // cuobjdump prints the toolkit as `129` in an sm_90a cubin's header and `12.9` in an sm_100a one's.
    for (env, version, toolkits, driver) in [
        (None, "12.9.86", ["toolkit=129,", "toolkit=12.9,"], "12.8"),
        (Some("13.0"), "13.0.88", ["toolkit=130,", "toolkit=13.0,"], "13.0"),
    ] {
        let env: Vec<(&str, &str)> = env.map(|v| ("CARGO_GPU_CUDA", v)).into_iter().collect();
        run(&["build", "--release", "--target", "sm_90a", "--target", "sm_100a"], &env).ok();
        let manifest = std::fs::read_to_string(pkg.join("manifest.toml")).unwrap();
        assert!(manifest.contains(&format!("nvcc-version = \"{version}\"")), "{manifest}");
        assert!(manifest.contains(&format!("min-driver-cuda = \"{driver}\"")), "{manifest}");
        for (cubin, target, instruction) in [
            ("hgemm.sm_90a.cubin", "sm=90a", "HGMMA"),
            ("tcgen05_gemm.sm_100a.cubin", "sm=100a", "UTCHMMA"),
            ("vector_add.sm_90a.cubin", "sm=90a", "LDG"),
        ] {
            let file = pkg.join("kernels").join(cubin);
            let elf = cuobjdump(&home, &["-elf"], &file);
            let header = elf.lines().find(|l| l.to_lowercase().contains("elf: type=")).unwrap_or_default();
            assert!(
                header.contains(&format!("{target},")) && toolkits.iter().any(|t| header.contains(t)),
                "{cubin} from CUDA {version}: {header}"
            );
            assert!(cuobjdump(&home, &["-sass"], &file).contains(instruction), "{cubin}: {instruction}");
        }
    }

    // A kernel that does not compile shows its .cu line, from NVRTC as from nvcc.
    p.write("kernels/broken.cu", "extern \"C\" __global__ void broken(float *x) {\n    x[0] = undefined_name;\n}\n");
    let failed = run(&["build", "--target", "sm_90a"], &[]).fails_with(1);
    failed.stderr_has("kernels/broken.cu(2): error: identifier \"undefined_name\" is undefined");
    std::fs::remove_file(p.path("kernels/broken.cu")).unwrap();

    // A pin that is not installed, or that cargo-gpu cannot install, says what to do.
    run(&["build"], &[("CARGO_GPU_CUDA", "12.8")]).fails_with(1).stderr_has(
        "CARGO_GPU_CUDA asks for CUDA 12.8, which is not installed: run `cargo gpu toolchain install 12.8`",
    );
    run(&["build"], &[("CARGO_GPU_CUDA", "11.0")]).fails_with(1).stderr_has(
        "CARGO_GPU_CUDA asks for CUDA `11.0`, which cargo-gpu cannot install (it installs 12.8, 12.9, 13.0)",
    );
}

#[test]
fn list_and_remove_work_on_the_data_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let dir = home.join("toolchains/cuda-12.8");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("cargo-gpu-toolchain.toml"),
        "version = \"12.8\"\nfull-version = \"12.8.93\"\ncompiler = \"nvrtc\"\npackages = []\ninstalled-at = 0\n",
    )
    .unwrap();
    let cmd = |args: &[&str]| {
        let mut c = support::cargo_gpu(args);
        c.env("CARGO_GPU_HOME", &home).current_dir(tmp.path());
        Run::of(&mut c)
    };
    let list = cmd(&["toolchain", "list", "--message-format", "json"]).ok();
    let v: serde_json::Value = serde_json::from_str(list.stdout.trim()).unwrap();
    let installed: Vec<&str> = v["releases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !r["installed"].is_null())
        .map(|r| r["version"].as_str().unwrap())
        .collect();
    assert_eq!(installed, ["12.8"]);
    cmd(&["toolchain", "remove", "12.8"]).ok().stderr_has("Removed");
    assert!(!dir.exists());
    cmd(&["toolchain", "remove", "12.8"]).fails_with(1).stderr_has("CUDA 12.8 is not installed");
    cmd(&["toolchain", "install", "11.0"]).fails_with(1).stderr_has("CUDA `11.0` cannot be installed");
}

/// The shell after `scripts/setup.sh` installed CUDA with `cargo gpu toolchain install`: nothing
/// exported (`env -i` with only PATH and HOME), and a build finds the toolchain in the data folder
/// under HOME.
#[test]
fn a_new_shell_finds_the_toolchain_setup_installed() {
    let Some(installed) = installed_toolchains() else { return };
    if ["/usr/local/cuda/bin/nvcc", "/usr/bin/nvcc", "/bin/nvcc"].iter().any(|n| Path::new(n).exists()) {
        eprintln!("skipping: a system nvcc comes first by design");
        return;
    }
    let cargo = PathBuf::from(std::env::var_os("CARGO").expect("cargo test sets CARGO"));
    let rust_bin = cargo.parent().unwrap();
    let p = TestProject::new("tiny", None);
    let home = p.tmp.path().join("home");
    let data = home.join(".local/share");
    std::fs::create_dir_all(&data).unwrap();
    std::os::unix::fs::symlink(&installed, data.join("cargo-gpu")).unwrap();
    let mut cmd = Command::new("env");
    cmd.arg("-i").arg(format!("PATH={}:/usr/bin:/bin", rust_bin.display())).arg(format!("HOME={}", home.display()));
    for var in ["RUSTUP_HOME", "RUSTUP_TOOLCHAIN"] {
        if let Ok(v) = std::env::var(var) {
            cmd.arg(format!("{var}={v}"));
        }
    }
    cmd.arg(support::BIN).args(["gpu", "build", "-v", "--target", "sm_90a"]).current_dir(&p.dir);
    let run = Run::of(&mut cmd).ok();
    run.stderr_has(&format!("{}/toolchains/cuda-13.0/", data.join("cargo-gpu").display()));
    assert!(p.package("debug").join("kernels/fill.sm_90a.cubin").is_file(), "{}", run.stderr);
}
