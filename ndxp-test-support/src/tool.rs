//! Running the stock tools (`openssl`, `curl`, `python3`, ...) that the
//! interoperability tests check our output with.

use std::process::{Command, Output};

/// Runs `program` with `args`; returns whether it succeeded and its stdout
/// followed by its stderr. Panics with a clear message when the tool is not
/// installed (CI installs it; nothing is skipped silently).
pub fn run_tool(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{program}` (install it; .ci/run does): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Runs the program at `path` (one of ours, `env!("CARGO_BIN_EXE_...")`)
/// with `args`; returns its exit code (-1 when a signal ended it), stdout
/// and stderr.
pub fn run_binary(path: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {path}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `command` (one of ours, or a stock tool) and returns its output,
/// asserting that it succeeded; the panic names `what` and quotes the
/// command's stderr.
pub fn succeeds(command: &mut Command, what: &str) -> Output {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what} failed: {stderr}");
    out
}

/// Asserts that `text` (a command's output) contains each of `needles`;
/// the panic quotes the whole text.
pub fn assert_says(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "no {needle:?} in: {text}");
    }
}
