//! What a cubin itself says about each kernel's resources: `cuobjdump -res-usage` (registers,
//! stack, static shared memory, local memory, constant bank 0) and the ELF's `.nv.info.<function>`
//! attributes (the maximum threads per block `__launch_bounds__` set, the named barriers).

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use object::{Object, ObjectSection};
use serde::{Deserialize, Serialize};

/// One function's line of `cuobjdump -res-usage`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResUsage {
    pub registers: u32,
    pub stack: u64,
    pub shared: u64,
    pub local: u64,
    pub constant0: u64,
}

/// Reads ` Function NAME:` followed by `  REG:168 STACK:0 SHARED:1024 LOCAL:0 CONSTANT[0]:916 ...`.
pub fn parse_res_usage(text: &str) -> BTreeMap<String, ResUsage> {
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("Function ").and_then(|n| n.strip_suffix(':')) {
            current = Some(name.to_string());
            continue;
        }
        let Some(name) = current.take() else { continue };
        let mut r = ResUsage::default();
        for field in t.split_whitespace() {
            let Some((key, value)) = field.split_once(':') else { continue };
            let Ok(v) = value.parse::<u64>() else { continue };
            match key {
                "REG" => r.registers = v as u32,
                "STACK" => r.stack = v,
                "SHARED" => r.shared = v,
                "LOCAL" => r.local = v,
                "CONSTANT[0]" => r.constant0 = v,
                _ => {}
            }
        }
        out.insert(name, r);
    }
    out
}

/// Attributes of one function from its `.nv.info.<function>` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NvInfo {
    /// `EIATTR_MAX_THREADS`: x * y * z of `__launch_bounds__` (or `EIATTR_REQNTID`'s).
    pub max_threads: Option<u32>,
    /// `EIATTR_NUM_BARRIERS`: named barriers the function uses (absent means none).
    pub barriers: u32,
}

const EIFMT_NVAL: u8 = 0x01;
const EIFMT_BVAL: u8 = 0x02;
const EIFMT_HVAL: u8 = 0x03;
const EIFMT_SVAL: u8 = 0x04;
const EIATTR_MAX_THREADS: u8 = 0x05;
const EIATTR_REQNTID: u8 = 0x10;
const EIATTR_NUM_BARRIERS: u8 = 0x4c;

/// Every function's attributes, from the cubin's bytes.
pub fn nv_info(cubin: &[u8]) -> Result<BTreeMap<String, NvInfo>> {
    let file = object::File::parse(cubin).context("not an ELF file")?;
    let mut out = BTreeMap::new();
    for section in file.sections() {
        let Some(function) = section.name().ok().and_then(|n| n.strip_prefix(".nv.info.")) else { continue };
        let data = section.data().with_context(|| format!("failed to read section .nv.info.{function}"))?;
        out.insert(function.to_string(), parse_nv_info(data));
    }
    Ok(out)
}

/// Reads the attribute records: a format byte, an attribute byte, then a value whose size the
/// format gives (none, a byte, a half word, or a length-prefixed block).
fn parse_nv_info(data: &[u8]) -> NvInfo {
    let mut info = NvInfo::default();
    let mut i = 0;
    while i + 4 <= data.len() {
        let (format, attr) = (data[i], data[i + 1]);
        let half = u16::from_le_bytes([data[i + 2], data[i + 3]]);
        let (value, next) = match format {
            EIFMT_SVAL => {
                let end = (i + 4 + half as usize).min(data.len());
                (&data[i + 4..end], end)
            }
            EIFMT_NVAL | EIFMT_BVAL | EIFMT_HVAL => (&data[i + 2..i + 4], i + 4),
            _ => break, // an encoding this reader does not know: stop rather than misread
        };
        match (attr, format) {
            (EIATTR_NUM_BARRIERS, EIFMT_BVAL) => info.barriers = value[0] as u32,
            (EIATTR_MAX_THREADS | EIATTR_REQNTID, EIFMT_SVAL) if value.len() >= 12 => {
                let dims: Vec<u32> =
                    value.chunks_exact(4).take(3).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
                info.max_threads = Some(dims.iter().product());
            }
            _ => {}
        }
        i = next;
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn res_usage_lines_are_read_per_function() {
        let text = "\nResource usage:\n Common:\n  GLOBAL:0\n Function hgemm_bf16_tn:\n  REG:168 STACK:8 SHARED:1024 LOCAL:4 CONSTANT[0]:916 TEXTURE:0 SURFACE:0 SAMPLER:0\n";
        let r = parse_res_usage(text);
        assert_eq!(r["hgemm_bf16_tn"], ResUsage { registers: 168, stack: 8, shared: 1024, local: 4, constant0: 916 });
        assert_eq!(r.len(), 1, "the Common block is not a function");
    }

    #[test]
    fn nv_info_records_give_max_threads_and_barriers() {
        // As nvcc 13.0 wrote them for hgemm (sm_90a): a block, a half word, a byte, a bare flag.
        let mut data = vec![0x04, 0x37, 4, 0, 0x82, 0, 0, 0];
        data.extend([0x03, 0x1b, 168, 0]);
        data.extend([0x02, 0x4c, 1, 0]);
        data.extend([0x01, 0x54, 0, 0]);
        data.extend([0x04, 0x05, 12, 0, 0x80, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(parse_nv_info(&data), NvInfo { max_threads: Some(384), barriers: 1 });
        assert_eq!(parse_nv_info(&[0x04, 0x05, 200, 0, 1]), NvInfo::default(), "a short block is not read past");
    }
}
