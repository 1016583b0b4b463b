//! The command line, parsed by hand into a validated `Config` before any GPU work starts.

use std::ffi::OsString;

use crate::fail::{Exit, Failure};

pub const HELP: &str = "\
vector-add: run the vector_add CUDA kernel, check it against the CPU and time it

Usage: vector-add [--size N] [--seed S] [--iters K]

Options:
  --size N     number of float elements per vector (default 16777216)
  --seed S     seed of the pseudo-random inputs (default 42)
  --iters K    number of timed launches after one warm-up launch (default 20)
  -h, --help   print this help

Environment:
  CARGO_GPU_KERNELS  directory of the cubins (default: ../kernels next to this executable)
  CARGO_GPU_OUT      if set, a directory to write result.json into

Exit codes:
  0  verified OK
  1  wrong result, or a CUDA call failed while running
  2  bad command line
  3  no NVIDIA driver or no GPU
  4  no cubin for this GPU, or the driver refused it
";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub size: usize,
    pub seed: u64,
    pub iters: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config { size: 1 << 24, seed: 42, iters: 20 }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Help,
    Run(Config),
}

/// Parses the arguments after the program name. Accepts `--flag value` and `--flag=value`.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Parsed, Failure> {
    let mut config = Config::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let arg = arg.into_string().map_err(|a| usage(format!("argument {a:?} is not valid UTF-8")))?;
        let (flag, inline_value) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_string(), Some(value.to_string())),
            _ => (arg.clone(), None),
        };
        if flag == "-h" || flag == "--help" {
            return Ok(Parsed::Help);
        }
        if !matches!(flag.as_str(), "--size" | "--seed" | "--iters") {
            return Err(usage(format!("unexpected argument `{arg}`")));
        }
        let value = match inline_value {
            Some(value) => value,
            None => args
                .next()
                .and_then(|v| v.into_string().ok())
                .ok_or_else(|| usage(format!("`{flag}` needs a value")))?,
        };
        match flag.as_str() {
            "--size" => config.size = positive(&flag, &value)?,
            "--iters" => config.iters = positive(&flag, &value)?,
            _ => config.seed = value.parse().map_err(|_| usage(format!("`--seed` wants an integer, got `{value}`")))?,
        }
    }
    Ok(Parsed::Run(config))
}

fn positive(flag: &str, value: &str) -> Result<usize, Failure> {
    match value.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(usage(format!("`{flag}` wants a positive integer, got `{value}`"))),
    }
}

fn usage(message: String) -> Failure {
    Failure::new(Exit::Usage, format!("{message}\n\n{}", HELP.lines().nth(2).unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Parsed, Failure> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn defaults() {
        assert_eq!(parse_strs(&[]).unwrap(), Parsed::Run(Config { size: 16_777_216, seed: 42, iters: 20 }));
    }

    #[test]
    fn both_value_forms() {
        let parsed = parse_strs(&["--size", "1000", "--seed=7", "--iters=3"]).unwrap();
        assert_eq!(parsed, Parsed::Run(Config { size: 1000, seed: 7, iters: 3 }));
    }

    #[test]
    fn help_wins() {
        assert_eq!(parse_strs(&["--size", "5", "--help"]).unwrap(), Parsed::Help);
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [&["--size", "0"][..], &["--size"], &["--iters", "x"], &["--frob"], &["--seed", "-1"]] {
            let err = parse_strs(bad).unwrap_err();
            assert_eq!(err.exit, Exit::Usage, "{bad:?}");
        }
    }
}
