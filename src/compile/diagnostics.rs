//! A kernel that does not compile, explained in terms of its `.cu` source: nvcc's own
//! diagnostics, and for an instruction ptxas refused (its line is in a temporary PTX file), the
//! `.cu` line it came from, traced through the PTX's `.loc` directives, and the targets that
//! accept the instruction.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::arch::targets_for_instruction;
use crate::cmd::Cmd;
use crate::compile::sources::Job;
use crate::shell::Shell;

/// A job that failed, with what the user should read.
#[derive(Debug)]
pub struct CompileFailure {
    pub job: Job,
    pub diagnostics: String,
    pub error: Option<anyhow::Error>,
}

impl CompileFailure {
    pub fn other(job: &Job, e: anyhow::Error) -> CompileFailure {
        CompileFailure { job: job.clone(), diagnostics: String::new(), error: Some(e) }
    }
}

/// nvcc's diagnostics, plus, for an instruction ptxas refused, the `.cu` line it came from and
/// the targets that would accept it. `ptx_command` is the failed compile's command: it is run
/// again with `-ptx` into `PTX_OUT` to find the line.
pub fn explain(shell: &Shell, job: &Job, stderr: &str, root: &Path, ptx_command: impl Fn(&Path) -> Cmd) -> String {
    let mut text = stderr.trim_end().to_string();
    let Some(refusal) = parse_ptxas_refusal(stderr) else {
        return text;
    };
    let mut location = None;
    let ptx_dir = tempfile::tempdir().ok();
    if let Some(dir) = &ptx_dir {
        let ptx = dir.path().join("kernel.ptx");
        let cmd = ptx_command(&ptx);
        let args: Vec<_> =
            cmd.get_args().iter().map(|a| if a == "-cubin" { "-ptx".into() } else { a.clone() }).collect();
        let cmd = Cmd::new(cmd.program(), "generate PTX to locate the error").current_dir(root).args(args);
        let _ = cmd.output_unchecked(Some(shell));
        if let Ok(ptx_text) = std::fs::read_to_string(&ptx) {
            location = source_location(&ptx_text, refusal.ptx_line);
        }
    }
    text.push('\n');
    let where_ = match &location {
        Some((file, line)) => {
            let shown = file.strip_prefix(root).unwrap_or(file).display().to_string();
            let source_line = std::fs::read_to_string(file)
                .ok()
                .and_then(|s| s.lines().nth(line.saturating_sub(1) as usize).map(|l| l.trim().to_string()));
            let mut s = format!("{shown}:{line}");
            if let Some(src) = source_line {
                s.push_str(&format!("\n   |\n{line:>3}| {src}\n   |"));
            }
            s
        }
        None => job.kernel.rel.display().to_string(),
    };
    text.push_str(&format!(
        "error: instruction `{}` is not available on {}, at {where_}",
        refusal.instruction, job.target
    ));
    if let Some(targets) = targets_for_instruction(&refusal.instruction) {
        text.push_str(&format!(
            "\n  = help: `{}` needs {targets}: build with --target {}",
            refusal.instruction,
            targets.split(", ").next().unwrap_or(targets)
        ));
    }
    text
}

/// An instruction ptxas refused for the target, with the line in the temporary PTX.
#[derive(Debug, PartialEq, Eq)]
pub struct PtxasRefusal {
    pub ptx_line: u32,
    pub instruction: String,
}

/// Reads `ptxas /tmp/x.ptx, line 25; error   : Instruction 'wgmma.fence' not supported on .target 'sm_90'`.
pub fn parse_ptxas_refusal(stderr: &str) -> Option<PtxasRefusal> {
    stderr.lines().find_map(|l| {
        let l = l.trim();
        if !l.starts_with("ptxas") || !l.contains("not supported on .target") {
            return None;
        }
        let after = &l[l.find(", line ")? + 7..];
        let ptx_line = after[..after.find(';')?].trim().parse().ok()?;
        let q = l.find("Instruction '")? + 13;
        let instruction = l[q..q + l[q..].find('\'')?].to_string();
        Some(PtxasRefusal { ptx_line, instruction })
    })
}

/// Maps a PTX line back to the `.cu` file and line through the `.loc` and `.file` directives that
/// `-G` and `-lineinfo` emit.
pub fn source_location(ptx: &str, ptx_line: u32) -> Option<(PathBuf, u32)> {
    let mut files = BTreeMap::new();
    for l in ptx.lines() {
        let l = l.trim();
        if let Some(rest) = l.strip_prefix(".file") {
            let rest = rest.trim();
            let (idx, name) = rest.split_once(char::is_whitespace)?;
            let name = name.trim().split('"').nth(1)?;
            files.insert(idx.to_string(), PathBuf::from(name));
        }
    }
    let mut last = None;
    for (i, l) in ptx.lines().enumerate() {
        if i as u32 + 1 >= ptx_line {
            break;
        }
        let l = l.trim();
        if let Some(rest) = l.strip_prefix(".loc") {
            let mut parts = rest.split_whitespace();
            let (Some(file), Some(line)) = (parts.next(), parts.next()) else { continue };
            if let Ok(line) = line.parse::<u32>() {
                last = Some((file.to_string(), line));
            }
        }
    }
    let (file, line) = last?;
    Some((files.get(&file)?.clone(), line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ptxas_refusal_is_read() {
        let stderr = "ptxas /tmp/tmpxft_00000b84_00000000-6_w.ptx, line 25; error   : Instruction 'wgmma.fence' not supported on .target 'sm_90'\nptxas fatal   : Ptx assembly aborted due to errors\n";
        assert_eq!(parse_ptxas_refusal(stderr), Some(PtxasRefusal { ptx_line: 25, instruction: "wgmma.fence".into() }));
        assert_eq!(parse_ptxas_refusal("k.cu(3): error: expected a \";\""), None);
    }

    #[test]
    fn ptx_lines_map_back_to_source() {
        let ptx = "\t.loc\t1 1 0\n\tmov.u32 %r1, 0;\n\t.loc\t1 2 3\n\twgmma.fence.sync.aligned;\n\t.loc\t1 3 1\n\tret;\n\t.file\t1 \"/p/kernels/w.cu\"\n";
        assert_eq!(source_location(ptx, 4), Some((PathBuf::from("/p/kernels/w.cu"), 2)));
        assert_eq!(source_location(ptx, 2), Some((PathBuf::from("/p/kernels/w.cu"), 1)));
        assert_eq!(source_location("no loc", 1), None);
    }
}
