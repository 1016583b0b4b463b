//! Compiling what a package holds: the kernels (sources, nvcc jobs, fingerprints, diagnostics, the
//! parallel scheduler), the host runner (cargo, or cargo-zigbuild for an older glibc or another
//! machine), the runner's glibc need (ELF), and the build as one library call (`pipeline`).

pub mod cargo_exe;
pub mod diagnostics;
pub mod elf;
pub mod exec;
pub mod fingerprint;
pub mod nvcc;
pub mod pipeline;
pub mod runner;
pub mod schedule;
pub mod sources;
pub mod zigbuild;
