//! A cubin's SASS as `nvdisasm -c` prints it, read per function: the opcodes and how often each
//! occurs, which functions are kernel entry points, whether a kernel can do nothing but trap, and
//! the census of the instructions a kernel developer watches (tensor cores, TMA, async copies,
//! barriers).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One function of a cubin's SASS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SassFunction {
    pub name: String,
    /// A kernel (`__global__`), as opposed to a device function it calls.
    pub entry: bool,
    /// Every opcode with its modifiers (`HGMMA.64x256x16.F32.BF16`), NOPs left out, and its count.
    pub opcodes: BTreeMap<String, u32>,
    /// Every launch traps: the path from the entry reaches a trap before any branch or exit.
    pub trap_only: bool,
}

/// The families of instructions of interest, in the order a census shows them. A base name that
/// starts with `UTC` (tcgen05: `UTCHMMA`, `UTCBAR`, ...) or `UTMA` (TMA) is of interest too.
const INTEREST: [&str; 7] = ["HGMMA", "HMMA", "IMMA", "LDGSTS", "UBLKCP", "SYNCS", "BAR"];

/// `HGMMA.64x128x16.F32.BF16` -> `HGMMA`; `MEMBAR.SC.VC;` -> `MEMBAR`.
pub fn base_name(opcode: &str) -> &str {
    opcode.trim_end_matches(';').split('.').next().unwrap_or(opcode)
}

/// The census key of an opcode: its base name, with `.MULTICAST` kept for the multicast forms
/// (`UTMALDG.2D.MULTICAST` -> `UTMALDG.MULTICAST`).
pub fn census_key(opcode: &str) -> String {
    let base = base_name(opcode);
    if opcode.split('.').skip(1).any(|m| m == "MULTICAST") {
        format!("{base}.MULTICAST")
    } else {
        base.to_string()
    }
}

/// Whether an opcode belongs to a family the census shows.
pub fn of_interest(opcode: &str) -> bool {
    let base = base_name(opcode);
    INTEREST.contains(&base) || base.starts_with("UTC") || base.starts_with("UTMA")
}

/// Whether `expected` (`HGMMA`, `UTMALDG.MULTICAST`) names `opcode`: the same base name and
/// every modifier it lists present.
pub fn names(expected: &str, opcode: &str) -> bool {
    let mut want = expected.split('.');
    let mut have = opcode.trim_end_matches(';').split('.');
    if want.next() != have.next() {
        return false;
    }
    let have: Vec<&str> = have.collect();
    want.all(|m| have.contains(&m))
}

/// The census of one function: the instructions of interest by census key, in a stable order.
pub fn census(opcodes: &BTreeMap<String, u32>) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for (op, n) in opcodes.iter().filter(|(op, _)| of_interest(op)) {
        *out.entry(census_key(op)).or_insert(0) += n;
    }
    out
}

/// Every instruction of a function, NOPs left out.
pub fn total(opcodes: &BTreeMap<String, u32>) -> u32 {
    opcodes.values().sum()
}

/// One instruction line of nvdisasm: `/*12c0*/  @!P0 HGMMA.64x256x16.F32.BF16 R24, gdesc[UR12], R24 ;`
/// -> (predicated, opcode, the whole instruction text).
pub fn instruction(line: &str) -> Option<(bool, &str, &str)> {
    let rest = line.trim_start().strip_prefix("/*")?;
    let (addr, rest) = rest.split_once("*/")?;
    if addr.is_empty() || !addr.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let text = rest.split("/*").next().unwrap_or(rest).trim();
    let mut words = text.split_whitespace();
    let first = words.next()?;
    let (predicated, opcode) = if first.starts_with('@') { (true, words.next()?) } else { (false, first) };
    Some((predicated, opcode.trim_end_matches(';'), text))
}

/// An instruction as the trap check reads it: predicated, opcode, whole text.
type Line = (bool, String, String);

/// The functions of `nvdisasm -c` output, in the order it prints them.
pub fn parse(text: &str) -> Vec<SassFunction> {
    let mut entries = Vec::new();
    let mut functions: Vec<(SassFunction, Vec<Line>)> = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix(".other") {
            if rest.contains("STO_CUDA_ENTRY") {
                if let Some(name) = rest.trim().split(',').next() {
                    entries.push(name.trim().to_string());
                }
            }
        } else if let Some(name) = t.strip_prefix(".text.").and_then(|n| n.strip_suffix(':')) {
            functions.push((SassFunction { name: name.to_string(), ..Default::default() }, Vec::new()));
        } else if let (Some((predicated, opcode, text)), Some((_, body))) = (instruction(line), functions.last_mut()) {
            if base_name(opcode) != "NOP" {
                body.push((predicated, opcode.to_string(), text.to_string()));
            }
        }
    }
    functions
        .into_iter()
        .map(|(mut f, body)| {
            for (_, op, _) in &body {
                *f.opcodes.entry(op.clone()).or_insert(0) += 1;
            }
            f.entry = entries.contains(&f.name);
            f.trap_only = traps_at_entry(&body);
            f
        })
        .collect()
}

/// Whether the straight line from a function's entry reaches a trap (`BPT.TRAP`, or in a `-G`
/// build a call to `__trap`) before anything that could leave that line: a branch, an exit, a
/// return, another call, a predicated instruction.
fn traps_at_entry(body: &[Line]) -> bool {
    for (predicated, op, text) in body {
        let base = base_name(op);
        if *predicated {
            return false;
        }
        if base == "BPT" && op.contains("TRAP") {
            return true;
        }
        if base == "CALL" {
            return text.contains("(__trap)");
        }
        if matches!(base, "BRA" | "BRX" | "JMP" | "JMX" | "EXIT" | "RET" | "BREAK" | "KILL") {
            return false;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const STUB: &str = r#"
        .global         hgemm
        .other          hgemm,@"STO_CUDA_ENTRY STV_DEFAULT"
hgemm:
.text.hgemm:
        /*0000*/                   LDC R1, c[0x0][0x37c] ;
        /*0010*/                   BPT.TRAP 0x1 ;
.L_x_0:
        /*0020*/                   BRA `(.L_x_0);
        /*0030*/                   NOP;
"#;

    const DEBUG_STUB: &str = r#"
        .other          k,@"STO_CUDA_ENTRY STV_DEFAULT"
.text.k:
        /*0000*/                   LDC R1, c[0x0][0x37c] ;
        /*0010*/                   MOV R2, 0x100 ;
        /*0210*/                   CALL.ABS.NOINC `(__trap) ;
        /*0250*/                   EXIT ;
.text.__trap:
        /*0000*/                   BPT.TRAP 0x1 ;
        /*0020*/                   RET.ABS.NODEC R20 0x0 ;
"#;

    const GEMM: &str = r#"
        .other          g,@"STO_CUDA_ENTRY STV_DEFAULT"
.text.g:
        /*0000*/                   LDC R1, c[0x0][0x37c] ;
        /*0010*/              @!P0 BPT.TRAP 0x1 ;
        /*0020*/                   UTMALDG.2D [UR4], [UR10] ;
        /*0030*/                   UTMALDG.2D.MULTICAST [UR4], [UR10], UR8 ;
        /*0040*/                   HGMMA.64x256x16.F32.BF16 R24, gdesc[UR12], R24 ;
        /*0050*/                   HGMMA.64x256x16.F32.BF16 R24, gdesc[UR12], R24, gsb0 ;
        /*0060*/                   SYNCS.EXCH.64 URZ, [UR5], UR6 ;
        /*0070*/                   MEMBAR.SC.VC;
        /*0080*/                   EXIT ;
"#;

    #[test]
    fn a_stub_that_only_traps_is_told_from_a_kernel_with_a_guarded_trap() {
        let f = parse(STUB);
        assert_eq!(f.len(), 1);
        assert!(f[0].entry && f[0].trap_only);
        assert_eq!(total(&f[0].opcodes), 3, "NOPs are not counted");
        let d = parse(DEBUG_STUB);
        assert_eq!(
            d.iter().map(|f| (f.name.as_str(), f.entry, f.trap_only)).collect::<Vec<_>>(),
            [("k", true, true), ("__trap", false, true)]
        );
        let g = parse(GEMM);
        assert!(g[0].entry && !g[0].trap_only, "a predicated trap does not make a stub");
    }

    #[test]
    fn census_counts_base_names_and_multicast_forms() {
        let g = &parse(GEMM)[0];
        let c = census(&g.opcodes);
        assert_eq!(
            c.into_iter().collect::<Vec<_>>(),
            [("HGMMA".into(), 2), ("SYNCS".into(), 1), ("UTMALDG".into(), 1), ("UTMALDG.MULTICAST".into(), 1)]
        );
        assert_eq!(total(&g.opcodes), 9);
        assert_eq!(g.opcodes["MEMBAR.SC.VC"], 1, "a `;` glued to the opcode is not part of it");
    }

    #[test]
    fn expected_names_match_base_and_modifiers() {
        assert!(names("HGMMA", "HGMMA.64x256x16.F32.BF16"));
        assert!(names("UTMALDG.MULTICAST", "UTMALDG.2D.MULTICAST"));
        assert!(!names("UTMALDG.MULTICAST", "UTMALDG.2D"));
        assert!(!names("HMMA", "HGMMA.64x256x16.F32.BF16"));
        assert!(names("BAR", "BAR.SYNC.DEFER_BLOCKING"));
        assert!(!names("BAR", "UCGABAR_ARV"));
    }
}
