//! `remote-run --sanitize`, `--profile`, `--debug` and the memcheck rerun after a kernel fault,
//! against a real sshd on loopback (and `--remote local`), with fake `compute-sanitizer`, `ncu`
//! and `cuda-gdb` on the remote's PATH that print what the real ones print.

mod support;

use std::path::PathBuf;

use support::{fake_pypi_sanitizer, make_package, read_text, toml_str, tree, Remote, Run, SshdOptions, World, RUNNER};

/// Where the fake tools say the error is: the fault fixture's marked line, as nvcc records it.
const FAULT_AT: &str = "/src/fault-oob/kernels/scale_rows.cu:9";

fn package(world: &World) -> PathBuf {
    let dir = world.path("pkg");
    make_package(&dir, RUNNER, &[("scale_rows.sm_90a.cubin", b"\x7fELF fake cubin")], &["sm_90a"]);
    dir
}

fn run_dir(world: &World) -> PathBuf {
    world.runs_dir().join(world.last_record().id)
}

#[test]
fn the_preflight_reports_the_tools_and_a_missing_one_is_refused_before_upload() {
    let Some(it) = Remote::start(SshdOptions::default()) else { return };
    let pkg = package(&it.world);
    it.configure(&it.hooks());
    for (option, tool) in [("--profile", "ncu"), ("--sanitize", "compute-sanitizer"), ("--debug", "cuda-gdb")] {
        // Whatever compute-sanitizer this machine has, none is shipped.
        let out = Run::of(it.remote_run_cmd(&pkg, &[option]).env("CARGO_GPU_SHIP_SANITIZER", "never")).fails_with(1);
        out.stderr_has(&format!(
            "it has no {tool} (looked on PATH, in $CUDA_HOME/bin and in /usr/local/cuda/bin), which {option} needs: install"
        ))
        .stderr_has(&format!("or run without {option}"))
        .stderr_has("Tools no compute-sanitizer, no ncu");
        assert!(tree(&it.work.join("blobs")).is_empty(), "nothing was uploaded for {option}");
        assert!(it.remote_runs().is_empty(), "nothing was launched for {option}");
    }
    assert_eq!(it.hook_log(), "start\nstop\n".repeat(3), "each refusal still stops the instance");
    // A plain run goes ahead, saying that a fault could not be sanitised.
    let out =
        Run::of(it.remote_run_cmd(&pkg, &["--", "exit=4"]).env("CARGO_GPU_SHIP_SANITIZER", "never")).fails_with(4);
    out.stderr_has("note: it has no compute-sanitizer: a kernel fault will not be rerun under memcheck");
    assert!(!run_dir(&it.world).join("autosanitize.txt").exists());

    let report = it.world.run(&["doctor", "--remote", "it"]).ok().stdout;
    assert!(report.contains("\n  tools:    no compute-sanitizer, no ncu, no cuda-gdb\n"), "{report}");

    it.world.fake_cuda_tools("");
    let report = it.world.run(&["doctor", "--remote", "it"]).ok().stdout;
    assert!(report.contains("\n  tools:    compute-sanitizer, ncu") && report.contains(", cuda-gdb\n"), "{report}");
    let out = it.remote_run(&pkg, &["--profile"]).ok();
    // ncu's counters: open to root, or as the remote's driver says (unknown without one).
    out.stderr_has("Tools compute-sanitizer, ncu").stderr_has(", cuda-gdb\n");
    assert_eq!(it.world.tool_calls("ncu").len(), 3, "profiled once, then exported as text and as CSV");
}

#[test]
fn a_kernel_fault_is_rerun_under_memcheck_in_the_same_run_and_its_line_printed() {
    let Some(it) = Remote::start(SshdOptions::default()) else { return };
    let pkg = package(&it.world);
    it.configure("");
    it.world.fake_cuda_tools(FAULT_AT);
    let out = it.remote_run(&pkg, &["--", "exit=4"]).fails_with(4);
    // Said while it happens, after the runner's own output.
    let rerun = "Rerunning after a kernel fault (exit status 4), under compute-sanitizer memcheck to find its line\n";
    assert!(out.stderr.find("runner warns\n").unwrap() < out.stderr.find(rerun).expect(rerun), "{}", out.stderr);
    out.stderr_has(&format!(
        "Memcheck ERROR SUMMARY: 1023 errors; the first: Invalid __global__ write of size 4 bytes at {FAULT_AT} in scale_rows"
    ))
    .stderr_has("    by thread (1,0,0) in block (0,0,0)\n")
    .stderr_has("    and is 4,190,208 bytes after the nearest allocation at 0x7f1e2a001000 of size 4,194,304 bytes\n");
    assert!(!out.stderr.contains("Host Frame"), "the host backtrace stays in the report");
    let calls = it.world.tool_calls("compute-sanitizer");
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(
        calls[0].starts_with("--tool memcheck --log-file autosanitize.txt ")
            && calls[0].ends_with("/bin/runner exit=4")
    );
    // The rerun ran in the same run folder: its report and its own output came back with the run.
    let dir = run_dir(&it.world);
    assert!(read_text(&dir.join("autosanitize.txt")).contains("scale_rows.cu:9"));
    assert!(read_text(&dir.join("autosanitize-output.log")).contains("runner says hello"));
    assert_eq!(read_text(&dir.join("exit-status")), "4\n", "the runner's own status, not the rerun's");
    let rec = it.world.last_record();
    assert_eq!(rec.reports, ["autosanitize.txt", "autosanitize-output.log"]);
    // `runs` lists the report, `logs` prints it again.
    assert!(it.world.run(&["runs"]).stdout.lines().nth(1).unwrap().ends_with("memcheck"));
    it.world.run(&["logs", &rec.id]).fails_with(4).stderr_has(&format!("at {FAULT_AT} in scale_rows"));

    // Only a kernel fault sends it round again, and --no-autosanitize keeps it from that.
    it.remote_run(&pkg, &["--", "exit=3"]).fails_with(3);
    it.remote_run(&pkg, &["--no-autosanitize", "--", "exit=4"]).fails_with(4);
    assert_eq!(it.world.tool_calls("compute-sanitizer").len(), 1);
    assert!(it.world.run(&["runs"]).stdout.lines().nth(3).unwrap().ends_with(" -"));
}

#[test]
fn sanitize_runs_the_chosen_tool_and_prints_its_first_error_escaped() {
    let Some(it) = Remote::start(SshdOptions::default()) else { return };
    let pkg = package(&it.world);
    it.configure("");
    // A hostile remote's report: terminal escapes in the file name.
    it.world.fake_cuda_tools("/src/race\x1b]0;pwned\x07/block_sum.cu:13");
    let out = it.remote_run(&pkg, &["--sanitize=racecheck", "--", "exit=4"]).fails_with(4);
    out.stderr_has(
        "Sanitizer RACECHECK SUMMARY: 1 hazard displayed (1 error, 0 warnings); the first: Error: Race reported between \
         Write access at block_sum(const float *, float *)+0x2b0 in /src/race\\e]0;pwned\\x07/block_sum.cu:13 (report in ",
    )
    .stderr_has("    and Read access at block_sum(const float *, float *)+0x290 in /src/race\\e]0;pwned\\x07/block_sum.cu:13 [7936 hazards]");
    assert!(!out.stderr.contains('\x1b'), "nothing of the remote's reaches the terminal unescaped");
    let calls = it.world.tool_calls("compute-sanitizer");
    assert!(calls[0].starts_with("--tool racecheck --log-file sanitizer.txt "), "{calls:?}");
    assert!(calls[1].starts_with("--tool memcheck --log-file autosanitize.txt "), "a fault is still rerun: {calls:?}");
    // --sanitize alone is memcheck, and a memcheck run is not rerun under memcheck.
    it.remote_run(&pkg, &["--sanitize", "--", "exit=4"]).fails_with(4);
    let calls = it.world.tool_calls("compute-sanitizer");
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(calls[2].starts_with("--tool memcheck --log-file sanitizer.txt "), "{calls:?}");
    assert_eq!(it.world.last_record().tools, ["--sanitize=memcheck"]);
    it.world.run(&["remote-run", "--sanitize=leakcheck"]).fails_with(2);
}

#[test]
fn profile_brings_back_the_report_and_prints_a_summary_per_kernel() {
    let Some(it) = Remote::start(SshdOptions::default()) else { return };
    let pkg = package(&it.world);
    it.configure("");
    // (doctor's report of the tools is checked with the preflight's, above)
    it.world.fake_cuda_tools("");
    let out = it.remote_run(&pkg, &["--profile"]).ok();
    out.stderr_has("Profile 1 kernel, clocks not locked (--clock-control none: the GPU's own clocks")
        .stderr_has("    vector_add (1 launch): 6.40 us, SM 12.1%, DRAM 85.3%, occupancy 80.1%, 16 registers/thread\n");
    let dir = run_dir(&it.world);
    assert_eq!(read_text(&dir.join("profile.ncu-rep")), "NVIDIA Nsight Compute report (fake)\n");
    assert!(read_text(&dir.join("profile.csv")).contains("\"Achieved Occupancy\""));
    assert!(read_text(&dir.join("profile.txt")).contains("Section: GPU Speed Of Light Throughput"));
    assert!(read_text(&dir.join("ncu.log")).contains("==PROF== Report:"));
    let calls = it.world.tool_calls("ncu");
    assert!(
        calls[0].starts_with("--clock-control none --export profile --force-overwrite --log-file ncu.log "),
        "{calls:?}"
    );
    assert_eq!(calls[1], "--import profile.ncu-rep --page details");
    assert_eq!(calls[2], "--import profile.ncu-rep --page details --csv");
    assert!(it.world.run(&["runs"]).stdout.lines().nth(1).unwrap().ends_with("profile"));
    it.world.run(&["logs"]).ok().stderr_has("    vector_add (1 launch): 6.40 us");

    // --ncu-args come after ours, quoted; a clock setting of the user's replaces ours.
    let out = it.remote_run(&pkg, &["--profile", "--ncu-args", "--clock-control base --set 'a b'"]).ok();
    out.stderr_has("Profile 1 kernel, clocks as --ncu-args set them");
    let calls = it.world.tool_calls("ncu");
    assert!(calls[3].starts_with("--clock-control base --set a b --export profile "), "{calls:?}");

    // Counters closed to the user: the run goes on, and the summary says why it is empty.
    it.world.fake("ncu-denied", true);
    let out = it.remote_run(&pkg, &["--profile"]).ok();
    out.stderr_has("warning: ncu profiled no kernel").stderr_has("ERR_NVGPUCTRPERM");
}

#[test]
fn debug_prints_the_backtrace_of_a_kernel_fault() {
    let world = World::new();
    let pkg = package(&world);
    world.write_config(&format!("[remotes.local]\nworkdir = {}\n", toml_str(&world.path("w").display().to_string())));
    world.fake_cuda_tools(FAULT_AT);
    let run = |args: &[&str]| {
        let pkg = pkg.display().to_string();
        support::Run::of(&mut world.cmd(&[&["remote-run", "--remote", "local", "--package", &pkg], args].concat()))
    };
    let out = run(&["--debug", "--", "exit=4"]).fails_with(4);
    out.stderr_has("Rerunning after a kernel fault (exit status 4), under cuda-gdb for a backtrace\n").stderr_has(&format!("Debugger cuda-gdb: CUDA Exception: Warp Illegal Address at {FAULT_AT}"))
        .stderr_has("    focus: CUDA kernel 0, grid 1, block (1,0,0), thread (0,0,0)")
        .stderr_has(&format!("    #0  0x00007fffd3a8f4e0 in scale_rows<<<(4096,1,1),(256,1,1)>>> (in=0x7fffc6000000, out=0x7fffc6400000, n=1048576) at {FAULT_AT}\n"))
        .stderr_has("      i = 256\n");
    let calls = world.tool_calls("cuda-gdb");
    assert_eq!(calls.len(), 1);
    assert!(
        calls[0]
            .starts_with("-batch -ex set environment LD_PRELOAD=libcuda.so.1 -ex run -ex bt -ex info locals --args ")
            && calls[0].ends_with("/bin/runner exit=4")
    );
    assert!(read_text(&run_dir(&world).join("cuda-gdb.txt")).contains("CUDA_EXCEPTION_14"));
    // No fault, no debugger.
    run(&["--debug", "--", "exit=1"]).fails_with(1);
    assert_eq!(world.tool_calls("cuda-gdb").len(), 1);
}

#[test]
fn this_machines_sanitizer_is_shipped_once_assembled_once_and_reused() {
    let Some(it) = Remote::start(SshdOptions::default()) else { return };
    let pkg = package(&it.world);
    it.configure("");
    // A driver-only remote; the fault's place is where the fakes look for it.
    std::fs::write(it.world.fakebin.join("fault-at"), FAULT_AT).unwrap();
    let local = fake_pypi_sanitizer(&it.world.path("site"));
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let mut c = it.remote_run_cmd(&pkg, args);
        c.env("CARGO_GPU_SANITIZER", &local);
        for (k, v) in env {
            c.env(k, v);
        }
        Run::of(&mut c)
    };
    let shipped_calls = |name: &str| {
        read_text(&it.work.join("tools").join(name).join("compute-sanitizer/compute-sanitizer.log")).lines().count()
    };

    // A plain run does not pay for the upload: it says how to ship it.
    run(&[], &["--", "exit=4"])
        .fails_with(4)
        .stderr_has("run once with --sanitize to ship this machine's compute-sanitizer there");
    assert_eq!(it.world.last_record().blobs_uploaded, 2, "the package only");
    assert!(!it.work.join("tools").exists());

    // --sanitize ships it: five blobs (the documentation stays here).
    let out = run(&[], &["--sanitize", "--", "exit=4"]).fails_with(4);
    out.stderr_has("; compute-sanitizer 13.5.25 shipped from here (compute-sanitizer-")
        .stderr_has("Uploading 5 blobs")
        .stderr_has(&format!(
            "Sanitizer ERROR SUMMARY: 1023 errors; the first: Invalid __global__ write of size 4 bytes at {FAULT_AT}"
        ));
    let rec = it.world.last_record();
    assert_eq!((rec.blobs_uploaded, rec.blobs_present), (5, 2), "the package was there already");
    let names = tree(&it.work.join("tools"));
    let name = names[0].split('/').next().unwrap().to_string();
    assert!(name.starts_with("compute-sanitizer-"), "{names:?}");
    assert_eq!(
        names,
        [
            ".complete",
            "bin/compute-sanitizer",
            "compute-sanitizer/TreeLauncherSubreaper",
            "compute-sanitizer/compute-sanitizer",
            "compute-sanitizer/compute-sanitizer.log",
            "compute-sanitizer/libsanitizer-collection.so",
            "compute-sanitizer/libsanitizer-public.so"
        ]
        .map(|f| format!("{name}/{f}"))
    );
    let complete = it.work.join("tools").join(&name).join(".complete");
    let assembled = std::fs::metadata(&complete).unwrap().modified().unwrap();
    assert_eq!(shipped_calls(&name), 1);

    // Reused: nothing is uploaded or assembled again, by --sanitize or by the rerun after a fault.
    run(&[], &["--sanitize", "--", "exit=4"]).fails_with(4).stderr_has("Sanitizer ERROR SUMMARY: 1023 errors");
    assert_eq!(it.world.last_record().blobs_uploaded, 0);
    run(&[], &["--", "exit=4"]).fails_with(4).stderr_has(&format!(
        "Memcheck ERROR SUMMARY: 1023 errors; the first: Invalid __global__ write of size 4 bytes at {FAULT_AT}"
    ));
    assert_eq!(it.world.last_record().blobs_uploaded, 0);
    assert_eq!(std::fs::metadata(&complete).unwrap().modified().unwrap(), assembled);
    assert_eq!(shipped_calls(&name), 3);

    // A copy changed on the remote is never run: it is assembled again from the blobs.
    let public = it.work.join("tools").join(&name).join("compute-sanitizer/libsanitizer-public.so");
    std::fs::write(&public, b"tampered").unwrap();
    run(&[], &["--sanitize", "--", "exit=4"]).fails_with(4).stderr_has("Sanitizer ERROR SUMMARY: 1023 errors");
    assert_eq!(std::fs::read(&public).unwrap(), b"\x7fELF public");
    assert_eq!(it.world.last_record().blobs_uploaded, 0);

    // A blob of it damaged in the store while the folder must be assembled again: deleted, named,
    // uploaded again, and the run goes on.
    let public_sha = cargo_gpu::digest::sha256_hex(b"\x7fELF public");
    std::fs::write(it.work.join("blobs").join(&public_sha), b"planted").unwrap();
    std::fs::remove_dir_all(it.work.join("tools")).unwrap();
    run(&[], &["--sanitize", "--", "exit=4"])
        .fails_with(4)
        .stderr_has(&format!(
            "warning: the stored blob {public_sha} (compute-sanitizer's compute-sanitizer/libsanitizer-public.so) on it did not match its sha256"
        ))
        .stderr_has("Sanitizer ERROR SUMMARY: 1023 errors");
    assert_eq!(it.world.last_record().blobs_uploaded, 1);
    assert_eq!(std::fs::read(&public).unwrap(), b"\x7fELF public");

    // Where the remote has its own, that one runs, unless shipping is forced.
    it.world.fake_cuda_tools(FAULT_AT);
    run(&[], &["--sanitize", "--", "exit=4"]).fails_with(4);
    assert_eq!(it.world.tool_calls("compute-sanitizer").len(), 1);
    let before = shipped_calls(&name);
    run(&[("CARGO_GPU_SHIP_SANITIZER", "always")], &["--sanitize", "--", "exit=4"])
        .fails_with(4)
        .stderr_has("shipped from here");
    assert_eq!(it.world.tool_calls("compute-sanitizer").len(), 1, "the remote's own did not run");
    assert_eq!(shipped_calls(&name), before + 1, "the shipped copy did");
}
