//! Building a package: kernel discovery and compilation, the host runner, and the package folder
//! with its manifest.

pub mod elf;
pub mod kernels;
pub mod manifest;
pub mod package;
pub mod pipeline;
pub mod runner;
