//! `cargo gpu doctor` with fake `nvidia-smi` programs standing in for GPUs this machine lacks.

mod common;

use common::{write_script, Run, TestProject};

/// A fake nvidia-smi printing what the real one prints for the query doctor makes.
fn fake_smi(p: &TestProject, answer: Option<&str>) -> std::path::PathBuf {
    let bin = p.tmp.path().join("fake-bin");
    let log = p.tmp.path().join("smi.log");
    let body = match answer {
        Some(line) => format!("echo \"$@\" >> '{}'\necho '{line}'\n", log.display()),
        None => format!(
            "echo \"$@\" >> '{}'\necho 'NVIDIA-SMI has failed because it couldn'\\''t communicate with the NVIDIA driver.'\nexit 9\n",
            log.display()
        ),
    };
    write_script(&bin.join("nvidia-smi"), &body);
    bin
}

fn doctor(p: &TestProject, bin: &std::path::Path) -> Run {
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    Run::from(p.cmd(&["doctor"]).env("PATH", path).output().unwrap()).ok()
}

#[test]
fn consumer_blackwell_gpu_needs_remotes_for_datacenter_targets() {
    let p = TestProject::new("kernels-example", common::cuda_home());
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
    let calls = std::fs::read_to_string(p.tmp.path().join("smi.log")).unwrap();
    assert_eq!(calls.trim(), "--query-gpu=name,compute_cap,driver_version --format=csv,noheader");
}

#[test]
fn hopper_gpu_runs_sm90a_locally() {
    let p = TestProject::new("kernels-example", common::cuda_home());
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
    let p = TestProject::new("kernels-example", common::cuda_home());
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
    let Some(cuda) = common::require_cuda() else { return };
    let p = TestProject::new("kernels-example", Some(cuda.clone()));
    let bin = fake_smi(&p, None);
    let run = doctor(&p, &bin);
    assert!(run.stdout.contains(&format!("nvcc:      13.0.88 ({}/bin/nvcc)", cuda.display())), "{}", run.stdout);
    assert!(run.stdout.contains("sm_90a: builds here (nvcc 13.0)"), "{}", run.stdout);
    assert!(run.stdout.contains("cuobjdump: "), "{}", run.stdout);
    assert!(!run.stdout.contains("cuobjdump: not found"), "{}", run.stdout);
}
