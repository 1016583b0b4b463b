//! `cargo gpu inspect` and the build's findings, against the real nvcc, cuobjdump and nvdisasm:
//! resource figures and census checked against what those tools say themselves, a kernel made
//! to spill, a trap-only stub, an expected instruction missing, `--diff`, `--sass` and the JSON.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::{cuobjdump, repo_root, require_cuda, TestProject};

/// `inspect ARGS --message-format json`: one object per kernel and target, by (kernel, target).
fn inspect_json(p: &TestProject, args: &[&str]) -> BTreeMap<(String, String), Value> {
    let run = p.run(&[&["inspect", "--message-format", "json"][..], args].concat()).ok();
    run.stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| ((v["kernel"].as_str().unwrap().to_string(), v["target"].as_str().unwrap().to_string()), v))
        .collect()
}

fn function<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["functions"].as_array().unwrap().iter().find(|f| f["name"] == name).unwrap_or_else(|| panic!("no {name} in {v}"))
}

/// `REG:168 STACK:0 SHARED:1024 LOCAL:0` of `name`, as cuobjdump prints it.
fn res_usage(cuda: &Path, cubin: &Path, name: &str) -> BTreeMap<String, u64> {
    let text = cuobjdump(cuda, &["-res-usage"], cubin);
    let mut lines = text.lines().skip_while(|l| l.trim() != format!("Function {name}:"));
    let figures = lines.nth(1).unwrap_or_else(|| panic!("no {name} in {text}"));
    figures
        .split_whitespace()
        .filter_map(|f| f.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
        .collect()
}

/// How many instructions of function `name` in `cuobjdump -sass` contain `needle`.
fn sass_count(cuda: &Path, cubin: &Path, name: &str, needle: &str) -> u64 {
    let sass = cuobjdump(cuda, &["-sass", "-fun", name], cubin);
    sass.lines().filter(|l| l.trim_start().starts_with("/*") && l.contains(needle)).count() as u64
}

#[test]
fn example_kernels_resources_and_census_match_cuobjdump() {
    let Some(cuda) = require_cuda() else { return };
    let p = TestProject::new("kernels-example", Some(cuda.clone()));
    let reports = inspect_json(&p, &["--release"]);
    let keys: Vec<(&str, &str)> = reports.keys().map(|(k, t)| (k.as_str(), t.as_str())).collect();
    assert_eq!(
        keys,
        [
            ("hgemm", "sm_100a"),
            ("hgemm", "sm_90a"),
            ("tcgen05_gemm", "sm_100a"),
            ("tcgen05_gemm", "sm_90a"),
            ("vector_add", "sm_100a"),
            ("vector_add", "sm_90a"),
        ]
    );
    for ((kernel, target), v) in &reports {
        let cubin = Path::new(v["cubin"].as_str().unwrap());
        assert_eq!(v["profile"], "release");
        assert_eq!(v["reason"], "gpu-inspect");
        for f in v["functions"].as_array().unwrap() {
            let name = f["name"].as_str().unwrap();
            let usage = res_usage(&cuda, cubin, name);
            assert_eq!(f["registers"], usage["REG"], "{kernel} {target} {name}");
            assert_eq!(f["shared_bytes"], usage["SHARED"], "{kernel} {target} {name}");
            assert_eq!(f["local_bytes"], usage["LOCAL"], "{kernel} {target} {name}");
            assert_eq!(f["stack_bytes"], usage["STACK"], "{kernel} {target} {name}");
            assert_eq!(f["spill_store_bytes"], 0, "{kernel} {target} {name}");
            for key in ["census", "opcodes"] {
                assert!(f[key].is_object(), "{key} in {f}");
            }
            assert!(f["instructions"].as_u64().unwrap() > 0);
        }
    }

    let hopper = &reports[&("hgemm".into(), "sm_90a".into())];
    let cubin = Path::new(hopper["cubin"].as_str().unwrap());
    for name in ["hgemm_bf16_tn_128x256", "hgemm_bf16_tn_bf16c_128x128"] {
        let f = function(hopper, name);
        assert_eq!(f["max_threads"], 384, "__launch_bounds__(HGEMM_THREADS, 1)");
        assert_eq!(f["trap_only"], false);
        let hgmma = sass_count(&cuda, cubin, name, "HGMMA.");
        assert!(hgmma > 0);
        assert_eq!(f["census"]["HGMMA"], hgmma, "{name}");
        assert_eq!(f["census"]["SYNCS"], sass_count(&cuda, cubin, name, " SYNCS."), "{name}");
    }
    let wide = function(hopper, "hgemm_bf16_tn_128x256");
    assert_eq!(wide["census"]["UTMASTG"], sass_count(&cuda, cubin, "hgemm_bf16_tn_128x256", "UTMASTG.2D"));
    assert!(wide["census"].get("UTMALDG.MULTICAST").is_none());
    let pair = function(hopper, "hgemm_bf16_tn_pair_128x256");
    assert_eq!(pair["census"]["UTMALDG.MULTICAST"], 1, "the pair kernel multicasts its half of B: {pair}");
    // `bar.sync` with the barrier's id in a register: ptxas -v says all 16 are used.
    assert_eq!(wide["barriers"], 16);

    let blackwell = &reports[&("tcgen05_gemm".into(), "sm_100a".into())];
    let cubin = Path::new(blackwell["cubin"].as_str().unwrap());
    let f = function(blackwell, "tcgen05_gemm_bf16_tn");
    assert_eq!(f["census"]["UTCHMMA"], sass_count(&cuda, cubin, "tcgen05_gemm_bf16_tn", "UTCHMMA"));
    assert!(f["census"]["UTCHMMA"].as_u64().unwrap() > 0);

    // The stubs the other target gets only trap, and the example declares them (no warning).
    for (kernel, target) in [("hgemm", "sm_100a"), ("tcgen05_gemm", "sm_90a")] {
        let v = &reports[&(kernel.into(), target.into())];
        assert!(v["functions"].as_array().unwrap().iter().all(|f| f["trap_only"] == true), "{v}");
        assert_eq!(v["findings"], serde_json::json!([]), "{v}");
    }
    assert!(reports.values().all(|v| v["expect_missing"] == serde_json::json!([])));

    // --sass: the .cu lines and the marked instructions of interest, for one function only.
    let run = p.run(&["inspect", "--release", "hgemm_bf16_tn_128x256", "--target", "sm_90a", "--sass"]).ok();
    assert!(run.stdout.contains("hgemm_bf16_tn_128x256:\n"), "{}", run.stdout);
    assert!(!run.stdout.contains("hgemm_bf16_tn_bf16c_128x256:"), "only the function asked for");
    assert!(run.stdout.contains("// kernels/hgemm.cu:"), "source lines shown from the project root");
    let marked: Vec<&str> = run.stdout.lines().filter(|l| l.starts_with(">> ")).collect();
    assert!(marked.iter().any(|l| l.contains("HGMMA.64x256x16.F32.BF16")), "{marked:?}");
    assert!(
        marked.iter().all(|l| ["HGMMA", "SYNCS", "UTMA", "BAR", "UTC"].iter().any(|m| l.contains(m))),
        "{marked:?}"
    );
}

#[test]
fn a_kernel_made_to_spill_warns_once_in_release_and_inspect_reports_ptxas_figures() {
    let Some(cuda) = require_cuda() else { return };
    let p = TestProject::new("spill", Some(cuda.clone()));
    // ptxas's own figures for the same compile.
    let out = Command::new(cuda.join("bin/nvcc"))
        .args(["-cubin", "-gencode", "arch=compute_90a,code=sm_90a", "-O3", "-lineinfo", "-Xptxas", "-v", "-o"])
        .arg(p.tmp.path().join("ref.cubin"))
        .arg(p.path("kernels/spill.cu"))
        .output()
        .unwrap();
    let ptxas = String::from_utf8_lossy(&out.stderr).into_owned();
    let line = ptxas.lines().find(|l| l.contains("bytes spill stores")).unwrap_or_else(|| panic!("{ptxas}"));
    let figure = |label: &str| -> u64 {
        line.split(',').find(|p| p.contains(label)).unwrap().split_whitespace().next().unwrap().parse().unwrap()
    };
    let (stores, loads) = (figure("spill stores"), figure("spill loads"));
    assert!(stores > 0 && loads > 0, "the fixture must spill: {line}");

    let build = p.run(&["build", "--release"]).ok();
    let warning = format!("{stores} bytes stored and {loads} bytes loaded per thread");
    assert_eq!(build.stderr.matches("spills registers to local memory").count(), 1, "{}", build.stderr);
    assert!(build.stderr.contains("warning: spill.cu (sm_90a): `spill` spills registers"), "{}", build.stderr);
    assert!(build.stderr.contains(&warning), "{}", build.stderr);
    assert!(!build.stderr.contains("ptxas info"), "ptxas's raw lines stay out: {}", build.stderr);
    let again = p.run(&["build", "--release"]).ok();
    assert!(!again.stderr.contains("spills"), "a no-op build says it no more: {}", again.stderr);
    let debug = p.run(&["build"]).ok();
    assert!(!debug.stderr.contains("spills"), "-G spills are expected: {}", debug.stderr);

    let reports = inspect_json(&p, &["--release"]);
    let f = function(&reports[&("spill".into(), "sm_90a".into())], "spill");
    assert_eq!((f["spill_store_bytes"].as_u64(), f["spill_load_bytes"].as_u64()), (Some(stores), Some(loads)));
    assert_eq!(f["registers"], 32, "__launch_bounds__(1024, 2) caps it at 32");
    assert_eq!(f["max_threads"], 1024);
    let cubin = Path::new(reports[&("spill".into(), "sm_90a".into())]["cubin"].as_str().unwrap());
    assert_eq!(f["local_bytes"], res_usage(&cuda, cubin, "spill")["LOCAL"]);
    // inspect shows the warning on demand.
    let run = p.run(&["inspect", "--release"]).ok();
    assert_eq!(run.stderr.matches(&warning).count(), 1, "{}", run.stderr);
    assert!(run.stdout.contains(&format!("spills {stores} B stored / {loads} B loaded")), "{}", run.stdout);
}

#[test]
fn hopper_gemm_for_sm_120a_warns_that_it_only_traps_and_debug_advisories_are_one_note() {
    let Some(cuda) = require_cuda() else { return };
    let p = TestProject::new("tiny", Some(cuda));
    let hgemm = std::fs::read_to_string(repo_root().join("templates/hopper-wgmma/kernels/hgemm.cu")).unwrap();
    p.write("kernels/hgemm.cu", &hgemm);
    let run = p.run(&["build", "--target", "sm_120a", "--release"]).ok();
    let lines: Vec<&str> = run.stderr.lines().filter(|l| l.contains("only trap")).collect();
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    // All 16 entry points (fp32 and bf16 C, alone and in pairs, four widths), named once each.
    assert!(lines[0].starts_with("warning: hgemm.cu (sm_120a): `hgemm_bf16_tn_"), "{}", lines[0]);
    assert!(lines[0].contains("` only trap on sm_120a"), "{}", lines[0]);
    for c in ["", "bf16c_"] {
        for pair in ["", "pair_"] {
            for bn in [256, 240, 192, 128] {
                let name = format!("`hgemm_bf16_tn_{c}{pair}128x{bn}`");
                assert_eq!(lines[0].matches(&name).count(), 1, "{name} in {}", lines[0]);
            }
        }
    }
    assert_eq!(lines[0].matches("`hgemm_bf16_tn_").count(), 16, "{}", lines[0]);
    assert!(lines[0].contains("a launch fails at run time"));
    // The kernels that do compute are not flagged, and the same build for Hopper has no stub.
    assert!(!run.stderr.contains("fill.cu (sm_120a): `"), "{}", run.stderr);
    let hopper = p.run(&["build", "--target", "sm_90a", "--release"]).ok();
    assert!(!hopper.stderr.contains("only trap"), "{}", hopper.stderr);
    assert!(!hopper.stderr.contains("C75"), "a release build has no performance loss: {}", hopper.stderr);
    // Debug: ptxas's advisories that -G causes are one note, not its raw lines.
    let debug = p.run(&["build", "--target", "sm_90a"]).ok();
    let notes: Vec<&str> = debug.stderr.lines().filter(|l| l.starts_with("note: hgemm.cu (sm_90a)")).collect();
    assert_eq!(notes.len(), 1, "{}", debug.stderr);
    assert!(notes[0].contains("C7505 (-G ignores setmaxnreg)") && notes[0].contains("C7509"), "{}", notes[0]);
    assert!(notes[0].contains("does not apply to `--release`"), "{}", notes[0]);
    assert!(!debug.stderr.contains("ptxas info"), "{}", debug.stderr);
}

#[test]
fn a_missing_expected_instruction_fails_the_build_naming_kernel_target_and_instruction() {
    let Some(cuda) = require_cuda() else { return };
    let p = TestProject::new("tiny", Some(cuda));
    let manifest = std::fs::read_to_string(p.path("Cargo.toml")).unwrap();
    p.write(
        "Cargo.toml",
        &format!("{manifest}\n[package.metadata.gpu.expect]\nscale = {{ sm_90a = [\"HGMMA\", \"EXIT\"] }}\n"),
    );
    let run = p.run(&["build"]).fails_with(1);
    run.stderr_has("kernel `scale` for sm_90a has no `HGMMA` in its SASS");
    assert!(!run.stderr.contains("`EXIT`"), "EXIT is there: only what is missing is named: {}", run.stderr);
    assert!(!p.package("debug").join("manifest.toml").exists(), "no package is assembled");
    // Fresh cubins are checked too: the expectation met, the same cubins pass without recompiling.
    p.write("Cargo.toml", &format!("{manifest}\n[package.metadata.gpu.expect]\nscale = {{ sm_90a = [\"EXIT\"] }}\n"));
    let ok = p.run(&["build"]).ok();
    assert!(ok.compiled().is_empty(), "{:?}", ok.compiled());
    p.write(
        "Cargo.toml",
        &format!("{manifest}\n[package.metadata.gpu.expect]\nscale = {{ sm_90a = [\"UTCHMMA\"] }}\n"),
    );
    p.run(&["build"]).fails_with(1).stderr_has("kernel `scale` for sm_90a has no `UTCHMMA` in its SASS");
}

#[test]
fn diff_shows_what_changed_since_the_previous_build() {
    let Some(cuda) = require_cuda() else { return };
    let p = TestProject::new("spill", Some(cuda));
    let first = inspect_json(&p, &["--release", "--diff"]);
    assert_eq!(first[&("spill".into(), "sm_90a".into())]["diff"]["previous"], false);
    let run = p.run(&["inspect", "--release", "--diff"]).ok();
    assert!(run.stdout.contains("no previous build of this kernel and target"), "{}", run.stdout);
    // Fewer threads a block: ptxas may use more registers, and spills less.
    let src = std::fs::read_to_string(p.path("kernels/spill.cu")).unwrap();
    p.write("kernels/spill.cu", &src.replace("__launch_bounds__(1024, 2)", "__launch_bounds__(256, 1)"));
    let after = inspect_json(&p, &["--release", "--diff"]);
    let diff = &after[&("spill".into(), "sm_90a".into())]["diff"];
    assert_eq!(diff["previous"], true);
    let changes: BTreeMap<&str, (u64, u64)> = diff["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["figure"].as_str().unwrap(), (c["before"].as_u64().unwrap(), c["after"].as_u64().unwrap())))
        .collect();
    assert_eq!(changes["max threads"], (1024, 256), "{changes:?}");
    assert_eq!(changes["registers"].0, 32, "{changes:?}");
    assert!(changes["registers"].1 > 32, "{changes:?}");
    // A second look compares the same two builds: it is not a new build.
    let text = p.run(&["inspect", "--release", "--diff"]).ok();
    assert!(text.stdout.contains("changed since the previous build:\n"), "{}", text.stdout);
    assert!(text.stdout.contains("    spill: max threads 1024 -> 256\n"), "{}", text.stdout);
}

#[test]
fn inspect_of_an_unknown_kernel_lists_the_kernels() {
    let Some(cuda) = require_cuda() else { return };
    let p = TestProject::new("tiny", Some(cuda));
    let run = p.run(&["inspect", "nope"]).fails_with(1);
    run.stderr_has("no kernel source or kernel function is called `nope` (kernel sources: fill, scale)");
}
