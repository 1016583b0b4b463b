//! The bytes between the relay here and the agent on a remote (see `remote::agent`): a greeting,
//! then frames of a one-byte tag, a four-byte big-endian length and that many bytes. The relay
//! sends `s` (the script), then `i` frames of stdin and an empty `i` at its end; the agent
//! answers `a` (accepted: the script will run, so it must not be run again another way), then
//! `o` / `e` frames of the script's stdout / stderr and `x` (its exit status, four bytes: the
//! code, or minus the signal that killed it). Both sides read the other as a stranger: a length
//! over the frame's bound is refused before anything is allocated for it.

use std::io::{self, Read, Write};

/// What the relay says first: a connection that does not start with it is closed unanswered.
pub const HELLO: &[u8] = b"cargo-gpu agent 1\n";

/// The longest script a request carries (the ssh path takes at most 120 KiB).
pub const MAX_SCRIPT: usize = 1 << 20;
/// The longest chunk of stdin, stdout or stderr in one frame.
pub const MAX_CHUNK: usize = 64 << 10;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    Script,
    Stdin,
    Accepted,
    Stdout,
    Stderr,
    Exit,
}

impl Tag {
    fn byte(self) -> u8 {
        match self {
            Tag::Script => b's',
            Tag::Stdin => b'i',
            Tag::Accepted => b'a',
            Tag::Stdout => b'o',
            Tag::Stderr => b'e',
            Tag::Exit => b'x',
        }
    }

    fn of(byte: u8) -> Option<Tag> {
        [Tag::Script, Tag::Stdin, Tag::Accepted, Tag::Stdout, Tag::Stderr, Tag::Exit]
            .into_iter()
            .find(|t| t.byte() == byte)
    }

    /// The longest body a frame of this tag may have.
    fn bound(self) -> usize {
        match self {
            Tag::Script => MAX_SCRIPT,
            Tag::Stdin | Tag::Stdout | Tag::Stderr => MAX_CHUNK,
            Tag::Accepted => 0,
            Tag::Exit => 4,
        }
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Writes one frame (a body longer than the tag allows is a bug here, not input).
pub fn write_frame(w: &mut impl Write, tag: Tag, body: &[u8]) -> io::Result<()> {
    assert!(body.len() <= tag.bound(), "a {tag:?} frame of {} bytes", body.len());
    let mut head = [0u8; 5];
    head[0] = tag.byte();
    head[1..].copy_from_slice(&(body.len() as u32).to_be_bytes());
    w.write_all(&head)?;
    w.write_all(body)?;
    w.flush()
}

/// An exit status as an [`Tag::Exit`] body: the code, or minus the signal.
pub fn exit_body(status: std::process::ExitStatus) -> [u8; 4] {
    use std::os::unix::process::ExitStatusExt;
    let value = status.code().unwrap_or_else(|| -status.signal().unwrap_or(0));
    value.to_be_bytes()
}

/// The exit status an [`Tag::Exit`] body carries.
pub fn exit_value(body: &[u8]) -> io::Result<i32> {
    let bytes: [u8; 4] = body.try_into().map_err(|_| invalid(format!("an exit frame of {} bytes", body.len())))?;
    Ok(i32::from_be_bytes(bytes))
}

/// Reads the next frame; `None` at a clean end between frames. A frame cut short, an unknown tag,
/// or a length over its tag's bound is an error.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<(Tag, Vec<u8>)>> {
    let mut head = [0u8; 5];
    let mut got = 0;
    while got < head.len() {
        match r.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let tag = Tag::of(head[0]).ok_or_else(|| invalid(format!("an unknown frame tag {:#04x}", head[0])))?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > tag.bound() {
        return Err(invalid(format!("a {tag:?} frame of {len} bytes (at most {})", tag.bound())));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok(Some((tag, body)))
}

/// Reads the greeting; anything else is an error.
pub fn read_hello(r: &mut impl Read) -> io::Result<()> {
    let mut got = [0u8; HELLO.len()];
    r.read_exact(&mut got)?;
    if got != HELLO {
        return Err(invalid("not a cargo-gpu relay".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(mut bytes: &[u8]) -> io::Result<Vec<(Tag, Vec<u8>)>> {
        let mut out = Vec::new();
        while let Some(f) = read_frame(&mut bytes)? {
            out.push(f);
        }
        Ok(out)
    }

    #[test]
    fn frames_round_trip() {
        let mut buf = Vec::new();
        write_frame(&mut buf, Tag::Script, b"echo hi").unwrap();
        for chunk in vec![7u8; MAX_CHUNK + 3].chunks(MAX_CHUNK) {
            write_frame(&mut buf, Tag::Stdout, chunk).unwrap();
        }
        write_frame(&mut buf, Tag::Accepted, b"").unwrap();
        use std::os::unix::process::ExitStatusExt;
        write_frame(&mut buf, Tag::Exit, &exit_body(std::process::ExitStatus::from_raw(3 << 8))).unwrap();
        write_frame(&mut buf, Tag::Exit, &exit_body(std::process::ExitStatus::from_raw(9))).unwrap();
        let got = frames(&buf).unwrap();
        let tags: Vec<Tag> = got.iter().map(|f| f.0).collect();
        assert_eq!(tags, [Tag::Script, Tag::Stdout, Tag::Stdout, Tag::Accepted, Tag::Exit, Tag::Exit]);
        assert_eq!(got[1].1.len(), MAX_CHUNK);
        assert_eq!(got[2].1, [7, 7, 7]);
        assert_eq!(exit_value(&got[4].1).unwrap(), 3);
        assert_eq!(exit_value(&got[5].1).unwrap(), -9, "a signal is negative");
    }

    #[test]
    fn over_long_and_unknown_headers_are_refused_before_reading_the_body() {
        // A length of 4 GiB - 1 with no body behind it: refused from the header alone.
        let err = frames(&[b'o', 0xff, 0xff, 0xff, 0xff]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("Stdout frame of 4294967295 bytes"), "{err}");
        let mut over = vec![b's'];
        over.extend_from_slice(&((MAX_SCRIPT + 1) as u32).to_be_bytes());
        assert!(frames(&over).unwrap_err().to_string().contains("at most 1048576"));
        // An accepted frame carries nothing, an exit frame exactly four bytes.
        assert!(frames(&[b'a', 0, 0, 0, 1, 0]).is_err());
        assert!(frames(&[b'x', 0, 0, 0, 5, 0, 0, 0, 0, 0]).is_err());
        assert!(exit_value(&[0, 0]).is_err());
        let err = frames(&[b'Z', 0, 0, 0, 0]).unwrap_err();
        assert!(err.to_string().contains("unknown frame tag 0x5a"), "{err}");
    }

    #[test]
    fn a_frame_cut_short_is_an_error_and_a_clean_end_is_not() {
        assert!(frames(&[]).unwrap().is_empty());
        assert_eq!(frames(&[b'o', 0, 0]).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(frames(&[b'o', 0, 0, 0, 4, b'a']).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn only_the_greeting_opens_a_request() {
        assert!(read_hello(&mut &HELLO[..]).is_ok());
        assert!(read_hello(&mut &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..]).is_err());
        assert!(read_hello(&mut &b"cargo"[..]).is_err());
    }
}
