//! The fixtures that `remote-run`'s sanitizer, profiler and debugger are checked on with a real
//! GPU (`tests/fixtures/fault-oob`, a planted out-of-bounds write; `tests/fixtures/race-shared`,
//! a planted shared-memory race): each builds with the real nvcc, and its cubin's line table
//! holds the line its marker names, in debug (`-G`) and release (`-lineinfo`) builds alike, so a
//! sanitizer or debugger can name that line.

mod support;

use std::process::Command;

use support::{marker_line, require_cuda, templates_target_dir, Run, TestProject};

#[test]
fn the_fault_fixtures_build_and_their_cubins_carry_the_marked_lines() {
    let Some(cuda) = require_cuda() else { return };
    for (fixture, kernel, marker) in
        [("fault-oob", "scale_rows", "// FAULT HERE"), ("race-shared", "block_sum", "// RACE HERE")]
    {
        let p = TestProject::new(fixture, Some(cuda.clone()));
        let line = marker_line(&p.path(&format!("kernels/{kernel}.cu")), marker);
        for (profile, flag) in [("debug", None), ("release", Some("--release"))] {
            let mut c = p.cmd(&[&["build", "--target", "sm_90a"], flag.as_slice()].concat());
            c.env("CARGO_TARGET_DIR", templates_target_dir());
            Run::of(&mut c).ok();
            let pkg = templates_target_dir().join("gpu").join(profile).join(fixture);
            assert!(pkg.join("bin").join(fixture).is_file(), "{fixture} {profile}: the runner is in the package");
            let cubin = pkg.join(format!("kernels/{kernel}.sm_90a.cubin"));
            let out = Run::of(Command::new(cuda.join("bin/nvdisasm")).args(["-g", "-c"]).arg(&cubin)).ok().stdout;
            let want = format!("{kernel}.cu\", line {line}");
            assert!(out.contains(&want), "{fixture} {profile}: the line table names {want}:\n{out}");
        }
    }
}
