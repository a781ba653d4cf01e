//! The gate of this tier, as a person meets it: `kthw up` on a host without the pinned artifacts says what is
//! missing and the command that provides each, before any VM boots, and exits non-zero. Runs everywhere.

use std::process::Command;

use kthw_tests::kthw_bin;

#[test]
fn up_without_the_artifacts_lists_them_and_boots_nothing() {
    let home = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(kthw_bin())
        .args(["up", "--name", "preflight", "--artifacts-dir"])
        .arg(empty.path())
        .env("KTHW_HOME", home.path())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "kthw up succeeded without artifacts:\n{stderr}");
    assert!(stderr.contains("no VM was booted"), "{stderr}");
    let fetch = format!("kthw artifacts fetch --dir {}", empty.path().display());
    for (artifact, phase) in
        [("etcd", "etcd"), ("kubernetes-server", "control-plane"), ("kubernetes-node", "workers"), ("pause", "workers")]
    {
        let line = stderr
            .lines()
            .position(|l| l.contains(&format!("- {artifact} (for {phase};")))
            .unwrap_or_else(|| panic!("{artifact} is not listed as missing for {phase}:\n{stderr}"));
        let command = stderr.lines().nth(line + 1).unwrap_or_default();
        assert!(command.trim().starts_with(&fetch), "no command for {artifact}:\n{stderr}");
    }
    assert!(stderr.contains("etcd_from = \"debian\""), "the way past etcd without downloads: {stderr}");
    assert!(stderr.contains("--partial"), "{stderr}");
    assert!(!home.path().join("state/runs/preflight").exists(), "a run directory was made");
}
