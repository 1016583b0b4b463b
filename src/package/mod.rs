//! The package, the unit that travels: its folder (`bin/`, `kernels/`, `manifest.toml`) assembled
//! from what was compiled, and the manifest that lists every file with its sha256.

pub mod assemble;
pub mod manifest;
