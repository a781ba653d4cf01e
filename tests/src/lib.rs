//! What the integration tiers share: where tests keep their state, and the rule for a test that cannot run
//! here (print why and skip; under `CI=true` a missing host prerequisite is a failure instead).

use std::path::PathBuf;

use kthw::paths::Paths;

/// All tests share one KTHW_HOME under the target directory, so the node image is built once per checkout
/// and nothing lands in the user's home.
pub fn test_paths() -> Paths {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/kthw-test-home");
    Paths::under(root)
}

/// Under CI every host prerequisite must be present: a skip there would hide a broken setup script.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Skips the calling test (returns `None`) with a reason on stderr, or fails it under CI, when a host
/// prerequisite is missing. `what` names the tier's need, `missing` what was not found.
pub fn host_prerequisite(what: &str, missing: Option<String>) -> Option<()> {
    match missing {
        None => Some(()),
        Some(why) if in_ci() => panic!("CI=true and the {what} tier cannot run: {why}"),
        Some(why) => {
            eprintln!("SKIPPED: the {what} tier cannot run here: {why}");
            None
        }
    }
}

/// Missing upstream artifacts skip the cluster tier everywhere, CI included: this host cannot download them.
pub fn skip_for_artifacts(why: &str) {
    eprintln!("SKIPPED: the cluster tier needs the pinned upstream artifacts: {why}");
}

/// The host prerequisites of the vm tier, as `kthw doctor` reports them; `None` when all are present.
pub fn vm_host_missing() -> Option<String> {
    let missing: Vec<String> = kthw::doctor::run(&test_paths())
        .into_iter()
        .filter(|c| c.required && c.is_missing())
        .map(|c| match c.status {
            kthw::doctor::Status::Missing { detail, fix } => format!("{}: {detail} (fix: {fix})", c.name),
            _ => unreachable!("filtered to missing checks"),
        })
        .collect();
    (!missing.is_empty()).then(|| missing.join("; "))
}
pub mod bench_ssh;
pub mod bench_image;
