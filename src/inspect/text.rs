//! `cargo gpu inspect`'s text for people: a kernel's resources and census, what changed since
//! the previous build, and its SASS with the `.cu` lines it came from, the instructions of
//! interest marked.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use crate::inspect::report::{Change, FunctionReport};
use crate::inspect::sass;

/// Two lines per kernel function: its resources, then its census and instruction total.
pub fn function(f: &FunctionReport) -> String {
    let mut s = format!(
        "  {}\n    registers {}, shared {} B, local {} B, stack {} B, spills {} B stored / {} B loaded, barriers {}, max threads {}",
        f.name,
        f.registers,
        f.shared,
        f.local,
        f.stack,
        f.spill_stores,
        f.spill_loads,
        f.barriers,
        f.max_threads.map(|n| n.to_string()).unwrap_or_else(|| "not set".into())
    );
    let census: Vec<String> = f.census().into_iter().map(|(k, n)| format!("{k} {n}")).collect();
    let _ = write!(
        s,
        "\n    {}{}instructions {}{}",
        census.join(", "),
        if census.is_empty() { "" } else { "; " },
        f.total(),
        if f.trap_only { " (only traps)" } else { "" }
    );
    s
}

/// `    hgemm_bf16_tn: registers 160 -> 168`, one line per changed figure.
pub fn changes(changes: &[Change]) -> String {
    let shown = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
    changes
        .iter()
        .map(|c| match (c.figure.as_str(), c.before, c.after) {
            ("function", None, _) => format!("    {}: new kernel function", c.function),
            ("function", _, None) => format!("    {}: kernel function gone", c.function),
            _ => format!("    {}: {} {} -> {}", c.function, c.figure, shown(c.before), shown(c.after)),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

const MARK: &str = "\x1b[1;33m";
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

/// The listing of `nvdisasm -c -gi` for the functions `wanted` keeps: each `//## File ...` line
/// becomes `// kernels/x.cu:42  <that source line>` (paths shown from `root`), and each
/// instruction of interest is marked, in colour when `color`, else with `>>` in a left column.
pub fn sass_listing(text: &str, wanted: impl Fn(&str) -> bool, root: &Path, color: bool) -> String {
    let mut sources: BTreeMap<String, Option<Vec<String>>> = BTreeMap::new();
    let mut out = String::new();
    let mut keep = false;
    for line in text.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix(".text.").and_then(|n| n.strip_suffix(':')) {
            keep = wanted(name);
            if keep {
                let _ = writeln!(out, "\n{name}:");
            }
            continue;
        }
        if !keep {
            continue;
        }
        if let Some(rest) = t.strip_prefix("//## File") {
            if let Some(shown) = source_line(rest, root, &mut sources) {
                let _ = if color { writeln!(out, "{DIM}   // {shown}{RESET}") } else { writeln!(out, "   // {shown}") };
            }
            continue;
        }
        if let Some((_, opcode, text)) = sass::instruction(line) {
            if sass::base_name(opcode) == "NOP" {
                continue;
            }
            let addr = t.split("*/").next().unwrap_or_default().trim_start_matches("/*");
            let interest = sass::of_interest(opcode);
            let _ = match (interest, color) {
                (true, true) => writeln!(out, "   {addr}  {MARK}{text}{RESET}"),
                (true, false) => writeln!(out, ">> {addr}  {text}"),
                (false, _) => writeln!(out, "   {addr}  {text}"),
            };
        } else if t.starts_with(".L_") {
            let _ = writeln!(out, "{t}");
        }
    }
    out
}

/// ` "/p/kernels/x.cu", line 42 inlined at "/p/kernels/x.cu", line 90` ->
/// `kernels/x.cu:42 (inlined at :90)  <line 42 of the file>`.
fn source_line(rest: &str, root: &Path, cache: &mut BTreeMap<String, Option<Vec<String>>>) -> Option<String> {
    let mut quoted = rest.split('"');
    let file = quoted.nth(1)?;
    let after = quoted.next().unwrap_or_default();
    let line: usize =
        after.trim_start_matches(',').trim().strip_prefix("line")?.split_whitespace().next()?.parse().ok()?;
    let inlined = rest.find("inlined at").and_then(|i| {
        let tail = &rest[i..];
        let l = tail.rsplit("line").next()?.trim().parse::<usize>().ok()?;
        Some(format!(" (inlined at line {l})"))
    });
    let lines = cache
        .entry(file.to_string())
        .or_insert_with(|| std::fs::read_to_string(file).ok().map(|s| s.lines().map(str::to_string).collect()));
    let code = lines.as_ref().and_then(|l| l.get(line.checked_sub(1)?)).map(|s| s.trim().to_string());
    let shown = Path::new(file).strip_prefix(root).unwrap_or(Path::new(file)).display().to_string();
    let mut s = format!("{shown}:{line}{}", inlined.unwrap_or_default());
    if let Some(code) = code.filter(|c| !c.is_empty()) {
        let _ = write!(s, "  {code}");
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_read_as_before_and_after() {
        let c = |figure: &str, before, after| Change { function: "g".into(), figure: figure.into(), before, after };
        let text = changes(&[
            c("registers", Some(160), Some(168)),
            c("function", None, Some(1)),
            c("function", Some(1), None),
        ]);
        assert_eq!(text, "    g: registers 160 -> 168\n    g: new kernel function\n    g: kernel function gone");
    }

    #[test]
    fn listing_keeps_wanted_functions_shows_source_and_marks_interest() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("kernels/g.cu");
        std::fs::create_dir_all(src.parent().unwrap()).unwrap();
        std::fs::write(&src, "// g\n  asm volatile(\"wgmma...\");\n").unwrap();
        let text = format!(
            ".text.g:\n\t//## File \"{f}\", line 2 inlined at \"{f}\", line 9\n        /*0010*/                   HGMMA.64x256x16.F32.BF16 R24, gdesc[UR12], R24 ;\n        /*0020*/                   NOP;\n        /*0030*/                   EXIT ;\n.text.other:\n        /*0000*/                   EXIT ;\n",
            f = src.display()
        );
        let plain = sass_listing(&text, |n| n == "g", dir.path(), false);
        assert_eq!(
            plain,
            "\ng:\n   // kernels/g.cu:2 (inlined at line 9)  asm volatile(\"wgmma...\");\n>> 0010  HGMMA.64x256x16.F32.BF16 R24, gdesc[UR12], R24 ;\n   0030  EXIT ;\n"
        );
        let colored = sass_listing(&text, |n| n == "g", dir.path(), true);
        assert!(colored.contains("\x1b[1;33mHGMMA") && !colored.contains(">>"));
    }
}
