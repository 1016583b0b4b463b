//! ncu's details page as CSV (`ncu --import R --page details --csv`): one row per metric of each
//! profiled launch, with the columns `ID`, `Kernel Name`, `Section Name`, `Metric Name`,
//! `Metric Unit` and `Metric Value`. Read into a summary per kernel: duration, SM and DRAM
//! throughput, achieved occupancy and registers per thread, as medians over its launches.

use std::collections::BTreeMap;

use crate::escape;

/// One kernel's figures, medians over its profiled launches.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KernelSummary {
    pub name: String,
    pub launches: usize,
    pub duration_us: Option<f64>,
    pub sm_percent: Option<f64>,
    pub dram_percent: Option<f64>,
    pub occupancy_percent: Option<f64>,
    pub registers: Option<f64>,
}

impl KernelSummary {
    /// `hgemm (20 launches): 412.3 us, SM 71.2%, DRAM 18.0%, occupancy 12.4%, 168 registers/thread`
    pub fn line(&self) -> String {
        let mut parts = Vec::new();
        if let Some(d) = self.duration_us {
            parts.push(if d >= 1000.0 { format!("{:.3} ms", d / 1000.0) } else { format!("{d:.2} us") });
        }
        let pct = |label: &str, v: Option<f64>| v.map(|v| format!("{label} {v:.1}%"));
        parts.extend(pct("SM", self.sm_percent));
        parts.extend(pct("DRAM", self.dram_percent));
        parts.extend(pct("occupancy", self.occupancy_percent));
        parts.extend(self.registers.map(|r| format!("{r:.0} registers/thread")));
        let launches = if self.launches == 1 { "1 launch".to_string() } else { format!("{} launches", self.launches) };
        format!("{} ({launches}): {}", self.name, if parts.is_empty() { "no figures".into() } else { parts.join(", ") })
    }
}

/// The fields of one CSV line: `"a","b,c",""""` -> `a`, `b,c`, `"`.
fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// `1,234.5` -> 1234.5.
fn number(v: &str) -> Option<f64> {
    v.replace(',', "").trim().parse().ok().filter(|x: &f64| x.is_finite())
}

/// A duration in microseconds, from ncu's value and unit.
fn micros(value: f64, unit: &str) -> Option<f64> {
    Some(match unit.trim() {
        "ns" | "nsecond" | "nsec" => value / 1000.0,
        "us" | "usecond" | "usec" => value,
        "ms" | "msecond" | "msec" => value * 1000.0,
        "s" | "second" | "sec" => value * 1e6,
        _ => return None,
    })
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

/// At most this many kernels are summarised, and this many rows read.
const MAX_KERNELS: usize = 64;
const MAX_ROWS: usize = 1_000_000;

/// One kernel's profiled launches (their ids) and its metrics' values over them.
type Launches = (Vec<String>, BTreeMap<&'static str, Vec<f64>>);

/// The summary per kernel, in the order the kernels first ran; empty when the text is not the
/// details page's CSV.
pub fn summarize(csv: &str) -> Vec<KernelSummary> {
    let mut lines = csv.lines().skip_while(|l| !l.starts_with("\"ID\""));
    let Some(header) = lines.next() else { return Vec::new() };
    let header = fields(header);
    let col = |names: &[&str]| header.iter().position(|h| names.contains(&h.as_str()));
    let (Some(id), Some(name), Some(metric), Some(unit), Some(value)) = (
        col(&["ID"]),
        col(&["Kernel Name", "Function Name", "Demangled Name"]),
        col(&["Metric Name"]),
        col(&["Metric Unit"]),
        col(&["Metric Value"]),
    ) else {
        return Vec::new();
    };
    let mut order: Vec<String> = Vec::new();
    let mut per: BTreeMap<String, Launches> = BTreeMap::new();
    for line in lines.take(MAX_ROWS) {
        let f = fields(line);
        let get = |i: usize| f.get(i).map(String::as_str).unwrap_or("");
        let kernel = escape::line(get(name));
        if kernel.is_empty() {
            continue;
        }
        let key = match get(metric) {
            "Duration" => "duration",
            "Compute (SM) Throughput" | "SM Throughput" | "Compute (SM) [%]" | "SM [%]" => "sm",
            "DRAM Throughput" => "dram",
            "Achieved Occupancy" => "occupancy",
            "Registers Per Thread" => "registers",
            _ => continue,
        };
        let Some(mut v) = number(get(value)) else { continue };
        if key == "duration" {
            let Some(us) = micros(v, get(unit)) else { continue };
            v = us;
        }
        if !per.contains_key(&kernel) {
            if per.len() >= MAX_KERNELS {
                continue;
            }
            order.push(kernel.clone());
        }
        let entry = per.entry(kernel).or_default();
        let launch = get(id).to_string();
        if !entry.0.contains(&launch) {
            entry.0.push(launch);
        }
        entry.1.entry(key).or_default().push(v);
    }
    order
        .into_iter()
        .map(|k| {
            let (launches, mut m) = per.remove(&k).unwrap_or_default();
            let mut take = |key| median(m.remove(key).unwrap_or_default());
            KernelSummary {
                launches: launches.len(),
                duration_us: take("duration"),
                sm_percent: take("sm"),
                dram_percent: take("dram"),
                occupancy_percent: take("occupancy"),
                registers: take("registers"),
                name: k,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like `ncu --import profile.ncu-rep --page details --csv` of Nsight Compute 2025.
    const DETAILS: &str = r#"==PROF== Connected to process
"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size","Device","CC","Section Name","Metric Name","Metric Unit","Metric Value"
"0","4242","vector-add","127.0.0.1","vector_add","1","7","(256, 1, 1)","(4096, 1, 1)","0","9.0","GPU Speed Of Light Throughput","DRAM Frequency","Ghz","2.62"
"0","4242","vector-add","127.0.0.1","vector_add","1","7","(256, 1, 1)","(4096, 1, 1)","0","9.0","GPU Speed Of Light Throughput","Duration","us","6.40"
"0","4242","vector-add","127.0.0.1","vector_add","1","7","(256, 1, 1)","(4096, 1, 1)","0","9.0","GPU Speed Of Light Throughput","Compute (SM) Throughput","%","12.10"
"0","4242","vector-add","127.0.0.1","vector_add","1","7","(256, 1, 1)","(4096, 1, 1)","0","9.0","GPU Speed Of Light Throughput","DRAM Throughput","%","85.30"
"0","4242","vector-add","127.0.0.1","vector_add","1","7","(256, 1, 1)","(4096, 1, 1)","0","9.0","Launch Statistics","Registers Per Thread","register/thread","16"
"0","4242","vector-add","127.0.0.1","vector_add","1","7","(256, 1, 1)","(4096, 1, 1)","0","9.0","Occupancy","Achieved Occupancy","%","80.12"
"1","4242","vector-add","127.0.0.1","vector_add","1","7","(256, 1, 1)","(4096, 1, 1)","0","9.0","GPU Speed Of Light Throughput","Duration","nsecond","6,600"
"1","4242","vector-add","127.0.0.1","vector_add","1","7","(256, 1, 1)","(4096, 1, 1)","0","9.0","SpeedOfLight","","","",
"2","4242","vector-add","127.0.0.1","hgemm_kernel(bf16 const*, int)","1","7","(384, 1, 1)","(132, 1, 1)","0","9.0","GPU Speed Of Light Throughput","Duration","ms","1.25"
"2","4242","vector-add","127.0.0.1","hgemm_kernel(bf16 const*, int)","1","7","(384, 1, 1)","(132, 1, 1)","0","9.0","Launch Statistics","Registers Per Thread","register/thread","168"
"#;

    #[test]
    fn a_summary_per_kernel_with_medians_over_launches() {
        let s = summarize(DETAILS);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "vector_add");
        assert_eq!(s[0].launches, 2);
        assert!((s[0].duration_us.unwrap() - 6.5).abs() < 1e-9, "median of 6.40 us and 6,600 ns");
        assert_eq!((s[0].sm_percent, s[0].dram_percent), (Some(12.1), Some(85.3)));
        assert_eq!((s[0].occupancy_percent, s[0].registers), (Some(80.12), Some(16.0)));
        assert_eq!(
            s[0].line(),
            "vector_add (2 launches): 6.50 us, SM 12.1%, DRAM 85.3%, occupancy 80.1%, 16 registers/thread"
        );
        assert_eq!(s[1].line(), "hgemm_kernel(bf16 const*, int) (1 launch): 1.250 ms, 168 registers/thread");
    }

    #[test]
    fn other_text_gives_no_summary() {
        assert!(summarize("==ERROR== ERR_NVGPUCTRPERM - The user does not have permission\n").is_empty());
        assert!(summarize("\"ID\",\"Kernel Name\"\n\"0\",\"k\"\n").is_empty());
        let hostile = "\"ID\",\"Kernel Name\",\"Metric Name\",\"Metric Unit\",\"Metric Value\"\n\"0\",\"k\x1b[2J\",\"Duration\",\"us\",\"NaN\"\n\"0\",\"k\x1b[2J\",\"Duration\",\"us\",\"3\"\n";
        let s = summarize(hostile);
        assert_eq!(s[0].name, "k\\e[2J");
        assert_eq!(s[0].duration_us, Some(3.0));
    }
}
