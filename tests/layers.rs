//! The crate's layers hold: every `crate::` path in `src/` is read, and an import from a lower
//! layer into a higher one, an import between two command files, a cycle between any two files,
//! or a module that `lib.rs` does not place in its layer diagram fails this test.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules by layer, highest first. A module may use only modules of lower layers;
/// the leaves (last layer) may use each other, but never in a cycle. The crate root parses the
/// command line with `cli` and hands the parsed arguments to `commands`, which read them.
const LAYERS: &[&[&str]] = &[
    &["commands"],
    &["cli"],
    &["compile", "remote", "manifest_edit"],
    &["inspect"],
    &["project", "templates", "toolchain", "vcs"],
    &["package", "config", "runs"],
    &["nvidia_smi", "tool_reports"],
    &["arch", "cache", "cmd", "digest", "escape", "exit", "pypi", "quote", "redact", "safe_fs", "shell", "sweep"],
];

fn layer_of(top: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&top))
}

/// `src/remote/follow.rs` -> `remote::follow`; `src/cmd/mod.rs` -> `cmd`; the crate root -> "".
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    match parts.as_slice() {
        [root] if root == "lib" || root == "main" => String::new(),
        [.., last] if last == "mod" => parts[..parts.len() - 1].join("::"),
        _ => parts.join("::"),
    }
}

/// Every module path this source names through `crate::` (doc links included: they are uses
/// too), with comments that are not doc comments left out.
fn uses(text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = match line.find("//") {
            Some(i) if !line[i..].starts_with("///") && !line[i..].starts_with("//!") => &line[..i],
            _ => line,
        };
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + 7..];
            let path: String =
                rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':').collect();
            // The longest module prefix of the path: `remote::scripts::run` -> `remote::scripts`.
            let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
            if let Some(m) = (1..=segs.len()).rev().map(|n| segs[..n].join("::")).find(|m| modules.contains(m)) {
                out.insert(m);
            }
        }
    }
    out
}

fn sources(src: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walkdir::WalkDir::new(src)
        .into_iter()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "rs"))
        .map(|e| e.into_path())
        .collect();
    v.sort();
    v
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = sources(&src);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(&src, f)).filter(|m| !m.is_empty()).collect();
    files
        .iter()
        .map(|f| {
            let m = module_of(&src, f);
            let mut used = uses(&std::fs::read_to_string(f).unwrap(), &modules);
            used.remove(&m);
            // A parent module (its `mod.rs`) may name its own children.
            used.retain(|u| !m.is_empty() && !u.starts_with(&format!("{m}::")));
            (m, used)
        })
        .collect()
}

fn top(m: &str) -> &str {
    m.split("::").next().unwrap()
}

#[test]
fn no_lower_layer_uses_a_higher_one_and_commands_use_no_other_command() {
    let mut wrong = Vec::new();
    for (m, used) in graph() {
        if m.is_empty() {
            continue;
        }
        let Some(from) = layer_of(top(&m)) else {
            wrong.push(format!("{m} is in no layer: place it in LAYERS and in lib.rs's diagram"));
            continue;
        };
        for u in used {
            if top(&u) == top(&m) {
                if top(&m) == "commands" {
                    wrong.push(format!("{m} uses {u}: commands share code through a lower layer"));
                }
                continue;
            }
            let to = layer_of(top(&u)).unwrap_or(usize::MAX);
            let both_leaves = from == LAYERS.len() - 1 && to == from;
            if to <= from && !both_leaves {
                wrong.push(format!("{m} (layer {from}) uses {u} (layer {to})"));
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n  {}", wrong.join("\n  "));
}

#[test]
fn no_two_modules_use_each_other_even_through_others() {
    let g = graph();
    // Depth-first search for a back edge; reports the cycle found.
    fn visit(
        m: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(m.to_string(), 1);
        path.push(m.to_string());
        for u in g.get(m).into_iter().flatten() {
            match state.get(u.as_str()).copied().unwrap_or(0) {
                1 => {
                    let start = path.iter().position(|p| p == u).unwrap();
                    let mut cycle = path[start..].to_vec();
                    cycle.push(u.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(u, g, state, path) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(m.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in g.keys() {
        if state.get(m.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(cycle) = visit(m, &g, &mut state, &mut Vec::new()) {
                panic!("modules use each other: {}", cycle.join(" -> "));
            }
        }
    }
}

#[test]
fn lib_rs_places_every_module_in_its_diagram() {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let doc: String = lib.lines().filter(|l| l.starts_with("//!")).collect::<Vec<_>>().join("\n");
    let declared: Vec<&str> = lib.lines().filter_map(|l| l.strip_prefix("pub mod ")?.strip_suffix(';')).collect();
    assert!(!declared.is_empty());
    for m in declared {
        assert!(layer_of(m).is_some(), "`{m}` is in no layer of this test");
        assert!(doc.contains(&format!("`{m}`")), "lib.rs's layer diagram does not name `{m}`");
    }
}

#[test]
fn the_checker_sees_a_violation_when_there_is_one() {
    let modules: BTreeSet<String> = ["remote", "remote::scripts", "shell"].map(String::from).into();
    let text = "use crate::remote::scripts::run; // crate::shell in a comment\n/// [`crate::shell::Shell`]\n";
    assert_eq!(uses(text, &modules), ["remote::scripts", "shell"].map(String::from).into());
    assert!(layer_of("shell") > layer_of("remote"));
}
