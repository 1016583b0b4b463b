//! The suite's one test-support tree, included by the test files (`mod support;`) and the
//! benchmarks (`#[path]`): running commands ([`process`]), files ([`files`]), what a
//! test needs from the machine ([`ci`]), the project a build works on ([`project`]), fake tools
//! ([`fakes`]), hand-made packages and archives ([`package`]), a real sshd ([`sshd`]), a delay
//! proxy in front of it ([`proxy`]), a real single-node Slurm cluster ([`slurm`]), and the world
//! and remote the remote tests run in ([`remote`]).
// Each test binary uses a part of it, and leaves the rest of it and of these re-exports unused.
#![allow(dead_code, unused_imports)]

mod ci;
mod fakes;
mod files;
mod package;
mod process;
mod project;
pub mod proxy;
mod remote;
mod slurm;
mod sshd;

pub use ci::required;
pub use fakes::{fake_nvcc, fake_nvidia_smi, fake_pypi_sanitizer};
pub use files::{assert_no_links, copy_dir, files_containing, paths_under, read_text, tree, write_exe, write_script};
pub use package::{make_package, raw_tar, runner_stdout, write_manifest, RUNNER};
pub use process::{
    cargo_gpu, ctrl_c, finish, path_with, processes_with, run_measured, signal, text, wait_for, Measured, Run, BIN,
};
pub use project::{cuda_home, cuobjdump, marker_line, repo_root, require_cuda, templates_target_dir, TestProject};
pub use remote::{toml_str, Remote, World};
pub use slurm::Cluster;
pub use sshd::{free_port, Sshd, SshdOptions, ALIAS};
