//! Records the target triple cargo-gpu is built for: the default triple for host runners.
fn main() {
    println!(
        "cargo:rustc-env=CARGO_GPU_HOST_TRIPLE={}",
        std::env::var("TARGET").expect("cargo sets TARGET for build scripts")
    );
    println!("cargo:rerun-if-changed=build.rs");
}
