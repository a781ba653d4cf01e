//! For unit tests that check our output with real tools (openssl, kubectl): run one, or skip saying why.

use std::path::Path;
use std::process::Command;

/// True when `tool` is on PATH. Otherwise prints `SKIPPED: <why>` and returns false; under `CI=true` a missing
/// verifier fails the test instead, since a skip there would hide a broken setup.
pub fn verifier_present(tool: &str, test: &str) -> bool {
    let found = std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
    if found {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("CI=true and {test} needs {tool}, which is not on PATH");
    }
    eprintln!("SKIPPED: {test} needs {tool} as its verifier, and it is not on PATH");
    false
}

/// Runs `tool args...`, returning (success, stdout, stderr).
pub fn run(tool: &str, args: &[&str], cwd: &Path) -> (bool, String, String) {
    let out = Command::new(tool)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool} {args:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
