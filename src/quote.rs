//! Quoting words for a POSIX shell (the remote's `sh`, and command lines shown to the user). Every word that goes into a remote script passes
//! through [`quote`] (or [`quote_path`], which adds `~/` expansion), so a workdir, a package path
//! or a runner argument with spaces, quotes or `$(...)` reaches the remote exactly as given.

/// One shell word: bare when it holds only characters no POSIX shell treats specially,
/// otherwise inside single quotes, with each `'` written as `'\''`.
pub fn quote(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_-./=,:@%+".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        return word.to_string();
    }
    let mut out = String::with_capacity(word.len() + 2);
    out.push('\'');
    for c in word.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// A path word whose leading `~` or `~/` still expands to the remote user's home: `~/a b`
/// becomes `"$HOME"/'a b'`. Everything after the tilde is quoted like any other word.
pub fn quote_path(path: &str) -> String {
    if path == "~" {
        "\"$HOME\"".to_string()
    } else if let Some(rest) = path.strip_prefix("~/") {
        if rest.is_empty() {
            "\"$HOME\"/".to_string()
        } else {
            format!("\"$HOME\"/{}", quote(rest))
        }
    } else {
        quote(path)
    }
}

/// Whether `word` is a shell variable name (`BLOCK`, `_n2`): what may be exported as given.
pub fn is_name(word: &str) -> bool {
    let mut chars = word.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const NASTY: &[&str] = &[
        "",
        "plain",
        "a b",
        "it's",
        "'",
        "''",
        "\"",
        "$(touch pwned)",
        "`touch pwned`",
        "$HOME",
        "a\nb",
        "tab\there",
        "back\\slash",
        "*",
        "semi;colon && or || pipe|",
        "-n",
        "~",
        "~/x",
        "ünïcödé 🎉",
        "!bang",
        "#hash",
        "{a,b}",
    ];

    /// Runs `printf '%s\0' WORDS` through a real `sh -c` and returns what arrived.
    fn through_sh(script_words: &str) -> Vec<String> {
        let out = Command::new("sh").arg("-c").arg(format!("printf '%s\\0' {script_words}")).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        text.split_terminator('\0').map(str::to_string).collect()
    }

    #[test]
    fn every_word_round_trips_through_a_real_shell() {
        let words: Vec<String> = NASTY.iter().map(|w| quote(w)).collect();
        assert_eq!(through_sh(&words.join(" ")), NASTY);
    }

    #[test]
    fn nested_quoting_round_trips() {
        // A quoted script that itself holds quoted words: how the launcher hands the wrapper to `sh -c`.
        for w in NASTY {
            let inner = format!("printf '%s\\0' {}", quote(w));
            let out = Command::new("sh").arg("-c").arg(format!("sh -c {}", quote(&inner))).output().unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), format!("{w}\0"));
        }
    }

    #[test]
    fn safe_words_stay_bare() {
        assert_eq!(quote("sm_90a"), "sm_90a");
        assert_eq!(quote("/tmp/x/y.cubin"), "/tmp/x/y.cubin");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("$(x)"), "'$(x)'");
    }

    #[test]
    fn home_paths_expand_and_the_rest_stays_quoted() {
        assert_eq!(quote_path("~/.cache/cargo-gpu"), "\"$HOME\"/.cache/cargo-gpu");
        assert_eq!(quote_path("~/it's $(x)"), "\"$HOME\"/'it'\\''s $(x)'");
        assert_eq!(quote_path("~"), "\"$HOME\"");
        assert_eq!(quote_path("~user/x"), "'~user/x'");
        let home = std::env::var("HOME").unwrap();
        assert_eq!(through_sh(&quote_path("~/a b $(touch pwned)")), [format!("{home}/a b $(touch pwned)")]);
        assert_eq!(through_sh(&quote_path("/abs/~/x")), ["/abs/~/x"]);
    }
}
