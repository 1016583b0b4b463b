//! `--sweep NAME=v1,v2,...`: the axes of a sweep, their cross product (the first axis varies
//! slowest), and a combination applied to the runner's arguments (`{NAME}` replaced by its
//! value; each run also gets the values as environment variables).

use anyhow::{bail, Result};

/// One `--sweep` option.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    pub name: String,
    pub values: Vec<String>,
}

/// The most runs one sweep may make: a typo in a list should not queue a million jobs.
pub const MAX_RUNS: usize = 1000;

/// Parses `NAME=v1,v2,...`: NAME a shell variable name (it becomes one), values non-empty.
pub fn parse_axis(text: &str) -> Result<Axis> {
    let Some((name, values)) = text.split_once('=') else {
        bail!("--sweep `{text}` is not NAME=v1,v2,...: write it as --sweep BLOCK=64,128,256");
    };
    if !crate::quote::is_name(name) {
        bail!("--sweep `{text}`: `{name}` is not a variable name (letters, digits and _, not first a digit)");
    }
    let values: Vec<String> = values.split(',').map(str::to_string).collect();
    if values.iter().any(String::is_empty) {
        bail!("--sweep `{text}` has an empty value: write the values as v1,v2,... with nothing between two commas");
    }
    Ok(Axis { name: name.to_string(), values })
}

/// Every `--sweep`, checked: names given once, at most [`MAX_RUNS`] combinations.
pub fn parse_axes(options: &[String]) -> Result<Vec<Axis>> {
    let axes: Vec<Axis> = options.iter().map(|o| parse_axis(o)).collect::<Result<_>>()?;
    for (i, a) in axes.iter().enumerate() {
        if axes[..i].iter().any(|b| b.name == a.name) {
            bail!("--sweep {} is given twice: give each name once, with all its values", a.name);
        }
    }
    let runs = axes.iter().try_fold(1usize, |n, a| n.checked_mul(a.values.len()));
    match runs {
        Some(n) if n <= MAX_RUNS => Ok(axes),
        _ => bail!("the sweep makes more than {MAX_RUNS} runs: sweep fewer values at a time"),
    }
}

/// The cross product, first axis slowest: one combination of (name, value) pairs per run; one
/// empty combination for no axes.
pub fn combinations(axes: &[Axis]) -> Vec<Vec<(String, String)>> {
    let mut out: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for a in axes {
        out = out
            .into_iter()
            .flat_map(|c| {
                a.values.iter().map(move |v| {
                    let mut c = c.clone();
                    c.push((a.name.clone(), v.clone()));
                    c
                })
            })
            .collect();
    }
    out
}

/// The runner's arguments with each `{NAME}` of the combination replaced by its value.
pub fn apply(args: &[String], combination: &[(String, String)]) -> Vec<String> {
    args.iter().map(|a| combination.iter().fold(a.clone(), |a, (k, v)| a.replace(&format!("{{{k}}}"), v))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cross_product_in_order_and_the_arguments_filled_in() {
        let axes = parse_axes(&["BLOCK=64,128".into(), "SHAPE=4096x4096x4096,8192x8192x8192".into()]).unwrap();
        let c = combinations(&axes);
        assert_eq!(c.len(), 4);
        assert_eq!(c[1], [("BLOCK".to_string(), "64".to_string()), ("SHAPE".into(), "8192x8192x8192".into())]);
        let args = vec!["hgemm".to_string(), "{SHAPE}".into(), "--block={BLOCK}".into(), "{OTHER}".into()];
        assert_eq!(apply(&args, &c[2]), ["hgemm", "4096x4096x4096", "--block=128", "{OTHER}"]);
        assert_eq!(combinations(&[]), [Vec::<(String, String)>::new()]);
    }

    #[test]
    fn bad_sweeps_say_how_to_write_them() {
        for (bad, says) in [
            ("BLOCK", "is not NAME=v1,v2"),
            ("1X=1", "is not a variable name"),
            ("A B=1", "is not a variable name"),
            ("B=1,,2", "has an empty value"),
        ] {
            let e = parse_axis(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let e = parse_axes(&["A=1".into(), "A=2".into()]).unwrap_err().to_string();
        assert!(e.contains("given twice"), "{e}");
        let many: Vec<String> = (0..4).map(|i| format!("A{i}={}", ["x"; 10].join(","))).collect();
        assert!(parse_axes(&many).unwrap_err().to_string().contains("more than 1000 runs"));
    }
}
