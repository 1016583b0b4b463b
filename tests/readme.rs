//! The README cannot drift from the code: its configuration examples parse with the real types,
//! every flag is documented, and its first command does what it says.

mod support;

use std::path::Path;

/// Every ```toml block of the README.
fn toml_blocks() -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```toml") => current = Some(String::new()),
            (Some(_), "```") => blocks.push(current.take().unwrap()),
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn project_config_example_parses() {
    let blocks: Vec<String> = toml_blocks().into_iter().filter(|b| b.contains("[package.metadata.gpu]")).collect();
    assert!(!blocks.is_empty(), "the README documents [package.metadata.gpu]");
    for block in blocks {
        let value: toml::Value = toml::from_str(&block).unwrap();
        let gpu = &value["package"]["metadata"]["gpu"];
        let json = serde_json::to_value(gpu).unwrap();
        let parsed = cargo_gpu::project::GpuMetadata::from_value(&json, Path::new("README.md")).unwrap();
        assert!(!parsed.targets.is_empty(), "{block}");
        // Every key the README shows is one the code reads.
        assert_eq!(gpu.as_table().unwrap().len(), 11, "the README shows every key: {block}");
        assert!(!parsed.expect.is_empty(), "{block}");
    }
}

#[test]
fn remote_config_example_parses_with_every_key() {
    let blocks: Vec<String> =
        toml_blocks().into_iter().filter(|b| b.contains("[remotes.") && !b.contains("kind = \"slurm\"")).collect();
    assert!(!blocks.is_empty(), "the README documents [remotes.NAME]");
    for block in blocks {
        let config = cargo_gpu::config::UserConfig::parse(&block, Path::new("README.md")).unwrap();
        let (name, raw) = config.remotes.iter().next().unwrap();
        assert_eq!(raw.host.as_deref(), Some("h100"));
        assert!(raw.start.is_some() && raw.stop.is_some() && raw.price_per_hour.is_some());
        assert!(raw.idle_shutdown.is_some() && raw.shutdown_command.is_some() && !raw.ssh_options.is_empty());
        assert!(raw.connect_timeout.is_some() && raw.ready_timeout.is_some() && raw.workdir.is_some());
        let remote = config.remote(name).unwrap();
        assert_eq!(remote.idle_shutdown, Some(std::time::Duration::from_secs(15 * 60)));
        assert_eq!(config.default.remote.as_deref(), Some("h100"));
    }
}

#[test]
fn slurm_config_example_parses_with_every_slurm_key() {
    let blocks: Vec<String> = toml_blocks().into_iter().filter(|b| b.contains("kind = \"slurm\"")).collect();
    assert_eq!(blocks.len(), 1, "the README documents a slurm remote");
    let config = cargo_gpu::config::UserConfig::parse(&blocks[0], Path::new("README.md")).unwrap();
    let remote = config.remote("cluster").unwrap();
    assert_eq!(remote.host.as_deref(), Some("login.cluster.example"));
    let slurm = remote.slurm.expect("a slurm remote");
    assert_eq!(
        slurm.sbatch_options(),
        ["--partition=gpu", "--gres=gpu:h100:1", "--time=00:10:00", "--account=proj42"],
        "the README shows every slurm key"
    );
}

/// Every long flag a command's `--help` lists is named in the README, so no flag goes
/// undocumented (`remote-run --release` once did), and `-q` is described as `--help` has it.
#[test]
fn every_flag_of_build_remote_run_and_inspect_is_in_the_readme() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    for cmd in ["build", "remote-run", "inspect"] {
        let out =
            std::process::Command::new(env!("CARGO_BIN_EXE_cargo-gpu")).args(["gpu", cmd, "--help"]).output().unwrap();
        let help = String::from_utf8(out.stdout).unwrap();
        for flag in help.split_whitespace().filter(|w| w.starts_with("--") && w.len() > 2) {
            let flag = flag.trim_end_matches([',', '.']).split(['=', '[', '<']).next().unwrap();
            if flag == "--help" {
                continue;
            }
            assert!(readme.contains(flag), "`cargo gpu {cmd} {flag}` is not in the README");
        }
    }
    assert!(
        readme.contains("`-q` (`--quiet`) prints nothing but errors and warnings"),
        "the README's -q says what --help says"
    );
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_cargo-gpu")).args(["gpu", "--help"]).output().unwrap();
    assert!(String::from_utf8(help.stdout).unwrap().contains("Print nothing but errors and warnings"));
}

/// kernels-example's README names every file it borrows from the templates, so it cannot drift
/// from what the example really links and includes.
#[test]
fn kernels_example_readme_names_what_it_borrows() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("kernels-example/README.md")).unwrap();
    assert!(readme.contains("only inside this repository"), "{readme}");
    for e in std::fs::read_dir(root.join("kernels-example/kernels")).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_symlink() {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(readme.contains(&format!("`kernels/{name}`")), "kernels/{name} is a link the README does not name");
        }
    }
    let main = std::fs::read_to_string(root.join("kernels-example/src/main.rs")).unwrap();
    for line in main.lines().filter_map(|l| l.trim().strip_prefix("#[path = \"../../")) {
        let path = line.trim_end_matches("\"]");
        assert!(readme.contains(&format!("`{path}`")), "src/main.rs includes {path}, which the README does not name");
    }
}

/// The README's first command, `scripts/setup.sh`, prints the install command it runs, word for
/// word, then builds kernels-example with the installed `cargo gpu`. Run here with a `cargo` that
/// logs what it is asked and a stand-in nvcc, so nothing is installed or compiled.
#[test]
fn setup_prints_the_install_command_it_runs_then_builds_the_example() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    let log = tmp.path().join("cargo.log");
    support::write_script(&bin.join("cargo"), &format!("printf '%s\\n' \"$*\" >> '{}'\n", log.display()));
    support::write_script(&bin.join("nvcc"), "exit 0\n");
    let out = std::process::Command::new("bash")
        .arg(root.join("scripts/setup.sh"))
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("CARGO_GPU_NVCC", bin.join("nvcc"))
        .env("CARGO_INSTALL_ROOT", tmp.path().join("root"))
        .env_remove("CUDA_HOME")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let printed =
        stdout.lines().find_map(|l| l.strip_prefix("install: ")).expect("setup.sh prints its install command");
    let ran: Vec<String> = std::fs::read_to_string(&log).unwrap().lines().map(str::to_string).collect();
    assert_eq!(printed, format!("cargo {}", ran[0]), "what setup.sh prints is what it runs");
    assert_eq!(ran[0], format!("install --quiet --locked --force --path {}", root.display()));
    assert_eq!(ran[1..], ["gpu doctor", "gpu build --target sm_90a --target sm_100a"]);
}
