//! The runner kit (`templates/kit/kit.rs`) keeps generated projects free of any dependency but
//! cudarc, so it re-implements two things cargo-gpu owns: which cubin runs on which compute
//! capability and which of several is best (`cargo_gpu::arch`), and reading the package's
//! `manifest.toml` (`cargo_gpu::package::manifest`). This test writes cargo-gpu's answers into a
//! table (every target it accepts on every compute capability from 7.0 to 12.9, the best choice
//! among many sets of targets, cubin names and manifests as the build writes them), generates a
//! project with `cargo gpu new`, and runs the kit's own unit test there against that table.

mod support;

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use cargo_gpu::arch::{ComputeCap, SmArch};
use cargo_gpu::compile::sources::{Job, KernelSource};
use cargo_gpu::package::manifest::{FileEntry, Manifest, PackageInfo, RunnerEntry, MANIFEST_FILE};
use cargo_gpu::toolchain::Nvcc;
use semver::Version;
use support::{cargo_gpu, repo_root, templates_target_dir, Run};

/// Every compute capability the kit may meet: Volta (7.0) to Blackwell consumer (12.x), with
/// minors no device has yet, so that a rule that only holds for shipped devices is caught.
fn compute_caps() -> Vec<ComputeCap> {
    (7..=12).flat_map(|major| (0..=9).map(move |minor| ComputeCap::new(major, minor))).collect()
}

fn join(targets: &[SmArch]) -> String {
    targets.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(",")
}

/// `runs` rows: target, compute capability, whether its SASS runs there.
/// `best` rows: compute capability, a set of targets, the one to load (`-` for none).
fn arch_rows(out: &mut String) {
    let all = SmArch::all();
    let mut sets: Vec<Vec<SmArch>> = Vec::new();
    for (i, a) in all.iter().enumerate() {
        for b in &all[i..] {
            sets.push(if a == b { vec![*a] } else { vec![*a, *b] });
        }
    }
    sets.push(all.clone());
    for major in 7..=12 {
        sets.push(all.iter().copied().filter(|t| t.major == major).collect());
    }
    // Larger mixed sets, the shape of a real package built for several targets.
    let mut rng = fastrand::Rng::with_seed(0x6b17);
    for _ in 0..200 {
        let mut set: Vec<SmArch> = all.iter().copied().filter(|_| rng.u8(0..4) == 0).collect();
        rng.shuffle(&mut set);
        if !set.is_empty() {
            sets.push(set);
        }
    }
    for cc in compute_caps() {
        for t in &all {
            let _ = writeln!(out, "runs {t} {cc} {}", if t.runs_on(cc) { "yes" } else { "no" });
        }
        for set in &sets {
            let best = SmArch::best_for(set, cc).map(|t| t.to_string()).unwrap_or_else(|| "-".into());
            let _ = writeln!(out, "best {cc} {} {best}", join(set));
        }
    }
}

/// A package manifest as the build writes it: cubin names from [`Job::cubin_name`], the driver
/// floor from [`Nvcc::min_driver_cuda`], the text from [`Manifest::to_toml`].
fn manifest(nvcc: &str, targets: &[&str], stems: &[&str], git: bool) -> Manifest {
    let version = Version::parse(nvcc).unwrap();
    let targets: Vec<SmArch> = targets.iter().map(|t| t.parse().unwrap()).collect();
    let nvcc = Nvcc { path: "nvcc".into(), version: version.clone(), gpu_codes: Vec::new() };
    let (major, minor) = nvcc.min_driver_cuda(&targets);
    let mut files = vec![FileEntry {
        path: "bin/runner".into(),
        size: 1,
        sha256: "a".repeat(64),
        kernel: None,
        target: None,
        executable: true,
    }];
    for stem in stems {
        for t in &targets {
            let job = Job {
                kernel: KernelSource { stem: stem.to_string(), rel: format!("kernels/{stem}.cu").into() },
                target: *t,
            };
            files.push(FileEntry {
                path: format!("kernels/{}", job.cubin_name()),
                size: 2,
                sha256: "b".repeat(64),
                kernel: Some(stem.to_string()),
                target: Some(*t),
                executable: false,
            });
        }
    }
    Manifest {
        package: PackageInfo {
            name: "kit-check".into(),
            version: "0.1.0".into(),
            profile: "release".into(),
            git_revision: git.then(|| "0123abcd".into()),
            git_dirty: git,
            targets,
            nvcc_version: version.to_string(),
            min_driver_cuda: format!("{major}.{minor}"),
        },
        runners: vec![RunnerEntry {
            path: "bin/runner".into(),
            triple: "x86_64-unknown-linux-gnu".into(),
            glibc_floor: "2.34".into(),
            glibc: git.then(|| "2.34".into()),
        }],
        files,
    }
}

/// `package` rows: a package's kernels folder and the driver CUDA version its manifest asks for.
/// `cubin` rows: a cubin's file name, its kernel and its target, as the manifest records them.
fn manifest_rows(out: &mut String, dir: &Path) {
    let manifests = [
        manifest("13.0.88", &["sm_90a", "sm_100a"], &["vector_add", "hgemm"], true),
        // The driver floor (12.0) differs from the toolkit (12.9): the kit must read the floor.
        manifest("12.9.41", &["sm_90a", "sm_90"], &["vector_add"], false),
        manifest("12.9.41", &["sm_103a", "sm_120f", "sm_89"], &["tcgen05_gemm"], true),
        manifest("12.8.93", &["sm_100a", "sm_101a", "sm_120a"], &["nvcc-version", "min-driver-cuda"], false),
    ];
    for (i, m) in manifests.iter().enumerate() {
        let text = m.to_toml();
        assert_eq!(&Manifest::from_toml(&text).unwrap(), m, "the manifest round-trips");
        let pkg = dir.join(format!("package-{i}"));
        std::fs::create_dir_all(pkg.join("kernels")).unwrap();
        std::fs::write(pkg.join(MANIFEST_FILE), text).unwrap();
        let _ = writeln!(out, "package {} {}", pkg.join("kernels").display(), m.package.min_driver_cuda);
        for f in m.cubins() {
            let name = f.path.strip_prefix("kernels/").unwrap();
            let _ = writeln!(out, "cubin {name} {} {}", f.kernel.as_deref().unwrap(), f.target.unwrap());
        }
    }
}

#[test]
fn the_kit_picks_cubins_and_reads_manifests_as_cargo_gpu_does() {
    let tmp = tempfile::tempdir().unwrap();
    let mut table = String::new();
    arch_rows(&mut table);
    manifest_rows(&mut table, &tmp.path().join("packages"));
    let rows = table.lines().count();
    let table_path = tmp.path().join("kit-table.txt");
    std::fs::write(&table_path, &table).unwrap();

    let mut new = cargo_gpu(&["new", "kit-check"]);
    Run::of(new.current_dir(tmp.path()).env("CARGO_GPU_CACHE_DIR", tmp.path().join("cache"))).ok();
    let project = tmp.path().join("kit-check");
    assert_eq!(
        std::fs::read(project.join("src/kit.rs")).unwrap(),
        std::fs::read(repo_root().join("templates/kit/kit.rs")).unwrap(),
        "the project holds the kit under test"
    );

    let mut test = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    test.args(["test", "--quiet", "--", "kit::tests::agrees_with_cargo_gpu", "--exact", "--nocapture"]);
    test.current_dir(&project).env("CARGO_TARGET_DIR", templates_target_dir()).env("CARGO_GPU_KIT_TABLE", &table_path);
    let run = Run::of(&mut test).ok();
    assert!(
        run.stdout.contains(&format!("kit agrees with cargo-gpu on {rows} rows")),
        "the kit compared every row\n--- stdout\n{}\n--- stderr\n{}",
        run.stdout,
        run.stderr
    );
    assert!(run.stdout.contains("test result: ok. 1 passed"), "{}", run.stdout);
}
