//! `cargo gpu init`'s edit of an existing crate's Cargo.toml: the cudarc dependency, the
//! `[package.metadata.gpu]` table and, where `autobins = false` keeps cargo from finding the runner
//! by itself, its `[[bin]]`. The edit goes through toml_edit, so the user's comments, spacing and
//! key order are kept byte for byte; what is added comes from `templates`.

use std::path::Path;

use anyhow::{bail, Context, Result};
use toml_edit::{Array, ArrayOfTables, DocumentMut, InlineTable, Item, Table, TableLike, Value};

use crate::arch::SmArch;
use crate::templates;

/// The manifest with `[package.metadata.gpu]` added right after the package's own tables, the
/// cudarc dependency (unless there is one) and, under `autobins = false`, the runner's `[[bin]]`;
/// an error, and nothing changed, when the crate already has the table or a binary of the runner's
/// name, or is not a package.
pub fn init_manifest(manifest: &str, path: &Path, targets: &[SmArch], expect: &str) -> Result<String> {
    let mut doc: DocumentMut = manifest.parse().with_context(|| format!("failed to parse {}", path.display()))?;
    let package = match doc.get("package") {
        Some(Item::Table(package)) => package,
        Some(_) => bail!(
            "failed to edit {}: its package is an inline table (`package = {{ ... }}`); write it as a [package] \
             section for `cargo gpu init`",
            path.display()
        ),
        None => {
            bail!("{} has no [package]: run `cargo gpu init` in a package, not a virtual workspace", path.display())
        }
    };
    if package.get("metadata").and_then(Item::as_table_like).is_some_and(|m| m.contains_key("gpu")) {
        bail!("refusing to change {}: it already has [package.metadata.gpu]", path.display());
    }
    if bin_names(&doc).any(|name| name == templates::INIT_RUNNER) {
        bail!("refusing to change {}: it already has a binary named `{}`", path.display(), templates::INIT_RUNNER);
    }
    // Without autobins cargo builds only the binaries the manifest lists.
    let needs_bin = package.get("autobins").and_then(Item::as_bool) == Some(false);

    add_gpu_metadata(&mut doc, targets, expect, path)?;
    add_cudarc(&mut doc, path)?;
    if needs_bin {
        add_runner_bin(&mut doc, path)?;
    }

    let text = doc.to_string();
    let check: toml::Table = toml::from_str(&text).context("the edited manifest does not parse (this is a bug)")?;
    if check.get("package").and_then(|p| p.get("metadata")).and_then(|m| m.get("gpu")).is_none() {
        bail!("failed to add [package.metadata.gpu] to {} (this is a bug)", path.display());
    }
    Ok(text)
}

/// The names of the `[[bin]]` targets the manifest lists.
fn bin_names(doc: &DocumentMut) -> impl Iterator<Item = String> + '_ {
    let tables: Vec<&dyn toml_edit::TableLike> = match doc.get("bin") {
        Some(Item::ArrayOfTables(bins)) => bins.iter().map(|t| t as &dyn toml_edit::TableLike).collect(),
        Some(Item::Value(Value::Array(bins))) => {
            bins.iter().filter_map(|b| b.as_inline_table()).map(|t| t as &dyn toml_edit::TableLike).collect()
        }
        _ => Vec::new(),
    };
    tables.into_iter().filter_map(|t| t.get("name").and_then(Item::as_str).map(str::to_string))
}

/// `[package.metadata.gpu]`, with its comment, as the templates write it.
fn gpu_metadata_table(targets: &[SmArch], expect: &str) -> Result<Table> {
    let text = templates::metadata_table(targets, expect);
    let doc: DocumentMut = text.parse().context("failed to parse the [package.metadata.gpu] template")?;
    let gpu = doc
        .get("package")
        .and_then(|p| p.get("metadata"))
        .and_then(|m| m.get("gpu"))
        .and_then(Item::as_table)
        .context("failed to find [package.metadata.gpu] in its template")?;
    // Its decor holds the comment above the header, so the comment comes along.
    Ok(gpu.clone())
}

/// Adds `[package.metadata.gpu]` right after the last table of the package (`[package]` itself,
/// or a `[package.metadata.*]` of another tool), where a reader of the package looks for it.
fn add_gpu_metadata(doc: &mut DocumentMut, targets: &[SmArch], expect: &str, path: &Path) -> Result<()> {
    let mut gpu = gpu_metadata_table(targets, expect)?;
    let after = doc.get("package").and_then(Item::as_table).and_then(last_position);
    gpu.set_position(make_room_after(doc.as_table_mut(), after));
    let package = doc.get_mut("package").and_then(Item::as_table_mut).context("failed to find [package] again")?;
    let metadata = package.entry("metadata").or_insert_with(|| {
        // Implicit: the `[package.metadata.gpu]` header is enough, no empty `[package.metadata]`.
        let mut t = Table::new();
        t.set_implicit(true);
        Item::Table(t)
    });
    match metadata {
        Item::Table(metadata) => {
            metadata.insert("gpu", Item::Table(gpu));
        }
        // `metadata = { ... }` cannot be extended by a header: the table goes inside, without its comment.
        Item::Value(Value::InlineTable(metadata)) => {
            insert_inline(metadata, "gpu", Value::InlineTable(gpu.into_inline_table()), false);
        }
        _ => bail!("failed to add [package.metadata.gpu] to {}: its package.metadata is not a table", path.display()),
    }
    Ok(())
}

/// The cudarc features the runner kit calls into. cudarc's default features include them all.
const KIT_FEATURES: [&str; 4] = ["std", "driver", "nvrtc", "cublaslt"];

/// Adds the cudarc dependency unless the crate has one: then its own choice of version and
/// features stands, except that a cudarc without its default features gets those of
/// [`KIT_FEATURES`] it lacks, or the kit would not build. Like `cargo add`: at the end of
/// `[dependencies]`, or in order where the table is sorted; a missing table goes at the end of
/// the file.
/// Adds the kit's features to a cudarc dependency that turned its default features off.
fn add_kit_features(cudarc: &mut dyn TableLike) {
    if cudarc.get("default-features").and_then(Item::as_bool) != Some(false) {
        return;
    }
    let features = cudarc.entry("features").or_insert(Item::Value(Value::Array(Array::new())));
    if let Some(list) = features.as_array_mut() {
        for f in KIT_FEATURES {
            if !list.iter().any(|v| v.as_str() == Some(f)) {
                list.push(f);
            }
        }
    }
}

fn add_cudarc(doc: &mut DocumentMut, path: &Path) -> Result<()> {
    let given: DocumentMut =
        templates::CUDARC_DEPENDENCY.parse().context("failed to parse the cudarc dependency (this is a bug)")?;
    let mut cudarc =
        given.get("cudarc").and_then(Item::as_value).cloned().context("failed to find cudarc in its line")?;
    // The surrounding spaces of the line it came from; the new place sets its own.
    cudarc.decor_mut().clear();

    let end = make_room_after(doc.as_table_mut(), None);
    let deps = doc.entry("dependencies").or_insert_with(|| {
        let mut t = Table::new();
        t.set_position(end);
        Item::Table(t)
    });
    let Some(table) = deps.as_table_like() else {
        bail!("failed to add cudarc to {}: its `dependencies` is not a table", path.display());
    };
    if table.contains_key("cudarc") {
        if let Some(own) = deps.as_table_like_mut().and_then(|t| t.get_mut("cudarc")).and_then(Item::as_table_like_mut)
        {
            add_kit_features(own);
        }
        return Ok(());
    }
    let keys: Vec<&str> = table.iter().map(|(k, _)| k).collect();
    let was_sorted = keys.windows(2).all(|w| w[0] <= w[1]);
    if let Item::Value(Value::InlineTable(inline)) = deps {
        insert_inline(inline, "cudarc", cudarc, was_sorted);
    } else if let Some(table) = deps.as_table_like_mut() {
        table.insert("cudarc", Item::Value(cudarc));
        if was_sorted {
            table.sort_values();
        }
    }
    Ok(())
}

/// Inserts into `{ a = "1" }` (sorted when `sort`) so that it reads `{ a = "1", b = "2" }`: the
/// space before `}` belongs to the last value, and stays at the end.
fn insert_inline(table: &mut InlineTable, key: &str, value: Value, sort: bool) {
    let trailing = table.iter_mut().last().and_then(|(_, v)| {
        let s = v.decor().suffix().cloned();
        v.decor_mut().set_suffix("");
        s
    });
    table.insert(key, value);
    if sort {
        table.sort_values();
    }
    if let (Some(s), Some((_, last))) = (trailing, table.iter_mut().last()) {
        last.decor_mut().set_suffix(s);
    }
}

/// Adds `[[bin]] name = "gpu-runner"` after the crate's other binaries, or at the end of the file.
fn add_runner_bin(doc: &mut DocumentMut, path: &Path) -> Result<()> {
    let mut bin = Table::new();
    bin.insert("name", toml_edit::value(templates::INIT_RUNNER));
    bin.insert("path", toml_edit::value(templates::init_runner_main()));
    let after = match doc.get("bin") {
        Some(Item::ArrayOfTables(bins)) => bins.iter().filter_map(last_position).max(),
        _ => None,
    };
    bin.set_position(make_room_after(doc.as_table_mut(), after));
    match doc.entry("bin").or_insert_with(|| Item::ArrayOfTables(ArrayOfTables::new())) {
        Item::ArrayOfTables(bins) => bins.push(bin),
        Item::Value(Value::Array(bins)) => bins.push(bin.into_inline_table()),
        _ => bail!(
            "failed to add the `{}` binary to {}: its `bin` is not an array",
            templates::INIT_RUNNER,
            path.display()
        ),
    }
    Ok(())
}

// toml_edit prints tables in the order of their positions (their order in the parsed file); a new
// table gets one by hand so that it lands where it belongs rather than wherever its parent is.

/// The highest position of `table` and the tables below it; `None` when none has one.
fn last_position(table: &Table) -> Option<isize> {
    let below = table.iter().filter_map(|(_, item)| match item {
        Item::Table(t) => last_position(t),
        Item::ArrayOfTables(a) => a.iter().filter_map(last_position).max(),
        _ => None,
    });
    below.chain(table.position()).max()
}

/// Moves every table after position `after` one place down and returns the freed position; with
/// `None`, returns the position after the last table.
fn make_room_after(root: &mut Table, after: Option<isize>) -> isize {
    fn shift(table: &mut Table, after: isize) {
        if let Some(p) = table.position().filter(|p| *p > after) {
            table.set_position(p + 1);
        }
        for (_, item) in table.iter_mut() {
            match item {
                Item::Table(t) => shift(t, after),
                Item::ArrayOfTables(a) => a.iter_mut().for_each(|t| shift(t, after)),
                _ => {}
            }
        }
    }
    match after {
        Some(after) => {
            shift(root, after);
            after + 1
        }
        None => last_position(root).unwrap_or(0) + 1,
    }
}

/// Whether a Cargo.toml already has `[package.metadata.gpu]`.
pub fn has_gpu_metadata(manifest: &str) -> bool {
    manifest
        .parse::<DocumentMut>()
        .is_ok_and(|d| d.get("package").and_then(|p| p.get("metadata")).and_then(|m| m.get("gpu")).is_some())
}

/// `.cargo/config.toml` with `[target.TRIPLE] runner = RUNNER` set, the rest of the file (its
/// comments and order included) kept: what `cargo gpu init --runner` writes so that plain
/// `cargo test`, `cargo run` and `cargo nextest run` run their executables through `cargo-gpu exec`.
pub fn set_target_runner(config: &str, path: &Path, triple: &str, runner: &[String]) -> Result<String> {
    let mut doc: DocumentMut =
        config.parse().with_context(|| format!("{} is not valid TOML: fix it first", path.display()))?;
    let target = doc.entry("target").or_insert_with(|| {
        let mut t = Table::new();
        t.set_implicit(true);
        Item::Table(t)
    });
    let Some(target) = target.as_table_like_mut() else {
        bail!("`target` in {} is not a table", path.display());
    };
    let entry = target.entry(triple).or_insert(Item::Table(Table::new()));
    let Some(table) = entry.as_table_like_mut() else {
        bail!("`target.{triple}` in {} is not a table", path.display());
    };
    let array: toml_edit::Array = runner.iter().map(String::as_str).collect();
    table.insert("runner", Item::Value(Value::Array(array)));
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Variant;

    fn sm90a() -> Vec<SmArch> {
        vec![SmArch::new(9, 0, Variant::Specific)]
    }

    fn init(manifest: &str) -> String {
        init_manifest(manifest, Path::new("Cargo.toml"), &sm90a(), "").unwrap()
    }

    const GPU: &str = "\n# Read by `cargo gpu`: where the kernels are, what to build them for, which binary runs them.\n\
                       [package.metadata.gpu]\nkernels = \"kernels\"\ntargets = [\"sm_90a\"]\nrunner = \"gpu-runner\"\n";

    fn cudarc() -> &'static str {
        templates::CUDARC_DEPENDENCY
    }

    /// What init added can be read back, and cargo's own view of the manifest agrees.
    fn assert_added(out: &str) -> toml::Table {
        let v: toml::Table = toml::from_str(out).unwrap_or_else(|e| panic!("{e}\n{out}"));
        let gpu = &v["package"]["metadata"]["gpu"];
        assert_eq!(gpu["runner"].as_str(), Some("gpu-runner"), "{out}");
        assert_eq!(gpu["kernels"].as_str(), Some("kernels"), "{out}");
        assert_eq!(gpu["targets"].as_array().unwrap()[0].as_str(), Some("sm_90a"), "{out}");
        let features = v["dependencies"]["cudarc"]["features"].as_array().unwrap();
        assert!(features.iter().any(|f| f.as_str() == Some("dynamic-loading")), "{out}");
        v
    }

    /// Every line of `before` is in `after`, unchanged and in the same order.
    fn assert_kept(before: &str, after: &str) {
        let mut rest = after.lines();
        for line in before.lines() {
            assert!(rest.any(|l| l == line), "`{line}` was changed, moved or dropped:\n{after}");
        }
    }

    #[test]
    fn a_plain_manifest_gets_the_table_after_package_and_cudarc_in_order() {
        let m =
            "[package]\nname = \"x\"\nversion = \"0.1.0\"\n\n[dependencies]\nanyhow = \"1\"\n\n[features]\nf = []\n";
        let out = init(m);
        assert_added(&out);
        let want = format!(
            "[package]\nname = \"x\"\nversion = \"0.1.0\"\n{GPU}\n[dependencies]\nanyhow = \"1\"\n{}\n\n[features]\nf = []\n",
            cudarc()
        );
        assert_eq!(out, want);
    }

    #[test]
    fn a_templates_expected_instructions_come_along_and_parse() {
        let hopper = templates::find("hopper-wgmma").unwrap();
        let m = "[package]\nname = \"x\"\nversion = \"0.1.0\"\n";
        let out = init_manifest(m, Path::new("Cargo.toml"), &sm90a(), hopper.expect).unwrap();
        let v = assert_added(&out);
        let json = serde_json::to_value(&v["package"]["metadata"]["gpu"]).unwrap();
        let gpu = crate::project::GpuMetadata::from_value(&json, Path::new("Cargo.toml")).unwrap();
        assert_eq!(gpu.expect["hgemm"][&sm90a()[0]], ["HGMMA", "UTMALDG", "UTMALDG.MULTICAST", "UTMASTG"], "{out}");
        assert!(out.contains("# The instructions the kernels' SASS must have"), "{out}");
    }

    #[test]
    fn a_commented_dependencies_header_is_kept() {
        let m = "[package]\nname = \"x\"\nversion = \"0.1.0\"\n\n[dependencies] # deps\nserde = \"1\"\n";
        let out = init(m);
        assert_added(&out);
        assert!(out.contains(&format!("\n[dependencies] # deps\n{}\nserde = \"1\"\n", cudarc())), "{out}");
        assert_kept(m, &out);
    }

    #[test]
    fn a_spaced_dependencies_header_is_kept() {
        let m = "[package]\nname = \"x\"\nversion = \"0.1.0\"\n\n[ dependencies ]\nanyhow = \"1\"\n";
        let out = init(m);
        assert_added(&out);
        assert!(out.ends_with(&format!("\n[ dependencies ]\nanyhow = \"1\"\n{}\n", cudarc())), "{out}");
        assert_eq!(out.matches("dependencies").count(), 1, "no second [dependencies]: {out}");
    }

    #[test]
    fn a_manifest_without_dependencies_gets_the_table_at_the_end() {
        for m in ["[package]\nname = \"x\"\nversion = \"0.1.0\"", "[package]\nname = \"x\"\nversion = \"0.1.0\"\n"] {
            let out = init(m);
            assert_added(&out);
            let want = format!("[package]\nname = \"x\"\nversion = \"0.1.0\"\n{GPU}\n[dependencies]\n{}\n", cudarc());
            assert_eq!(out, want);
        }
        // The dependencies table goes after the last table, not in the middle of the file.
        let m =
            "[package]\nname = \"x\"\nversion = \"0.1.0\"\n\n[features]\nf = []\n\n[profile.release]\ndebug = true\n";
        let out = init(m);
        assert_added(&out);
        assert!(out.ends_with(&format!("[profile.release]\ndebug = true\n\n[dependencies]\n{}\n", cudarc())), "{out}");
    }

    #[test]
    fn inline_and_dotted_dependencies_get_cudarc_in_their_own_style() {
        let m = "dependencies = { anyhow = \"1\" }\n\n[package]\nname = \"x\"\nversion = \"0.1.0\"\n";
        let out = init(m);
        let v = assert_added(&out);
        assert_eq!(v["dependencies"]["anyhow"].as_str(), Some("1"));
        let cudarc_value = cudarc().strip_prefix("cudarc = ").unwrap();
        assert!(out.starts_with(&format!("dependencies = {{ anyhow = \"1\", cudarc = {cudarc_value} }}\n")), "{out}");
        // Sorted in front of a later key, and the space before `}` still at the end.
        let m = "dependencies = { serde = \"1\" }\n[package]\nname = \"x\"\nversion = \"0.1.0\"\n";
        let out = init(m);
        assert_added(&out);
        assert!(out.starts_with(&format!("dependencies = {{ cudarc = {cudarc_value}, serde = \"1\" }}\n")), "{out}");

        let m = "dependencies.anyhow = \"1\"\n\n[package]\nname = \"x\"\nversion = \"0.1.0\"\n";
        let out = init(m);
        let v = assert_added(&out);
        assert_eq!(v["dependencies"]["anyhow"].as_str(), Some("1"));
        assert!(
            out.starts_with(&format!("dependencies.anyhow = \"1\"\ndependencies.cudarc = {cudarc_value}\n")),
            "{out}"
        );

        // Dependencies written only as sub-tables: cudarc gets a [dependencies] of its own.
        let m = "[package]\nname = \"x\"\nversion = \"0.1.0\"\n\n[dependencies.serde]\nversion = \"1\"\n";
        let out = init(m);
        let v = assert_added(&out);
        assert_eq!(v["dependencies"]["serde"]["version"].as_str(), Some("1"));
        assert_kept(m, &out);
    }

    #[test]
    fn a_crate_s_own_cudarc_stands_and_gains_only_the_features_the_kit_needs() {
        // Default features on: they include the kit's; nothing changes.
        let m = "[package]\nname = \"x\"\nversion = \"0.1.0\"\n\n[dependencies]\ncudarc = \"0.19\"\n";
        let out = init(m);
        assert!(out.contains("\n[dependencies]\ncudarc = \"0.19\"\n"), "{out}");
        // Off: the missing ones are added after the crate's own, which stay.
        let m = "[package]\nname = \"x\"\nversion = \"0.1.0\"\n\n[dependencies]\n\
                 cudarc = { version = \"0.19\", default-features = false, features = [\"driver\", \"cuda-12080\"] }\n";
        let out = init(m);
        let v: toml::Table = toml::from_str(&out).unwrap();
        let features: Vec<&str> =
            v["dependencies"]["cudarc"]["features"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
        assert_eq!(features, ["driver", "cuda-12080", "std", "nvrtc", "cublaslt"], "{out}");
        assert_eq!(v["dependencies"]["cudarc"]["version"].as_str(), Some("0.19"));
        // As a table of its own, without a features list.
        let m = "[package]\nname = \"x\"\nversion = \"0.1.0\"\n\n[dependencies.cudarc]\nversion = \"0.19\"\n\
                 default-features = false\n";
        let out = init(m);
        let v: toml::Table = toml::from_str(&out).unwrap();
        assert_eq!(v["dependencies"]["cudarc"]["features"].as_array().unwrap().len(), 4, "{out}");
    }

    #[test]
    fn comments_and_formatting_elsewhere_are_kept_byte_for_byte() {
        let m = "# The crate.\n[package]\nname    = \"x\" # aligned\nversion = \"0.1.0\"\n# about the deps\n\n\
                 [dependencies]\n# logging\nlog = { version = \"0.4\" }   # why not\nzstd = '0.13'\n\n\
                 # benches need this\n[dev-dependencies]\ncriterion = \"0.5\"\n\n[package.metadata.docs.rs]\n\
                 all-features = true\n# trailing words\n";
        let out = init(m);
        assert_added(&out);
        assert_kept(m, &out);
        // log, zstd are sorted, so cudarc goes first; the comment stays with the key it is about.
        let deps = format!(
            "[dependencies]\n{}\n# logging\nlog = {{ version = \"0.4\" }}   # why not\nzstd = '0.13'\n",
            cudarc()
        );
        assert!(out.contains(&deps), "{out}");
        // Next to the package's other metadata, not among the dependencies.
        assert!(
            out.contains(&format!("[package.metadata.docs.rs]\nall-features = true\n{GPU}# trailing words\n")),
            "{out}"
        );
        assert_eq!(out.len(), m.len() + GPU.len() + cudarc().len() + 1, "nothing else was added: {out}");
    }

    #[test]
    fn an_unsorted_dependencies_table_gets_cudarc_at_its_end() {
        let m = "[package]\nname = \"x\"\nversion = \"0.1.0\"\n[dependencies]\nzstd = \"0.13\"\nanyhow = \"1\"\n";
        let out = init(m);
        assert!(out.ends_with(&format!("[dependencies]\nzstd = \"0.13\"\nanyhow = \"1\"\n{}\n", cudarc())), "{out}");
    }

    #[test]
    fn an_existing_cudarc_is_kept_as_it_is() {
        let m = "[package]\nname = \"x\"\nversion = \"0.1.0\"\n[dependencies]\ncudarc = \"0.19\"\n";
        let out = init(m);
        assert_eq!(out.matches("cudarc").count(), 1, "{out}");
        assert!(out.ends_with("[dependencies]\ncudarc = \"0.19\"\n"), "{out}");
    }

    #[test]
    fn autobins_false_gets_a_bin_for_the_runner() {
        let m = "[package]\nname = \"x\"\nversion = \"0.1.0\"\nautobins = false\n\n[[bin]]\nname = \"x\"\npath = \"src/main.rs\"\n\n[dependencies]\n";
        let out = init(m);
        let v = assert_added(&out);
        let bins = v["bin"].as_array().unwrap();
        assert_eq!(bins.len(), 2, "{out}");
        assert_eq!(bins[1]["name"].as_str(), Some(templates::INIT_RUNNER));
        assert_eq!(bins[1]["path"].as_str(), Some(templates::init_runner_main().as_str()));
        let init_files = templates::init_files(templates::find("basic").unwrap());
        assert!(
            init_files.iter().any(|(p, _)| p == Path::new(&templates::init_runner_main())),
            "the bin's path is written"
        );
        assert!(
            out.contains("path = \"src/main.rs\"\n\n[[bin]]\nname = \"gpu-runner\"\n"),
            "after the other bins: {out}"
        );
        assert_kept(m, &out);

        // With autobins on, cargo finds src/bin/gpu-runner/main.rs by itself: no [[bin]] is added.
        let out = init("[package]\nname = \"x\"\nversion = \"0.1.0\"\n");
        assert!(!out.contains("[[bin]]"), "{out}");
    }

    #[test]
    fn init_refuses_gpu_metadata_in_any_form_and_a_runner_name_that_is_taken() {
        for m in [
            "[package]\nname = \"x\"\nversion = \"0.1.0\"\n[package.metadata.gpu]\ntargets = [\"sm_80\"]\n",
            "[package]\nname = \"x\"\nversion = \"0.1.0\"\nmetadata.gpu.targets = [\"sm_80\"]\n",
            "[package]\nname = \"x\"\nversion = \"0.1.0\"\nmetadata = { gpu = { targets = [\"sm_80\"] } }\n",
        ] {
            let err = init_manifest(m, Path::new("Cargo.toml"), &sm90a(), "").unwrap_err().to_string();
            assert!(err.contains("already has [package.metadata.gpu]"), "{m}: {err}");
        }
        let m =
            "[package]\nname = \"x\"\nversion = \"0.1.0\"\n[[bin]]\nname = \"gpu-runner\"\npath = \"src/main.rs\"\n";
        let err = init_manifest(m, Path::new("Cargo.toml"), &sm90a(), "").unwrap_err().to_string();
        assert!(err.contains("already has a binary named `gpu-runner`"), "{err}");
        let err = init_manifest("[workspace]\nmembers = []\n", Path::new("Cargo.toml"), &sm90a(), "").unwrap_err();
        assert!(err.to_string().contains("no [package]"), "{err}");
        let err = init_manifest("package = { name = \"x\" }\n", Path::new("Cargo.toml"), &sm90a(), "").unwrap_err();
        assert!(err.to_string().contains("its package is an inline table"), "{err}");
        let err = init_manifest("[package\n", Path::new("x/Cargo.toml"), &sm90a(), "").unwrap_err();
        assert!(err.to_string().contains("failed to parse x/Cargo.toml"), "{err}");
    }

    #[test]
    fn other_metadata_in_an_inline_table_gets_gpu_beside_it() {
        let m = "[package]\nname = \"x\"\nversion = \"0.1.0\"\nmetadata = { docs = { all = true } }\n";
        let out = init(m);
        let v = assert_added(&out);
        assert_eq!(v["package"]["metadata"]["docs"]["all"].as_bool(), Some(true));
        let gpu = "gpu = { kernels = \"kernels\", targets = [\"sm_90a\"], runner = \"gpu-runner\" }";
        assert!(out.contains(&format!("\nmetadata = {{ docs = {{ all = true }}, {gpu} }}\n")), "{out}");
    }

    #[test]
    fn the_target_runner_is_set_and_the_rest_of_the_config_kept() {
        let runner: Vec<String> = ["cargo-gpu", "exec", "--remote", "h100", "--"].map(String::from).to_vec();
        let path = Path::new(".cargo/config.toml");
        let fresh = set_target_runner("", path, "x86_64-unknown-linux-gnu", &runner).unwrap();
        assert_eq!(
            fresh,
            "[target.x86_64-unknown-linux-gnu]\nrunner = [\"cargo-gpu\", \"exec\", \"--remote\", \"h100\", \"--\"]\n"
        );
        let existing = "# build settings\n[build]\njobs = 4 # cores\n\n[target.x86_64-unknown-linux-gnu]\nlinker = \"cc\"\nrunner = \"old\"\n";
        let edited = set_target_runner(existing, path, "x86_64-unknown-linux-gnu", &runner).unwrap();
        assert!(edited.starts_with("# build settings\n[build]\njobs = 4 # cores\n"), "{edited}");
        assert!(edited.contains("linker = \"cc\"\nrunner = [\"cargo-gpu\""), "{edited}");
        assert!(!edited.contains("\"old\""), "{edited}");
        let err = set_target_runner("target = 3\n", path, "x", &runner).unwrap_err().to_string();
        assert!(err.contains("`target` in .cargo/config.toml is not a table"), "{err}");
        assert!(set_target_runner("[oops", path, "x", &runner).is_err());
    }
}
