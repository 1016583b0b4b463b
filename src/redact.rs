//! Secrets kept out of what cargo-gpu prints and records: API keys in hook commands
//! (`VAST_API_KEY=... vastai start`), tokens passed with `ssh -o SetEnv=HF_TOKEN=...`, secret
//! variables of our own environment and of the remote's. Their values are registered once (from
//! the config and the environment) and replaced by `***` in every message and record; the remote's
//! environment is kept only for an allow-list of names.

use std::sync::{Mutex, OnceLock};

/// What a secret value is replaced with.
pub const MASK: &str = "***";
/// Shorter values are too likely to occur by chance to be masked everywhere.
const MIN_SECRET_LEN: usize = 6;

/// Parts of a variable or option name that say its value is a secret.
pub const SECRET_PARTS: [&str; 9] =
    ["TOKEN", "SECRET", "PASSWORD", "PASSWD", "KEY", "CREDENTIAL", "AUTH", "COOKIE", "SESSION"];

/// Remote environment variables kept in a run's `env.txt`, by exact name.
pub const ENV_KEPT: [&str; 12] =
    ["PATH", "LD_LIBRARY_PATH", "HOSTNAME", "HOME", "USER", "LOGNAME", "SHELL", "PWD", "LANG", "TZ", "TERM", "SHLVL"];
/// ... and by prefix.
pub const ENV_KEPT_PREFIXES: [&str; 6] = ["CUDA_", "NVIDIA_", "NCCL_", "CARGO_GPU_", "LC_", "OMP_"];
/// What a variable outside the allow-list shows in `env.txt`.
pub const ENV_REDACTED: &str = "<redacted>";

static SECRETS: OnceLock<Mutex<Vec<String>>> = OnceLock::new();

fn secrets() -> &'static Mutex<Vec<String>> {
    SECRETS.get_or_init(|| {
        let mut v = Vec::new();
        for (k, val) in std::env::vars_os() {
            if let (Some(k), Some(val)) = (k.to_str(), val.to_str()) {
                if is_secret_name(k) && val.len() >= MIN_SECRET_LEN {
                    v.push(val.to_string());
                }
            }
        }
        Mutex::new(v)
    })
}

/// Whether a variable or option name says its value is a secret (`HF_TOKEN`, `api-key`).
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase().replace('-', "_");
    SECRET_PARTS.iter().any(|p| upper.contains(p))
}

/// Whether a remote environment variable is kept in `env.txt` with its value.
pub fn env_kept(name: &str) -> bool {
    (ENV_KEPT.contains(&name) || ENV_KEPT_PREFIXES.iter().any(|p| name.starts_with(p))) && !is_secret_name(name)
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Registers a value that must never be printed or recorded.
pub fn register(value: &str) {
    if value.len() >= MIN_SECRET_LEN {
        let mut s = secrets().lock().unwrap_or_else(|e| e.into_inner());
        if !s.iter().any(|v| v == value) {
            s.push(value.to_string());
            // Longest first, so a secret that contains another is masked whole.
            s.sort_by_key(|v| std::cmp::Reverse(v.len()));
        }
    }
}

/// The secret values in a list of command words: `NAME=value` with a secret name, ssh's
/// `SetEnv NAME=value`, and the word after a secret-named flag (`--api-key VALUE`).
fn secret_values(words: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut after_secret_flag = false;
    for w in words {
        if std::mem::take(&mut after_secret_flag) {
            out.push(w.clone());
            continue;
        }
        // `SetEnv=HF_TOKEN=x` and `SetEnv HF_TOKEN=x` both name the variable before the value.
        let w = w.strip_prefix("SetEnv=").or_else(|| w.strip_prefix("SetEnv ")).unwrap_or(w);
        if let Some((name, value)) = w.split_once('=') {
            let name = name.trim_start_matches('-');
            if is_secret_name(name) {
                out.push(value.to_string());
            }
        } else if w.starts_with('-') && is_secret_name(w.trim_start_matches('-')) {
            after_secret_flag = true;
        }
    }
    out
}

/// Command words as they may be shown: the values of secret assignments, of secret-named flags
/// and of ssh `SetEnv` replaced by [`MASK`], then every registered secret masked; each word
/// shell-quoted.
pub fn words(words: &[String]) -> Vec<String> {
    let secret: Vec<String> = secret_values(words);
    let mut after_o = false;
    words
        .iter()
        .map(|w| {
            let mut shown = w.clone();
            if std::mem::replace(&mut after_o, w == "-o") && w.to_ascii_lowercase().starts_with("setenv") {
                shown = format!("{}={MASK}", &w[..6]);
            }
            for v in &secret {
                if !v.is_empty() {
                    shown = shown.replace(v.as_str(), MASK);
                }
            }
            crate::quote::quote(&scrub(&shown))
        })
        .collect()
}

/// Registers the secrets in a shell command line (a `start` or `stop` hook).
pub fn register_command(command: &str) {
    let words = shell_words::split(command).unwrap_or_else(|_| command.split_whitespace().map(String::from).collect());
    for v in secret_values(&words) {
        register(&v);
    }
}

/// Registers the secrets in a list of ssh options.
pub fn register_words(words: &[String]) {
    for v in secret_values(words) {
        register(&v);
    }
}

/// `text` with every registered secret replaced by [`MASK`].
pub fn scrub(text: &str) -> String {
    let s = secrets().lock().unwrap_or_else(|e| e.into_inner());
    let mut out = text.to_string();
    for v in s.iter() {
        if out.contains(v.as_str()) {
            out = out.replace(v.as_str(), MASK);
        }
    }
    out
}

/// One `env.txt` from what the remote sent: `NAME=value` lines, the value kept only for names on
/// the allow-list and masked otherwise; lines that are no assignment are dropped.
pub fn env_listing(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let Some((name, value)) = line.split_once('=') else { continue };
        if !is_var_name(name) {
            continue;
        }
        let value = if env_kept(name) { scrub(value) } else { ENV_REDACTED.to_string() };
        out.push_str(&format!("{name}={value}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names() {
        for n in ["HF_TOKEN", "VAST_API_KEY", "aws_secret_access_key", "api-key", "DB_PASSWORD", "GH_AUTH"] {
            assert!(is_secret_name(n), "{n}");
        }
        for n in ["PATH", "CUDA_VISIBLE_DEVICES", "HOME"] {
            assert!(!is_secret_name(n), "{n}");
        }
    }

    #[test]
    fn values_are_found_in_commands_and_ssh_options() {
        let words: Vec<String> = ["VAST_API_KEY=abc123456", "vastai", "start", "--api-key", "k-999999", "--id", "42"]
            .map(String::from)
            .into();
        assert_eq!(secret_values(&words), ["abc123456", "k-999999"]);
        let ssh: Vec<String> =
            ["-o", "SetEnv=HF_TOKEN=hf_aaaaaaaa", "-o", "SetEnv LANG=C.UTF-8"].map(String::from).into();
        assert_eq!(secret_values(&ssh), ["hf_aaaaaaaa"]);
    }

    #[test]
    fn registered_values_are_masked_everywhere() {
        register_command("MY_TOKEN='tok-77777777' provider start");
        register("short");
        assert_eq!(scrub("failed: tok-77777777 was refused (short)"), "failed: *** was refused (short)");
    }

    #[test]
    fn env_listing_keeps_only_the_allow_list() {
        let text = "PATH=/usr/bin\nHF_TOKEN=hf_secret\nCUDA_VISIBLE_DEVICES=0\nNVIDIA_API_KEY=x\nnot an assignment\n\
                    MY_VAR=something\n";
        assert_eq!(
            env_listing(text),
            "PATH=/usr/bin\nHF_TOKEN=<redacted>\nCUDA_VISIBLE_DEVICES=0\nNVIDIA_API_KEY=<redacted>\nMY_VAR=<redacted>\n"
        );
    }
}
