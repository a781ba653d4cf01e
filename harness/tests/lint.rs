//! The unit tier lints what cargo does not compile, so that a broken workflow fails here and not at 3 a.m.:
//! the GitHub workflows with actionlint (which also runs shellcheck on their `run:` steps when it is on PATH)
//! and the shell scripts with shellcheck. A missing tool skips the test, printing why; under `CI=true` it fails.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    kthw::testing::workspace_dir()
}

/// True when `tool` is on PATH; otherwise `SKIPPED: ...` and false, or a failure under `CI=true`.
fn present(tool: &str, test: &str) -> bool {
    let found = std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
    if !found {
        let why = format!("{test} needs {tool}, which is not on PATH (scripts/setup-host installs it)");
        assert!(!std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"), "CI=true and {why}");
        eprintln!("SKIPPED: {why}");
    }
    found
}

/// The regular files directly in `dir`, sorted.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn run_lint(tool: &str, args: &[&str], files: &[PathBuf]) {
    let out = Command::new(tool)
        .args(args)
        .args(files)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("run {tool}: {e}"));
    assert!(
        out.status.success(),
        "{tool} found problems in {files:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn workflows_pass_actionlint() {
    if !present("actionlint", "workflows_pass_actionlint") {
        return;
    }
    let workflows: Vec<PathBuf> = files_in(&repo().join(".github/workflows"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    for expected in ["nightly.yml", "pr.yml"] {
        assert!(workflows.iter().any(|p| p.ends_with(expected)), "{expected} is missing from {workflows:?}");
    }
    run_lint("actionlint", &["-no-color"], &workflows);
}

#[test]
fn scripts_pass_shellcheck() {
    if !present("shellcheck", "scripts_pass_shellcheck") {
        return;
    }
    let mut scripts = files_in(&repo().join("scripts"));
    scripts.push(repo().join(".ci/run"));
    // -x follows `source`d files; every script names its shell in its #! line.
    run_lint("shellcheck", &["-x"], &scripts);
}

#[test]
fn a_broken_workflow_is_caught() {
    if !present("actionlint", "a_broken_workflow_is_caught") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yml");
    // An undefined matrix key and a step with both `uses` and `run`.
    std::fs::write(
        &bad,
        "on: push\njobs:\n  t:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo ${{ matrix.shard }}\n      \
         - uses: actions/checkout@v5\n        run: echo both\n",
    )
    .unwrap();
    let out = Command::new("actionlint").args(["-no-color"]).arg(&bad).output().unwrap();
    assert!(!out.status.success(), "actionlint must reject {}", std::fs::read_to_string(&bad).unwrap());
}

fn workflow(name: &str) -> String {
    let path = repo().join(".github/workflows").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// A tag can be moved to other code; a commit cannot. The tag stays beside it, so a person can tell what it is.
#[test]
fn every_action_is_pinned_by_a_full_commit_with_its_tag_beside_it() {
    for name in ["nightly.yml", "pr.yml"] {
        for line in workflow(name).lines().filter(|l| l.trim_start().trim_start_matches("- ").starts_with("uses:")) {
            let reference = line.split("uses:").nth(1).unwrap().trim();
            let (commit, comment) =
                reference.split_once('@').unwrap_or(("", reference)).1.split_once(" # ").unwrap_or(("", ""));
            assert!(
                commit.len() == 40 && commit.chars().all(|c| c.is_ascii_hexdigit()) && !comment.is_empty(),
                "{name}: `{}` must be `owner/repo@<40-hex commit> # <tag>`",
                line.trim()
            );
        }
    }
}

/// The shards run the archive the build job's nextest wrote: one nextest version everywhere.
#[test]
fn every_job_installs_the_one_pinned_nextest() {
    let version = |text: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix("NEXTEST_VERSION:").map(|v| v.trim().to_string()))
            .expect("NEXTEST_VERSION in the workflow's env")
    };
    let (nightly, pr) = (workflow("nightly.yml"), workflow("pr.yml"));
    assert_eq!(version(&nightly), version(&pr), "nightly.yml and pr.yml pin the same nextest");
    for (name, text) in [("nightly.yml", &nightly), ("pr.yml", &pr)] {
        let tools: Vec<&str> = text.lines().filter(|l| l.trim().starts_with("tool:")).map(str::trim).collect();
        assert!(!tools.is_empty(), "{name} installs no tool");
        for t in tools {
            assert_eq!(t, "tool: cargo-nextest@${{ env.NEXTEST_VERSION }}", "{name}");
        }
    }
}

/// The nightly must not pass under TCG into its timeouts; pull requests run wherever there is no KVM.
#[test]
fn the_nightly_requires_kvm_and_pull_requests_do_not() {
    let nightly = workflow("nightly.yml");
    assert!(nightly.contains("KTHW_ACCEL: kvm"), "the shards force KVM");
    assert!(nightly.contains("run: scripts/require-kvm"), "a shard checks /dev/kvm before anything else");
    let first_steps: Vec<&str> = nightly
        .split("  test:\n")
        .nth(1)
        .unwrap()
        .lines()
        .filter(|l| l.contains("- name:") || l.contains("- uses:"))
        .collect();
    let kvm = first_steps.iter().position(|l| l.contains("Require a usable KVM")).expect("the KVM step");
    let setup = first_steps.iter().position(|l| l.contains("Host prerequisites")).expect("the setup step");
    assert!(kvm < setup, "the KVM check comes before the minutes of setup: {first_steps:#?}");
    assert!(!workflow("pr.yml").contains("KTHW_ACCEL"), "pull requests let the probe choose");
}
