//! What a test needs from the machine (nvcc, sshd, a login shell) and what happens when it is
//! missing: under `CI=true` nothing is skipped, so the test fails and says what to install;
//! elsewhere it says why it skips.

/// `found`, or, when it is `None`, a failure under `CI=true` and a skip (`None`) elsewhere.
/// `what` names the tool, `how` says how to get it.
#[track_caller]
pub fn required<T>(found: Option<T>, what: &str, how: &str) -> Option<T> {
    if found.is_none() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{what} is required under CI=true: {how}");
        }
        eprintln!("skipping: no {what} here ({how})");
    }
    found
}
