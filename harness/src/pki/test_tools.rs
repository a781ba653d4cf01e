//! For unit tests that check our output with real tools (openssl, kubectl): run one, or skip saying why.

use std::path::Path;
use std::process::Command;

/// True when `tool` is on PATH; otherwise a skip through [`crate::testing::needs`] (a failure under `CI=true`).
pub fn verifier_present(tool: &str, test: &str) -> bool {
    crate::testing::needs(crate::testing::on_path(tool, test)).is_some()
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
