//! Text that came from a remote machine, made safe to print in our own messages: control
//! characters (terminal escape sequences, carriage returns, newlines that would forge a line of
//! ours) are written as visible escapes. The runner's own output is not ours to change and does
//! not pass through here.

use std::fmt::Write;

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\x1b' => out.push_str("\\e"),
        c if (c as u32) < 0x100 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
}

/// Whether `c` does something to a terminal instead of showing a glyph: C0 and C1 controls,
/// DEL, and the bidirectional overrides that reorder what is shown.
fn is_control(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// One line: every control character, newline included, escaped.
pub fn line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_control(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    out
}

/// Several lines (a remote command's stderr): newlines kept, every line indented by `indent`
/// so that none can pass for a line of ours, other control characters escaped.
pub fn block(text: &str, indent: &str) -> String {
    text.lines().map(|l| format!("{indent}{}", line(l))).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_a_terminal_would_act_on() {
        assert_eq!(line("NVIDIA H100"), "NVIDIA H100");
        assert_eq!(line("a\x1b]0;pwned\x07b"), "a\\e]0;pwned\\x07b");
        assert_eq!(line("x\nwarning: forged"), "x\\nwarning: forged");
        assert_eq!(line("\u{9b}31m"), "\\x9b31m");
        assert_eq!(line("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(line("ünïcödé 🎉\t"), "ünïcödé 🎉\\t");
    }

    #[test]
    fn blocks_keep_their_lines_indented() {
        assert_eq!(block("one\n\x1b[2Jtwo\rX\n", "  | "), "  | one\n  | \\e[2Jtwo\\rX");
    }
}
