//! The project templates of `cargo gpu new` and `cargo gpu init`, embedded in the binary: the
//! files under `templates/<name>/` and the runner kit `templates/kit/kit.rs`, the rules for crate
//! names, and rendering (`{{name}}`, `{{targets}}`, `{{cudarc}}` in files whose name ends in
//! `.tmpl`). It is also the one home of what every runner's manifest holds (the cudarc dependency,
//! the `[package.metadata.gpu]` table), which `cargo gpu init` writes into an existing crate too.
//! Pure: the commands in `commands/new.rs` do the file-system work.

use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::arch::SmArch;

/// The runner kit, written as `src/kit.rs` into every generated project.
pub const KIT: &str = include_str!("../templates/kit/kit.rs");

/// One file of a template: its path below the template folder and its text.
#[derive(Debug, Clone, Copy)]
pub struct TemplateFile {
    pub path: &'static str,
    pub text: &'static str,
}

#[derive(Debug)]
pub struct Template {
    pub name: &'static str,
    pub about: &'static str,
    /// Targets written into Cargo.toml; empty means "the local GPU's, or sm_90a".
    pub targets: &'static [&'static str],
    /// `[package.metadata.gpu.expect]`'s entries for its kernels (TOML, one kernel a line): the SASS
    /// instructions the build must find, so that a lost wgmma fails the build. Empty for none.
    pub expect: &'static str,
    pub files: &'static [TemplateFile],
}

macro_rules! files {
    ($dir:literal: $($path:literal),+ $(,)?) => {
        &[$(TemplateFile { path: $path, text: include_str!(concat!("../templates/", $dir, "/", $path)) }),+]
    };
}

pub static TEMPLATES: &[Template] = &[
    Template {
        name: "basic",
        about: "vector add, checked on the CPU and timed as GB/s",
        targets: &[],
        expect: "",
        files: files!("basic": "Cargo.toml.tmpl", "README.md.tmpl", "kernels/vector_add.cu", "src/main.rs", "src/vector_add.rs"),
    },
    Template {
        name: "hopper-wgmma",
        about: "sm_90a: bf16 GEMM with TMA loads and wgmma, checked and timed as TFLOP/s",
        targets: &["sm_90a"],
        expect: r#"hgemm = { sm_90a = ["HGMMA", "UTMALDG", "UTMALDG.MULTICAST", "UTMASTG"] }"#,
        files: files!("hopper-wgmma": "Cargo.toml.tmpl", "README.md.tmpl", "kernels/hgemm.cu", "src/main.rs", "src/hgemm.rs"),
    },
    Template {
        name: "blackwell-tcgen05",
        about: "sm_100a: bf16 GEMM with TMA loads and tcgen05.mma into tensor memory",
        targets: &["sm_100a"],
        expect: r#"tcgen05_gemm = { sm_100a = ["UTMALDG", "SYNCS.ARRIVE.TRANS64", "SYNCS.PHASECHK.TRANS64.TRYWAIT", "UTCHMMA", "UTCBAR", "LDTM"] }"#,
        files: files!(
            "blackwell-tcgen05": "Cargo.toml.tmpl",
            "README.md.tmpl",
            "kernels/tcgen05_gemm.cu",
            "src/main.rs",
            "src/tcgen05_gemm.rs"
        ),
    },
];

/// The template called `name`, or an error that lists them.
pub fn find(name: &str) -> Result<&'static Template> {
    match TEMPLATES.iter().find(|t| t.name == name) {
        Some(t) => Ok(t),
        None => {
            let names: Vec<&str> = TEMPLATES.iter().map(|t| t.name).collect();
            bail!("there is no template `{name}` (templates: {})", names.join(", "))
        }
    }
}

const KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate", "do", "dyn", "else",
    "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "macro", "match", "mod",
    "move", "mut", "override", "priv", "pub", "ref", "return", "self", "Self", "static", "struct", "super", "trait",
    "true", "try", "type", "typeof", "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// Names that would shadow a crate every Rust program can see, or that cargo reserves.
const RESERVED: &[&str] =
    &["core", "std", "alloc", "proc_macro", "proc-macro", "test", "build", "deps", "examples", "incremental"];

/// Names Windows cannot use as file names.
const WINDOWS_DEVICES: &[&str] = &[
    "con", "prn", "aux", "nul", "com1", "com2", "com3", "com4", "com5", "com6", "com7", "com8", "com9", "lpt1", "lpt2",
    "lpt3", "lpt4", "lpt5", "lpt6", "lpt7", "lpt8", "lpt9",
];

/// Refuses a name that is not a valid crate (and binary) name, saying why.
pub fn check_crate_name(name: &str) -> Result<()> {
    let why = if name.is_empty() {
        Some("it is empty".to_string())
    } else if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')) {
        Some(format!("`{c}` is not allowed (use ASCII letters, digits, `-` and `_`)"))
    } else if name.starts_with(|c: char| c.is_ascii_digit()) {
        Some("it starts with a digit".to_string())
    } else if KEYWORDS.contains(&name) {
        Some("it is a Rust keyword".to_string())
    } else if RESERVED.contains(&name) {
        Some("cargo reserves it (it would clash with a standard crate or a folder of target/)".to_string())
    } else if WINDOWS_DEVICES.contains(&name.to_ascii_lowercase().as_str()) {
        Some("it is a reserved file name on Windows".to_string())
    } else if name.len() > 64 {
        Some("it is longer than 64 characters".to_string())
    } else {
        None
    };
    match why {
        Some(why) => bail!("`{name}` is not a valid crate name: {why}"),
        None => Ok(()),
    }
}

/// What the placeholders become.
#[derive(Debug, Clone)]
pub struct Vars {
    /// The package name, which is also the runner binary's name.
    pub name: String,
    pub targets: Vec<SmArch>,
    /// The template's [`Template::expect`].
    pub expect: &'static str,
}

impl Vars {
    fn get(&self, key: &str) -> Option<String> {
        let targets: Vec<String> = self.targets.iter().map(|t| t.to_string()).collect();
        match key {
            "name" => Some(self.name.clone()),
            "cudarc" => Some(CUDARC_DEPENDENCY.to_string()),
            // The whole `[package.metadata.gpu.expect]` table with its comment, or nothing.
            "expect_table" => Some(match self.expect {
                "" => String::new(),
                e => format!("\n{EXPECT_COMMENT}\n[package.metadata.gpu.expect]\n{e}\n"),
            }),
            // TOML array items: "sm_90a", "sm_100a"
            "targets" => Some(targets.iter().map(|t| format!("\"{t}\"")).collect::<Vec<_>>().join(", ")),
            // Prose: sm_90a and sm_100a
            "targets_text" => Some(match targets.as_slice() {
                [] => String::new(),
                [one] => one.clone(),
                [init @ .., last] => format!("{} and {last}", init.join(", ")),
            }),
            _ => None,
        }
    }
}

/// Replaces every `{{key}}`; an unknown key is a bug in the template.
pub fn render(text: &str, vars: &Vars) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { bail!("unclosed `{{{{` in a template") };
        let key = after[..end].trim();
        match vars.get(key) {
            Some(v) => out.push_str(&v),
            None => bail!("unknown template placeholder `{{{{{key}}}}}`"),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Every file of a new project from `template`: paths relative to the project folder and their
/// rendered text, `src/kit.rs` included.
pub fn project_files(template: &Template, vars: &Vars) -> Result<Vec<(PathBuf, String)>> {
    let mut files = Vec::new();
    for f in template.files {
        match f.path.strip_suffix(".tmpl") {
            Some(path) => files.push((PathBuf::from(path), render(f.text, vars)?)),
            None => files.push((PathBuf::from(f.path), f.text.to_string())),
        }
    }
    files.push((PathBuf::from("src/kit.rs"), KIT.to_string()));
    Ok(files)
}

/// The binary `cargo gpu init` adds to an existing crate.
pub const INIT_RUNNER: &str = "gpu-runner";

/// Where the runner `cargo gpu init` adds has its `main.rs`, as a manifest writes it: cargo finds
/// it there on its own, and a `[[bin]]` points to it where `autobins = false` stops that.
pub fn init_runner_main() -> String {
    format!("src/bin/{INIT_RUNNER}/main.rs")
}

/// The files `cargo gpu init` adds to an existing crate: the template's kernels, and its runner
/// as the binary [`INIT_RUNNER`] in `src/bin/gpu-runner/` (with the kit beside it), so the
/// crate's own `src/main.rs` or `src/lib.rs` is left alone. Cargo.toml and the README are not
/// among them: init edits the existing manifest instead.
pub fn init_files(template: &Template) -> Vec<(PathBuf, String)> {
    let bin_dir = PathBuf::from(init_runner_main()).parent().expect("a file in a folder").to_path_buf();
    let mut files = Vec::new();
    for f in template.files.iter().filter(|f| !f.path.ends_with(".tmpl")) {
        let path = match f.path.strip_prefix("src/") {
            Some(rest) => bin_dir.join(rest),
            None => PathBuf::from(f.path),
        };
        files.push((path, f.text.to_string()));
    }
    files.push((bin_dir.join("kit.rs"), KIT.to_string()));
    files
}

/// The `cudarc` dependency line every runner needs (driver API and cuBLASLt for the GEMM runners'
/// `--vs-cublas` baseline, both loaded at run time, so the runner builds without CUDA installed).
/// The one copy: the templates take it through `{{cudarc}}`,
/// `cargo gpu init` adds it, and a test holds `kernels-example/Cargo.toml` (a plain file, so that
/// it builds as it is) to the same line.
pub const CUDARC_DEPENDENCY: &str = r#"cudarc = { version = "0.19.10", default-features = false, features = ["std", "driver", "nvrtc", "cublaslt", "dynamic-loading", "cuda-13000"] }"#;

const EXPECT_COMMENT: &str =
    "# The instructions the kernels' SASS must have: the build fails when the compiler drops one.";

/// The `[package.metadata.gpu]` table `cargo gpu init` adds, with its comment; a template's
/// expected instructions go in as an `expect` key, one inline table, so the edit adds one table.
pub fn metadata_table(targets: &[SmArch], expect: &str) -> String {
    let vars = Vars { name: INIT_RUNNER.to_string(), targets: targets.to_vec(), expect: "" };
    let mut text = format!(
        "\n# Read by `cargo gpu`: where the kernels are, what to build them for, which binary runs them.\n\
         [package.metadata.gpu]\nkernels = \"kernels\"\ntargets = [{}]\nrunner = \"{INIT_RUNNER}\"\n",
        vars.get("targets").unwrap_or_default()
    );
    if !expect.is_empty() {
        text.push_str(&format!("{EXPECT_COMMENT}\nexpect = {{ {} }}\n", expect.lines().collect::<Vec<_>>().join(", ")));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Variant;

    fn vars() -> Vars {
        Vars {
            name: "my-kernels".into(),
            targets: vec![SmArch::new(9, 0, Variant::Specific), SmArch::new(10, 0, Variant::Specific)],
            expect: "",
        }
    }

    #[test]
    fn crate_names_are_checked_with_a_reason() {
        for ok in ["my-kernels", "hgemm", "a", "x_1", "Bgemm"] {
            check_crate_name(ok).unwrap();
        }
        for (bad, why) in [
            ("", "empty"),
            ("1gemm", "starts with a digit"),
            ("my kernels", "` ` is not allowed"),
            ("gemm.rs", "`.` is not allowed"),
            ("héllo", "`é` is not allowed"),
            ("fn", "keyword"),
            ("test", "reserves"),
            ("std", "reserves"),
            ("CON", "Windows"),
        ] {
            let err = check_crate_name(bad).unwrap_err().to_string();
            assert!(err.contains("is not a valid crate name") && err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn placeholders_render_and_unknown_ones_are_errors() {
        let v = vars();
        assert_eq!(render("name = \"{{name}}\"", &v).unwrap(), "name = \"my-kernels\"");
        assert_eq!(render("targets = [{{targets}}]", &v).unwrap(), "targets = [\"sm_90a\", \"sm_100a\"]");
        assert_eq!(render("for {{ targets_text }}.", &v).unwrap(), "for sm_90a and sm_100a.");
        assert!(render("{{nope}}", &v).unwrap_err().to_string().contains("nope"));
        assert!(render("{{name", &v).is_err());
    }

    #[test]
    fn every_template_renders_a_manifest_with_gpu_metadata_and_the_kit() {
        for t in TEMPLATES {
            let files = project_files(t, &vars()).unwrap();
            let manifest = &files.iter().find(|(p, _)| p == &PathBuf::from("Cargo.toml")).unwrap().1;
            let value: toml::Value = toml::from_str(manifest).unwrap();
            assert_eq!(value["package"]["name"].as_str(), Some("my-kernels"), "{}", t.name);
            let gpu = &value["package"]["metadata"]["gpu"];
            assert_eq!(gpu["runner"].as_str(), Some("my-kernels"));
            assert_eq!(gpu["targets"].as_array().unwrap().len(), 2);
            assert!(value["dependencies"]["cudarc"].is_table());
            assert!(files.iter().any(|(p, text)| p == &PathBuf::from("src/kit.rs") && text == KIT));
            assert!(files.iter().any(|(p, _)| p.starts_with("kernels") && p.extension().unwrap() == "cu"));
            assert!(files.iter().all(|(p, _)| p.extension().map(|e| e != "tmpl").unwrap_or(true)));
            let readme = &files.iter().find(|(p, _)| p == &PathBuf::from("README.md")).unwrap().1;
            assert!(readme.contains("remote-run"), "{}: the README says how to run remotely", t.name);
        }
    }

    #[test]
    fn init_puts_the_runner_in_its_own_binary_folder() {
        let files = init_files(find("basic").unwrap());
        let paths: Vec<String> = files.iter().map(|(p, _)| p.display().to_string()).collect();
        assert!(paths.contains(&"src/bin/gpu-runner/main.rs".to_string()), "{paths:?}");
        assert!(paths.contains(&"src/bin/gpu-runner/kit.rs".to_string()));
        assert!(paths.contains(&"kernels/vector_add.cu".to_string()));
        assert!(!paths.iter().any(|p| p.contains("Cargo.toml") || p.contains("README")));
    }

    #[test]
    fn every_template_takes_the_cudarc_line_from_the_one_constant() {
        for t in TEMPLATES {
            let tmpl = t.files.iter().find(|f| f.path == "Cargo.toml.tmpl").unwrap().text;
            assert!(tmpl.contains("{{cudarc}}"), "{}: the manifest takes cudarc from CUDARC_DEPENDENCY", t.name);
            assert!(!tmpl.contains("cudarc ="), "{}: a copy of the cudarc line in the template", t.name);
            let files = project_files(t, &vars()).unwrap();
            let manifest = &files.iter().find(|(p, _)| p == &PathBuf::from("Cargo.toml")).unwrap().1;
            assert!(manifest.lines().any(|l| l == CUDARC_DEPENDENCY), "{}: {manifest}", t.name);
        }
    }

    /// kernels-example builds as a plain crate, so it holds a copy of the line: this keeps the copy
    /// equal to the constant, and its lock file on a cudarc that the constant accepts.
    #[test]
    fn kernels_example_uses_the_same_cudarc_line() {
        let manifest = include_str!("../kernels-example/Cargo.toml");
        assert!(
            manifest.lines().any(|l| l == CUDARC_DEPENDENCY),
            "kernels-example/Cargo.toml must have the line\n{CUDARC_DEPENDENCY}\nbut has\n{}",
            manifest.lines().filter(|l| l.contains("cudarc")).collect::<Vec<_>>().join("\n")
        );
        let dep: toml::Table = toml::from_str(CUDARC_DEPENDENCY).unwrap();
        let req = semver::VersionReq::parse(dep["cudarc"]["version"].as_str().unwrap()).unwrap();
        let lock: toml::Table = toml::from_str(include_str!("../kernels-example/Cargo.lock")).unwrap();
        let locked = lock["package"].as_array().unwrap().iter().find(|p| p["name"].as_str() == Some("cudarc")).unwrap();
        let version = semver::Version::parse(locked["version"].as_str().unwrap()).unwrap();
        assert!(req.matches(&version), "kernels-example/Cargo.lock has cudarc {version}, the constant asks for {req}");
    }

    #[test]
    fn unknown_templates_are_listed() {
        let err = find("ampere").unwrap_err().to_string();
        assert!(err.contains("basic, hopper-wgmma, blackwell-tcgen05"), "{err}");
    }
}
