//! What the runner prints, and `result.json` for tools (written by hand: one flat object does
//! not need a JSON library).

use std::fmt::Write as _;
use std::path::Path;

use crate::check::Timing;
use crate::cubin::Capability;
use crate::fail::{Exit, Failure};

pub const OUT_ENV: &str = "CARGO_GPU_OUT";

#[derive(Debug)]
pub struct Report<'a> {
    pub device: &'a str,
    pub cc: Capability,
    pub cubin: &'a str,
    pub n: usize,
    pub verified: bool,
    pub timing: Timing,
}

impl Report<'_> {
    /// Bytes moved per launch: read a and b, write c.
    pub fn gbps(&self) -> Option<f64> {
        self.timing.gbps(3.0 * 4.0 * self.n as f64)
    }

    pub fn time_line(&self) -> String {
        let t = &self.timing;
        let gbps = self.gbps().map_or_else(|| "n/a GB/s".to_string(), |g| format!("{g:.1} GB/s"));
        format!(
            "time: median {:.1} us (min {:.1}, max {:.1}) over {} launches, {gbps}",
            t.median_us, t.min_us, t.max_us, t.launches
        )
    }

    pub fn to_json(&self) -> String {
        let t = &self.timing;
        let gbps = self.gbps().map_or_else(|| "null".to_string(), |g| format!("{g:.3}"));
        format!(
            "{{\n  \"device\": {},\n  \"compute_capability\": \"{}\",\n  \"cubin\": {},\n  \"n\": {},\n  \
             \"verified\": {},\n  \"median_us\": {:.3},\n  \"min_us\": {:.3},\n  \"max_us\": {:.3},\n  \
             \"launches\": {},\n  \"gbps\": {gbps}\n}}\n",
            json_string(self.device),
            self.cc,
            json_string(self.cubin),
            self.n,
            self.verified,
            t.median_us,
            t.min_us,
            t.max_us,
            t.launches,
        )
    }

    /// Writes `result.json` into `$CARGO_GPU_OUT` when that is set.
    pub fn write_if_requested(&self) -> Result<(), Failure> {
        match std::env::var_os(OUT_ENV) {
            Some(dir) => self.write(Path::new(&dir)),
            None => Ok(()),
        }
    }

    fn write(&self, dir: &Path) -> Result<(), Failure> {
        let path = dir.join("result.json");
        std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&path, self.to_json()))
            .map_err(|e| Failure::new(Exit::Failed, format!("failed to write {}: {e}", path.display())))
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(timing: Timing) -> Report<'static> {
        Report {
            device: "NVIDIA \"H200\"",
            cc: Capability { major: 9, minor: 0 },
            cubin: "vector_add.sm_90a.cubin",
            n: 16_777_216,
            verified: true,
            timing,
        }
    }

    const TIMING: Timing = Timing { min_us: 120.0, median_us: 123.45, max_us: 130.1, launches: 20 };

    #[test]
    fn time_line() {
        assert_eq!(
            report(TIMING).time_line(),
            "time: median 123.5 us (min 120.0, max 130.1) over 20 launches, 1630.8 GB/s"
        );
    }

    #[test]
    fn json_has_every_field_and_escapes_strings() {
        let json = report(TIMING).to_json();
        for field in [
            r#""device": "NVIDIA \"H200\"","#,
            r#""compute_capability": "9.0","#,
            r#""cubin": "vector_add.sm_90a.cubin","#,
            r#""n": 16777216,"#,
            r#""verified": true,"#,
            r#""median_us": 123.450,"#,
            r#""min_us": 120.000,"#,
            r#""max_us": 130.100,"#,
            r#""gbps": 1630."#,
        ] {
            assert!(json.contains(field), "{field} missing in {json}");
        }
        assert_eq!(json_string("a\\b\u{1}"), r#""a\\b\u0001""#);
    }

    #[test]
    fn unmeasurable_time_gives_null_bandwidth() {
        let json = report(Timing { min_us: 0.0, median_us: 0.0, max_us: 0.0, launches: 1 }).to_json();
        assert!(json.contains(r#""gbps": null"#), "{json}");
    }
}
