//! The host runner of this package: it loads the cubins `cargo gpu build` made for the GPU it
//! finds, checks every kernel against a CPU reference and times it. The shared host code (finding
//! the cubin, inputs, checks, timing, JSON results) is in `kit.rs`.

mod kit;
mod vector_add;

fn main() -> std::process::ExitCode {
    kit::main_with(vector_add::run)
}
