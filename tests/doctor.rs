//! `cargo gpu doctor` with fake `nvidia-smi` programs standing in for GPUs this machine lacks.

mod support;

use std::path::{Path, PathBuf};

use support::{cuda_home, fake_nvcc, fake_nvidia_smi, path_with, require_cuda, Run, TestProject};

/// A fake nvidia-smi printing what the real one prints for the query doctor makes (see
/// [`fake_nvidia_smi`]); returns its folder.
fn fake_smi(p: &TestProject, answer: Option<&str>) -> PathBuf {
    let bin = p.tmp.path().join("fake-bin");
    fake_nvidia_smi(&bin, answer);
    bin
}

fn doctor(p: &TestProject, bin: &Path) -> Run {
    Run::of(p.cmd(&["doctor"]).env("PATH", path_with(bin))).ok()
}

#[test]
fn consumer_blackwell_gpu_needs_remotes_for_datacenter_targets() {
    let p = TestProject::new("kernels-example", cuda_home());
    let bin = fake_smi(&p, Some("NVIDIA GeForce RTX 5060 Ti, 12.0, 580.95.05"));
    let run = doctor(&p, &bin);
    assert!(
        run.stdout
            .contains("GPU 0:     NVIDIA GeForce RTX 5060 Ti (compute capability 12.0, sm_120), driver 580.95.05"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(
            "local GPU NVIDIA GeForce RTX 5060 Ti is sm_120; sm_90a code needs a remote with compute capability 9.0"
        ),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("sm_100a code needs a remote with compute capability 10.0"), "{}", run.stdout);
    let calls = std::fs::read_to_string(bin.join("nvidia-smi.log")).unwrap();
    assert_eq!(calls.trim(), "--query-gpu=name,compute_cap,driver_version --format=csv,noheader");
}

#[test]
fn hopper_gpu_runs_sm90a_locally() {
    let p = TestProject::new("kernels-example", cuda_home());
    let bin = fake_smi(&p, Some("NVIDIA H100 80GB HBM3, 9.0, 580.95.05"));
    let run = doctor(&p, &bin);
    assert!(run.stdout.contains("sm_90a: "), "{}", run.stdout);
    let sm90 = run.stdout.lines().find(|l| l.trim_start().starts_with("sm_90a:")).unwrap();
    assert!(sm90.ends_with("runs on local GPU 0 (NVIDIA H100 80GB HBM3)"), "{sm90}");
    let sm100 = run.stdout.lines().find(|l| l.trim_start().starts_with("sm_100a:")).unwrap();
    assert!(
        sm100.ends_with(
            "local GPU NVIDIA H100 80GB HBM3 is sm_90; sm_100a code needs a remote with compute capability 10.0"
        ),
        "{sm100}"
    );
}

#[test]
fn no_gpu_is_a_normal_answer() {
    let p = TestProject::new("kernels-example", cuda_home());
    let bin = fake_smi(&p, None);
    let run = doctor(&p, &bin);
    assert!(
        run.stdout.contains("GPU:       none (nvidia-smi found no usable GPU: NVIDIA-SMI has failed"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("no local GPU; sm_90a code needs a remote with compute capability 9.0"),
        "{}",
        run.stdout
    );
}

#[test]
fn reports_the_compiler_and_whether_each_target_builds() {
    let Some(cuda) = require_cuda() else { return };
    let p = TestProject::new("kernels-example", Some(cuda.clone()));
    let bin = fake_smi(&p, None);
    let run = doctor(&p, &bin);
    assert!(run.stdout.contains(&format!("nvcc:      13.0.88 ({}/bin/nvcc)", cuda.display())), "{}", run.stdout);
    assert!(run.stdout.contains("sm_90a: builds here (nvcc 13.0)"), "{}", run.stdout);
    assert!(
        run.stdout.contains(
            "\n           builds sm_75 sm_80 sm_86 sm_87 sm_88 sm_89 sm_90 sm_90a sm_100 sm_100a sm_100f sm_103 \
             sm_103a sm_103f sm_110 sm_110a sm_110f sm_120 sm_120a sm_120f sm_121 sm_121a sm_121f\n"
        ),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("cuobjdump: "), "{}", run.stdout);
    assert!(!run.stdout.contains("cuobjdump: not found"), "{}", run.stdout);
}

/// The targets line of doctor's report: what follows `builds`.
fn builds_line(stdout: &str) -> Vec<String> {
    let line = stdout.lines().find_map(|l| l.trim_start().strip_prefix("builds ")).expect("a `builds` line");
    line.split(' ').map(str::to_string).collect()
}

#[test]
fn nvcc_targets_are_sorted_with_the_a_and_f_forms_the_build_accepts() {
    let p = TestProject::new("tiny", None);
    let cuda = p.tmp.path().join("cuda-12.9");
    // An nvcc 12.9 that lists its plain targets out of order, one of them (sm_52) older than
    // anything cargo-gpu knows, and neither sm_88 nor sm_110 (CUDA 13.0).
    fake_nvcc(&cuda, "12.9.41", "sm_121 sm_90 sm_100 sm_75 sm_52 sm_120 sm_103 sm_101 sm_80 sm_86 sm_89 sm_87");
    let targets = ["sm_90a", "sm_100f", "sm_101f", "sm_103a", "sm_121f", "sm_110a", "sm_88"];
    let manifest = std::fs::read_to_string(p.path("Cargo.toml")).unwrap();
    let list = targets.iter().map(|t| format!("\"{t}\"")).collect::<Vec<_>>().join(", ");
    p.write("Cargo.toml", &manifest.replace("targets = [\"sm_90a\"]", &format!("targets = [{list}]")));
    let bin = fake_smi(&p, None);
    let run = Run::of(p.cmd(&["doctor"]).env("PATH", path_with(&bin)).env("CUDA_HOME", &cuda)).ok();

    let builds = builds_line(&run.stdout);
    assert_eq!(
        builds.join(" "),
        "sm_52 sm_75 sm_80 sm_86 sm_87 sm_89 sm_90 sm_90a sm_100 sm_100a sm_100f sm_101 sm_101a sm_101f sm_103 \
         sm_103a sm_103f sm_120 sm_120a sm_120f sm_121 sm_121a sm_121f",
        "{}",
        run.stdout
    );
    // What the nvcc line says it builds, the per-target verdicts say too, and the reverse.
    for t in targets {
        let verdict = run.stdout.lines().find(|l| l.trim_start().starts_with(&format!("{t}: "))).unwrap();
        let listed = builds.iter().any(|b| b == t);
        assert_eq!(verdict.contains(": builds here (nvcc 12.9)"), listed, "{verdict}");
        assert_eq!(verdict.contains(": cannot be built here: "), !listed, "{verdict}");
    }
}
