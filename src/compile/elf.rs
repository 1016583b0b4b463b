//! What a runner binary needs from the system it runs on, read from its ELF headers: the newest
//! glibc symbol version it references. A remote with an older glibc cannot start it.

use std::path::Path;

use anyhow::{Context, Result};
use object::{Object, ObjectSection};

use crate::package::manifest::parse_version;

/// The newest `GLIBC_x.y` version `bytes` (an ELF file) needs, or `None` if it needs none.
pub fn required_glibc(bytes: &[u8]) -> Result<Option<(u32, u32)>> {
    let file = object::File::parse(bytes).context("not an ELF file")?;
    let Some(dynstr) = file.section_by_name(".dynstr") else {
        return Ok(None); // statically linked
    };
    let data = dynstr.data().context("failed to read the .dynstr section")?;
    Ok(data
        .split(|&b| b == 0)
        .filter_map(|s| std::str::from_utf8(s).ok()?.strip_prefix("GLIBC_"))
        .filter_map(parse_version)
        .max())
}

pub fn required_glibc_of(path: &Path) -> Result<Option<(u32, u32)>> {
    let bytes = std::fs::read(path).with_context(|| format!("failed to read {}", path.display()))?;
    required_glibc(&bytes).with_context(|| format!("failed to read the ELF headers of {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("2.34"), Some((2, 34)));
        assert_eq!(parse_version("2.2.5"), Some((2, 2)));
        assert_eq!(parse_version("PRIVATE"), None);
    }

    #[test]
    fn reads_this_test_binary() {
        // The test binary itself is a dynamically linked glibc executable on Linux.
        let exe = std::env::current_exe().unwrap();
        let v = required_glibc_of(&exe).unwrap().expect("links glibc");
        assert!(((2, 2)..(3, 0)).contains(&v), "{v:?}");
    }

    #[test]
    fn rejects_non_elf() {
        assert!(required_glibc(b"#!/bin/sh\necho hi\n").is_err());
    }
}
