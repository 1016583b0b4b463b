//! sha256 digests as lowercase hex, of bytes and of files: the names of blobs, package files and
//! cache entries.

use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("failed to open {}", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("failed to read {}", path.display()))?;
    Ok(hex(&h.finalize()))
}

/// Whether `h` is a sha256 digest as written here: 64 lowercase hex digits.
pub fn is_sha256(h: &str) -> bool {
    h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "abc").unwrap();
        assert_eq!(sha256_file(&dir.path().join("f")).unwrap(), sha256_hex(b"abc"));
        assert!(is_sha256(&sha256_hex(b"")));
        assert!(!is_sha256(&sha256_hex(b"").to_uppercase()));
        assert!(!is_sha256("abc"));
    }
}
