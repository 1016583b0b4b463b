//! Unpacking what a run sends back (`cargo_gpu::remote::unpack`), fed archives made header by
//! header as a hostile remote would make them: only the names a run sends are written, no link
//! is ever made or followed, nothing lands outside the run folder, the caps hold, refused names
//! are escaped and counted, and `env.txt` is redacted before it is written.

mod support;

use std::io::Read;
use std::path::Path;

use cargo_gpu::redact::env_listing;
use cargo_gpu::remote::unpack::{unpack, Rules};
use support::{assert_no_links, paths_under, raw_tar};
use tar::EntryType;

/// The longest GNU long name or pax header unpack reads (64 KiB, as the module documents).
const MAX_META_BYTES: u64 = 64 << 10;
/// The most refused entries unpack lists by name; the rest are counted.
const MAX_LISTED_REFUSALS: usize = 50;

const ALLOWED: &[&str] = &["stdout.log", "exit-status", "env.txt", "out/"];

fn rules(max_bytes: u64) -> Rules<'static> {
    Rules { allowed: ALLOWED, filtered: &[("env.txt", env_listing)], max_bytes, max_entries: 100 }
}

#[test]
fn plain_files_and_folders_unpack_and_links_are_never_made() {
    let dir = tempfile::tempdir().unwrap();
    let t = raw_tar(&[
        ("out/", EntryType::Directory, b"", None),
        ("out/result.bin", EntryType::Regular, b"\x00\x01", None),
        ("stdout.log", EntryType::Regular, b"hello\n", None),
        ("out/same", EntryType::Symlink, b"", Some("result.bin")),
    ]);
    let u = unpack(&t[..], dir.path(), &rules(1 << 20)).unwrap();
    assert_eq!(u.refused, ["out/same: a link to `result.bin`; links are not unpacked"]);
    assert_eq!(std::fs::read(dir.path().join("out/result.bin")).unwrap(), b"\x00\x01");
    assert_eq!(std::fs::read_to_string(dir.path().join("stdout.log")).unwrap(), "hello\n");
    assert_eq!(u.bytes, 8);
    assert!(u.over_limit.is_none());
    assert_no_links(dir.path());
}

#[test]
fn escapes_and_names_a_run_does_not_send_are_refused_and_never_written() {
    let outer = tempfile::tempdir().unwrap();
    let dest = outer.path().join("run");
    let t = raw_tar(&[
        ("../x", EntryType::Regular, b"evil", None),
        ("/etc/x-cargo-gpu-test", EntryType::Regular, b"evil", None),
        ("out/../../y", EntryType::Regular, b"evil", None),
        ("esc", EntryType::Symlink, b"", Some("..")),
        ("record.toml", EntryType::Regular, b"state = \"finished\"", None),
        ("stdout.log/x", EntryType::Regular, b"evil", None),
        ("hard", EntryType::Link, b"", Some("/etc/passwd")),
        ("out/fifo", EntryType::Fifo, b"", None),
        ("exit-status", EntryType::Regular, b"0\n", None),
    ]);
    let u = unpack(&t[..], &dest, &rules(1 << 20)).unwrap();
    assert_eq!(u.refused_count, 8, "{:?}", u.refused);
    assert!(u.refused[0].starts_with("../x: it contains `..`"), "{:?}", u.refused);
    assert!(u.refused[1].contains("absolute path"), "{:?}", u.refused);
    assert_eq!(u.refused[4], "record.toml: not a file a run sends back");
    assert_eq!(paths_under(outer.path()), ["run", "run/exit-status"]);
    assert!(!Path::new("/etc/x-cargo-gpu-test").exists());
}

#[test]
fn a_chain_of_harmless_looking_links_reaches_nothing_outside() {
    // `d -> .`, `e1 -> d/..`, `e2 -> e1/..`: each link text looks harmless, together they climb
    // out. None is made, so the entries that go through them land inside or are refused.
    let outer = tempfile::tempdir().unwrap();
    let victim = outer.path().join("victim");
    std::fs::write(&victim, "keep").unwrap();
    let dest = outer.path().join("a/run");
    std::fs::create_dir_all(&dest).unwrap();
    let t = raw_tar(&[
        ("out/d", EntryType::Symlink, b"", Some(".")),
        ("out/e1", EntryType::Symlink, b"", Some("d/..")),
        ("out/e2", EntryType::Symlink, b"", Some("e1/..")),
        ("out/e3", EntryType::Symlink, b"", Some("e2/../../victim")),
        ("out/e3", EntryType::Regular, b"overwritten", None),
        ("out/e2/x", EntryType::Regular, b"inside", None),
        ("stdout.log", EntryType::Symlink, b"", Some("../../victim")),
    ]);
    let u = unpack(&t[..], &dest, &rules(1 << 20)).unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    assert_no_links(outer.path());
    assert_eq!(u.refused_count, 5, "{:?}", u.refused);
    assert_eq!(std::fs::read_to_string(dest.join("out/e3")).unwrap(), "overwritten");
    assert_eq!(std::fs::read_to_string(dest.join("out/e2/x")).unwrap(), "inside");
}

#[test]
fn links_already_in_the_folder_are_replaced_or_refused_never_followed() {
    let outer = tempfile::tempdir().unwrap();
    let victim = outer.path().join("victim");
    std::fs::write(&victim, "keep").unwrap();
    let dest = outer.path().join("run");
    std::fs::create_dir_all(&dest).unwrap();
    std::os::unix::fs::symlink(&victim, dest.join("stdout.log")).unwrap();
    std::os::unix::fs::symlink(outer.path(), dest.join("out")).unwrap();
    let t =
        raw_tar(&[("stdout.log", EntryType::Regular, b"log", None), ("out/victim", EntryType::Regular, b"evil", None)]);
    let u = unpack(&t[..], &dest, &rules(1 << 20)).unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    assert_eq!(std::fs::read_to_string(dest.join("stdout.log")).unwrap(), "log");
    assert!(!std::fs::symlink_metadata(dest.join("stdout.log")).unwrap().file_type().is_symlink());
    assert_eq!(u.refused, ["out/victim: `out` is a link here"]);
}

#[test]
fn the_cap_keeps_what_came_first_and_stops_at_the_entry_that_would_pass_it() {
    let dir = tempfile::tempdir().unwrap();
    let big = vec![7u8; 4000];
    let t = raw_tar(&[
        ("stdout.log", EntryType::Regular, b"log\n", None),
        ("exit-status", EntryType::Regular, b"0\n", None),
        ("out/big", EntryType::Regular, &big, None),
        ("out/small", EntryType::Regular, b"x", None),
    ]);
    let u = unpack(&t[..], dir.path(), &rules(1000)).unwrap();
    assert_eq!(u.over_limit.as_deref(), Some("out/big (3.9 KiB) and everything after it"));
    assert_eq!(paths_under(dir.path()), ["exit-status", "stdout.log"]);
    assert_eq!(u.bytes, 6);
    let many: Vec<(String, EntryType, &[u8], Option<&str>)> =
        (0..150).map(|i| (format!("out/{i}"), EntryType::Regular, &b"x"[..], None)).collect();
    let many: Vec<(&str, EntryType, &[u8], Option<&str>)> =
        many.iter().map(|(n, k, d, l)| (n.as_str(), *k, *d, *l)).collect();
    let dir = tempfile::tempdir().unwrap();
    let u = unpack(&raw_tar(&many)[..], dir.path(), &rules(1 << 20)).unwrap();
    assert_eq!(u.over_limit.as_deref(), Some("more than 100 entries"));
    assert_eq!(u.files.len(), 100);
}

#[test]
fn long_names_work_and_oversized_ones_stop_the_unpacking() {
    let dir = tempfile::tempdir().unwrap();
    let long = format!("out/{}f.txt", "folder-name/".repeat(20));
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(2);
    h.set_mode(0o644);
    b.append_data(&mut h, &long, &b"ok"[..]).unwrap();
    let t = b.into_inner().unwrap();
    let u = unpack(&t[..], dir.path(), &rules(1 << 20)).unwrap();
    assert!(u.refused.is_empty(), "{:?}", u.refused);
    assert_eq!(std::fs::read_to_string(dir.path().join(&long)).unwrap(), "ok");

    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
    h.set_entry_type(EntryType::GNULongName);
    h.set_size(MAX_META_BYTES + 1);
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, std::io::repeat(b'a').take(MAX_META_BYTES + 1)).unwrap();
    let u = unpack(&b.into_inner().unwrap()[..], dir.path(), &rules(1 << 20)).unwrap();
    assert!(u.over_limit.unwrap().contains("long name header"));
}

#[test]
fn names_are_escaped_and_refusals_counted() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..60).map(|i| format!("x\x1b[31m\nwarning: forged {i}")).collect();
    let entries: Vec<(&str, EntryType, &[u8], Option<&str>)> =
        names.iter().map(|n| (n.as_str(), EntryType::Regular, &b""[..], None)).collect();
    let u = unpack(&raw_tar(&entries)[..], dir.path(), &rules(1 << 20)).unwrap();
    assert_eq!(u.refused_count, 60);
    assert_eq!(u.refused[0], "x\\e[31m\\nwarning: forged 0: not a file a run sends back");
    let lines = u.refusal_lines();
    assert_eq!(lines.len(), MAX_LISTED_REFUSALS + 1);
    assert_eq!(lines.last().unwrap(), "and 10 more entries refused");
}

#[test]
fn env_txt_is_redacted_before_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let t = raw_tar(&[("env.txt", EntryType::Regular, b"PATH=/bin\nHF_TOKEN=hf_secret_value\n", None)]);
    unpack(&t[..], dir.path(), &rules(1 << 20)).unwrap();
    assert_eq!(std::fs::read_to_string(dir.path().join("env.txt")).unwrap(), "PATH=/bin\nHF_TOKEN=<redacted>\n");
}
