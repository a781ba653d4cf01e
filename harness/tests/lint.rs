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
