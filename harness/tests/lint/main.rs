//! The unit tier lints what cargo does not compile, so that a broken workflow fails here and not at 3 a.m.:
//! the GitHub workflows with actionlint (which also runs shellcheck on their `run:` steps when it is on PATH)
//! and the shell scripts with shellcheck. A missing tool skips the test, printing why; under `CI=true` it fails.
//! It also holds the rules that keep the tests honest, which no compiler checks: one skip helper, fixtures
//! that say where they came from, artifact sums that say where they were published.

use std::path::{Path, PathBuf};
use std::process::Command;

use honesty::{rust_sources, THIS_DIR};

mod example;
mod honesty;
mod nextest;

fn repo() -> PathBuf {
    kthw::testing::workspace_dir()
}

/// True when `tool` is on PATH; otherwise a skip through the one helper (a failure under `CI=true`).
fn present(tool: &str, test: &str) -> bool {
    kthw::testing::needs(kthw::testing::on_path(tool, test)).is_some()
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
    for expected in ["nightly.yml", "pr.yml", "kthw-tests.yml"] {
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

/// Every workflow's file name, sorted.
fn workflow_names() -> Vec<String> {
    files_in(&repo().join(".github/workflows"))
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// A tag can be moved to other code; a commit cannot. The tag stays beside it, so a person can tell what it is.
#[test]
fn every_action_is_pinned_by_a_full_commit_with_its_tag_beside_it() {
    for name in workflow_names() {
        for line in workflow(&name).lines().filter(|l| l.trim_start().trim_start_matches("- ").starts_with("uses:")) {
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
    let nightly = version(&workflow("nightly.yml"));
    for name in workflow_names() {
        let text = workflow(&name);
        assert_eq!(version(&text), nightly, "{name} pins the nightly's nextest");
        let tools: Vec<&str> = text.lines().filter(|l| l.trim().starts_with("tool:")).map(str::trim).collect();
        assert!(!tools.is_empty(), "{name} installs no tool");
        for t in tools {
            assert_eq!(t, "tool: cargo-nextest@${{ env.NEXTEST_VERSION }}", "{name}");
        }
    }
}

/// The Rust that builds and lints is a version, one in every workflow, never the floating `stable` (pr.yml
/// lints with `-D warnings`: a new stable's lints would fail pull requests nobody changed). Every
/// dtolnay/rust-toolchain step names its `toolchain` (dtolnay/rust-toolchain@29eef33:action.yml's input
/// defaults to `stable` at that branch head).
#[test]
fn every_workflow_builds_with_one_pinned_rust() {
    let pinned = |text: &str, key: &str| {
        text.lines().find_map(|l| l.trim().strip_prefix(key).map(|v| v.trim().to_string())).unwrap_or_default()
    };
    let rust = pinned(&workflow("nightly.yml"), "RUST_TOOLCHAIN:");
    let parts: Vec<&str> = rust.split('.').collect();
    assert!(parts.len() == 3 && parts.iter().all(|p| p.parse::<u32>().is_ok()), "RUST_TOOLCHAIN {rust:?} is x.y.z");
    assert_eq!(pinned(&workflow("pr.yml"), "RUST_TOOLCHAIN:"), rust, "pr.yml lints with the nightly's Rust");
    let reusable = workflow("kthw-tests.yml");
    let default = reusable.split("rust-toolchain:").nth(1).and_then(|r| pinned(r, "default:").into());
    assert_eq!(default.as_deref(), Some(rust.as_str()), "kthw-tests.yml's default Rust is ours");
    for name in workflow_names() {
        let text = workflow(&name);
        let lines: Vec<&str> = text.lines().collect();
        for (i, _) in lines.iter().enumerate().filter(|(_, l)| l.contains("uses: dtolnay/rust-toolchain@")) {
            let with: Vec<&str> = lines[i + 1..].iter().take(3).map(|l| l.trim()).collect();
            assert!(
                with.iter().any(|w| w.starts_with("toolchain: ${{")),
                "{name}:{}: the toolchain step names its version: {with:?}",
                i + 1
            );
        }
    }
}

/// What the nightly runs as root goes through one place, scripts/nightly-shard's `as_root`, which passes
/// every KTHW_* variable and its PASS_THROUGH list across sudo (sudo resets the environment). Every variable
/// our code reads is one of those, or one root's environment has anyway.
#[test]
fn everything_the_tests_read_crosses_sudo_through_the_shards_one_list() {
    let shard = std::fs::read_to_string(repo().join("scripts/nightly-shard")).unwrap();
    let code: Vec<&str> = shard.lines().map(str::trim).filter(|l| !l.starts_with('#')).collect();
    let sudo: Vec<&&str> = code.iter().filter(|l| l.contains("sudo ")).collect();
    assert_eq!(sudo, [&"sudo env \"${vars[@]}\" \"$@\""], "nightly-shard calls sudo in as_root only");
    let list = code.iter().find_map(|l| l.strip_prefix("PASS_THROUGH=(")).expect("PASS_THROUGH=(...) in nightly-shard");
    let passed: Vec<&str> = list.trim_end_matches(')').split_whitespace().collect();
    // Set for root without us: PATH (as_root passes the job's), TERM (a terminal's, for colour only), and
    // CARGO_MANIFEST_DIR and CARGO_PKG_NAME (nextest sets both for every test it runs: nexte.st
    // docs/configuration/env-vars, "Environment variables nextest sets").
    let root_has = ["PATH", "TERM", "CARGO_MANIFEST_DIR", "CARGO_PKG_NAME"];
    let mut read = Vec::new();
    for (path, text) in rust_sources().iter().filter(|(p, _)| !p.starts_with(THIS_DIR)) {
        for open in ["var(\"", "var_os(\"", "env = \""] {
            for rest in text.split(open).skip(1) {
                let name: String = rest.chars().take_while(|c| c.is_ascii_uppercase() || *c == '_').collect();
                if !name.is_empty() && rest[name.len()..].starts_with('"') {
                    read.push((name, path.clone()));
                }
            }
        }
    }
    assert!(read.iter().any(|(n, _)| n == "KTHW_ARTIFACTS_DIR"), "the scan finds what tests read: {read:?}");
    let lost: Vec<&(String, String)> = read
        .iter()
        .filter(|(n, _)| !n.starts_with("KTHW_") && !passed.contains(&n.as_str()) && !root_has.contains(&n.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "read by our code but dropped by sudo: add to PASS_THROUGH in scripts/nightly-shard: {lost:?}"
    );
    // A command word that is kthw's CLI (`kthw`, `target/debug/kthw`) or nextest; `_kthw/` paths are not.
    let runs_kthw_or_tests =
        |l: &str| l.split_whitespace().any(|w| w == "kthw" || w.ends_with("/kthw") || w.starts_with("cargo-nextest"));
    assert!(runs_kthw_or_tests("sudo env PATH=$PATH target/debug/kthw artifacts fetch --set seed"));
    assert!(!runs_kthw_or_tests("sudo chown -R 1000:1000 _kthw target"));
    for name in workflow_names() {
        for l in workflow(&name).lines().filter(|l| l.contains("sudo")) {
            assert!(
                !runs_kthw_or_tests(l),
                "{name}: `{}` runs kthw or the tests as root past scripts/nightly-shard's one list",
                l.trim()
            );
        }
    }
}

/// The nightly must not pass under TCG into its timeouts; pull requests run wherever there is no KVM.
#[test]
fn the_nightly_requires_kvm_and_pull_requests_do_not() {
    // Our nightly's shards, and a user's run of kthw-tests.yml, the same way.
    for (name, job) in [("nightly.yml", "  test:\n"), ("kthw-tests.yml", "  tests:\n")] {
        let text = workflow(name);
        assert!(text.contains("KTHW_ACCEL: kvm"), "{name} forces KVM");
        assert!(text.contains("scripts/require-kvm"), "{name} checks /dev/kvm before anything else");
        let first_steps: Vec<&str> = text
            .split(job)
            .nth(1)
            .unwrap()
            .lines()
            .filter(|l| l.contains("- name:") || l.contains("- uses:"))
            .collect();
        let kvm = first_steps.iter().position(|l| l.contains("Require a usable KVM")).expect("the KVM step");
        let setup = first_steps.iter().position(|l| l.contains("Host prerequisites")).expect("the setup step");
        assert!(kvm < setup, "{name}: the KVM check comes before the minutes of setup: {first_steps:#?}");
    }
    assert!(!workflow("pr.yml").contains("KTHW_ACCEL"), "pull requests let the probe choose");
}
