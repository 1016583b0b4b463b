//! What `nvidia-smi` says about a machine's GPUs, parsed: the one query that both this machine
//! (`doctor`) and a remote (the preflight) answer. Pure text in, data out.

use anyhow::{bail, Context, Result};

use crate::arch::ComputeCap;

/// One GPU as `nvidia-smi` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpu {
    pub index: usize,
    pub name: String,
    pub compute_cap: ComputeCap,
    pub driver_version: String,
}

/// Parses `nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader`.
pub fn parse_gpu_query(text: &str) -> Result<Vec<Gpu>> {
    let mut gpus = Vec::new();
    for (index, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let fields: Vec<&str> = line.rsplitn(3, ',').map(str::trim).collect();
        let [driver, cc, name] = fields.as_slice() else {
            bail!("unexpected line from nvidia-smi: `{line}`");
        };
        gpus.push(Gpu {
            index,
            name: name.to_string(),
            compute_cap: cc.parse().with_context(|| format!("unexpected line from nvidia-smi: `{line}`"))?,
            driver_version: driver.to_string(),
        });
    }
    Ok(gpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nvidia_smi_query() {
        let gpus =
            parse_gpu_query("NVIDIA GeForce RTX 5060 Ti, 12.0, 580.95.05\nNVIDIA H100 80GB HBM3, 9.0, 580.95.05\n")
                .unwrap();
        assert_eq!(gpus.len(), 2);
        assert_eq!(gpus[0].name, "NVIDIA GeForce RTX 5060 Ti");
        assert_eq!(gpus[0].compute_cap, ComputeCap::new(12, 0));
        assert_eq!(gpus[1].index, 1);
        assert_eq!(gpus[1].driver_version, "580.95.05");
        assert!(parse_gpu_query("").unwrap().is_empty());
        assert!(parse_gpu_query("just one field").is_err());
    }
}
