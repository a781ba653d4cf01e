//! The unit tier lints what cargo does not compile, so that a broken workflow fails here and not at 3 a.m.:
//! the GitHub workflows with actionlint (which also runs shellcheck on their `run:` steps when it is on PATH)
//! and the shell scripts with shellcheck. A missing tool skips the test, printing why; under `CI=true` it fails.
//! It also holds the rules that keep the tests honest, which no compiler checks: one skip helper, fixtures
//! that say where they came from, artifact sums that say where they were published.

use std::path::{Path, PathBuf};
use std::process::Command;

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
    for (path, text) in rust_sources().iter().filter(|(p, _)| p != THIS_FILE) {
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

// The rules that keep tests honest (issue 23): a skip that cannot hide under CI, fixtures that say where they
// came from, artifact sums that say where they were published. Each rule is a function over text, so a test
// beside it shows it catches a violation.

/// The repository's own Rust sources (the workspace's and the example downstream crate's), relative to the
/// root, sorted.
fn rust_sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
            let p = e.unwrap().path();
            // A crate built with its own target directory inside (examples/downstream without
            // CARGO_TARGET_DIR) holds generated sources there: build output, not ours.
            if p.is_dir() && p.file_name().is_some_and(|n| n != "target") {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    // The example downstream crate is outside the workspace but is ours, and what users copy: same rules.
    for krate in ["harness", "scenarios", "cli", "tests", "bench", "examples/downstream"] {
        walk(&repo().join(krate), &mut files);
    }
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
            (p.strip_prefix(repo()).unwrap().display().to_string(), text)
        })
        .collect()
}

/// Where the one skip helper lives, and this file, whose rules and tests name what they forbid.
const SKIP_HELPER: &str = "harness/src/testing.rs";
const THIS_FILE: &str = "harness/tests/lint.rs";

/// Lines of `text` (the file `path`) that skip around `kthw::testing::needs`: printing the skip marker,
/// reading `CI` to decide, or returning early from a test because an environment variable is set.
fn skip_violations(path: &str, text: &str) -> Vec<String> {
    if path == SKIP_HELPER {
        return Vec::new();
    }
    let marker = concat!("SKIP", "PED");
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let env_return = code.starts_with("if std::env::var")
            && lines[i + 1..].iter().take(3).any(|l| l.trim() == "return;" || l.trim().starts_with("return "));
        if code.contains(marker) || code.contains("var(\"CI\")") || code.contains("var_os(\"CI\")") || env_return {
            found.push(format!("{path}:{}: {}", i + 1, code));
        }
    }
    found
}

#[test]
fn every_skip_goes_through_the_one_helper_that_fails_under_ci() {
    let found: Vec<String> =
        rust_sources().iter().filter(|(p, _)| p != THIS_FILE).flat_map(|(p, t)| skip_violations(p, t)).collect();
    assert!(found.is_empty(), "skip through kthw::testing::needs (or kthw_tests::host_prerequisite):\n{found:#?}");
}

#[test]
fn a_skip_of_its_own_is_caught() {
    let own = "fn t() {\n    if which(\"cpio\").is_none() {\n        eprintln!(\"SKIPPED: no cpio\");\n        return;\n    }\n}\n";
    assert_eq!(skip_violations("harness/src/x.rs", own).len(), 1);
    let ci = "    assert!(!std::env::var(\"CI\").is_ok());\n";
    assert_eq!(skip_violations("tests/tests/vm/x.rs", ci).len(), 1);
    let silent = "    if std::env::var_os(\"KTHW_ACCEL\").is_some() {\n        return;\n    }\n";
    assert_eq!(skip_violations("harness/src/accel.rs", silent).len(), 1, "a silent early return is a skip too");
    let helper = "    let Some(()) = kthw::testing::needs(kthw::testing::on_path(\"cpio\", \"t\")) else { return };\n";
    assert!(skip_violations("harness/src/x.rs", helper).is_empty());
    assert!(skip_violations(SKIP_HELPER, own).is_empty(), "the helper itself prints the marker");
}

/// A comment names where a fixture came from: a URL, `owner/repo@ref:path`, a local source of the project
/// (the seed, or tests/fixtures/README.md's table), or says it was written by hand.
fn names_an_origin(comment: &str) -> bool {
    comment.contains("https://")
        || comment.contains("http://")
        || cites_repo_ref_path(comment)
        || comment.to_lowercase().contains("written by hand")
        || comment.contains("shared/seed/")
        || comment.contains("tests/fixtures/README.md")
}

/// Whether `text` cites a file at a version: a word `owner/repo@ref:path`.
fn cites_repo_ref_path(text: &str) -> bool {
    text.split_whitespace().any(|w| {
        let w = w.trim_matches(|c: char| "()`,;\"'".contains(c));
        w.split_once('@').is_some_and(|(repo, rest)| {
            repo.split('/').count() == 2
                && !repo.starts_with('/')
                && rest.split_once(':').is_some_and(|(r, p)| !r.is_empty() && !p.is_empty())
        })
    })
}

/// What is wrong with the origins of one case of the classifier's corpus (harness/src/diagnosis/corpus.toml,
/// upstream's words in public wrappings, written here): `format` must cite upstream's source as
/// `owner/repo@ref:path`, `wrapping` must be a public page (a URL).
fn corpus_origin_problems(format: &str, wrapping: &str) -> Vec<&'static str> {
    let mut problems = Vec::new();
    if !cites_repo_ref_path(format) {
        problems.push("format cites no upstream source as owner/repo@ref:path");
    }
    if !wrapping.starts_with("https://") {
        problems.push("wrapping names no public page (https://...)");
    }
    problems
}

#[test]
fn every_corpus_case_names_where_its_words_and_its_wrapping_come_from() {
    let path = repo().join("harness/src/diagnosis/corpus.toml");
    let corpus: toml::Value = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let cases = corpus["case"].as_array().expect("[[case]] entries");
    let mut found = Vec::new();
    for c in cases {
        let field = |k: &str| c.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
        for p in corpus_origin_problems(&field("format"), &field("wrapping")) {
            found.push(format!("{}: {p}", field("name")));
        }
    }
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn a_corpus_case_without_origins_is_caught() {
    let upstream = "kubernetes/kubernetes@v1.32.4:pkg/kubelet/images/image_manager.go (\"Pulling image %q\")";
    assert!(corpus_origin_problems(upstream, "https://github.com/cilium/cilium/issues/16097").is_empty());
    assert_eq!(corpus_origin_problems("the kubelet's image manager", "https://example.org/x").len(), 1);
    assert_eq!(corpus_origin_problems(upstream, "a blog post").len(), 1);
}

/// Test code's multi-line string literals bound to a name (a `const`, `static` or `let` whose literal runs
/// past its line), each without an origin in the comment lines directly above it. Test code is a crate's
/// `tests/` directory, a `tests.rs`/`test_*.rs` module, or a file from its `#[cfg(test)]` on.
fn fixture_violations(path: &str, text: &str) -> Vec<String> {
    let file = path.rsplit('/').next().unwrap_or(path);
    let mut in_test = path.contains("/tests/") || file == "tests.rs" || file.starts_with("test_");
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        in_test |= line.contains("#[cfg(test)]");
        let code = line.trim_start();
        let bound = ["const ", "pub const ", "static ", "let "].iter().any(|k| code.starts_with(k));
        let Some((_, literal)) = code.split_once("= ").filter(|_| in_test && bound) else { continue };
        let open_ended = if let Some(raw) = literal.strip_prefix('r') {
            let hashes = raw.chars().take_while(|c| *c == '#').count();
            let body = &raw[hashes..];
            body.starts_with('"') && !body[1..].contains(&format!("\"{}", "#".repeat(hashes)))
        } else if let Some(body) = literal.strip_prefix('"') {
            let mut escaped = false;
            let mut closed = false;
            for c in body.chars() {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => {
                        closed = true;
                        break;
                    }
                    _ => {}
                }
            }
            !closed
        } else {
            false
        };
        if !open_ended {
            continue;
        }
        let comment: Vec<&str> =
            lines[..i].iter().rev().take_while(|l| l.trim_start().starts_with("//")).copied().collect();
        if !names_an_origin(&comment.join(" ")) {
            found.push(format!("{path}:{}: {}", i + 1, code.chars().take(80).collect::<String>()));
        }
    }
    found
}

#[test]
fn every_fixture_names_its_origin() {
    let found: Vec<String> =
        rust_sources().iter().filter(|(p, _)| p != THIS_FILE).flat_map(|(p, t)| fixture_violations(p, t)).collect();
    assert!(
        found.is_empty(),
        "say where each came from above it (a URL, owner/repo@ref:path, or \"written by hand to exercise X\"):\n{found:#?}"
    );
}

#[test]
fn a_fixture_without_an_origin_is_caught() {
    let bare = "#[cfg(test)]\nmod tests {\n    /// A kube-proxy node's rules (a public study note, cut).\n    const RULES: &str = \"*nat\n:KUBE-SERVICES - [0:0]\nCOMMIT\n\";\n}\n";
    assert_eq!(fixture_violations("scenarios/src/x.rs", bare).len(), 1);
    let cited = bare.replace("a public study note", "kubernetes/kubernetes@v1.32.4:pkg/proxy/iptables/proxier.go");
    assert!(fixture_violations("scenarios/src/x.rs", &cited).is_empty());
    let by_hand = bare.replace("a public study note, cut", "written by hand to exercise the chain finder");
    assert!(fixture_violations("scenarios/src/x.rs", &by_hand).is_empty());
    let raw = "#[cfg(test)]\nmod t {\n    let xml = r#\"<a>\n</a>\"#;\n}\n";
    assert_eq!(fixture_violations("scenarios/src/x.rs", raw).len(), 1, "raw strings too");
    let outside = "const HELP: &str = \"usage:\nkthw up\";\n";
    assert!(fixture_violations("cli/src/help.rs", outside).is_empty(), "only test code holds fixtures");
    let one_line = "#[cfg(test)]\nmod t {\n    let s = \"a\\nb\";\n}\n";
    assert!(fixture_violations("scenarios/src/x.rs", one_line).is_empty());
}

/// Fixture files are real output, so the table in their README says which command on which host gave each.
#[test]
fn every_fixture_file_is_in_the_readme_table() {
    let dir = repo().join("harness/tests/fixtures");
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    for f in files_in(&dir).iter().filter(|f| !f.ends_with("README.md")) {
        let name = f.file_name().unwrap().to_string_lossy();
        assert!(readme.contains(&format!("| `{name}` |")), "{name} has no row (command, host) in fixtures/README.md");
    }
}

/// What is wrong with one artifact's `source`: it must name a version (the artifact's version or upstream
/// tag) and an upstream location (a URL, or an `owner/repo` with a path in it).
fn source_problems(version: &str, upstream_version: &str, source: &str) -> Vec<&'static str> {
    let mut problems = Vec::new();
    let bare = |v: &str| v.trim_start_matches('v').to_string();
    if !(source.contains(version) || source.contains(upstream_version) || source.contains(&bare(upstream_version))) {
        problems.push("names no version of the artifact");
    }
    let words: Vec<&str> = source.split_whitespace().map(|w| w.trim_matches(|c: char| "(),;`\"".contains(c))).collect();
    let owner_repo = words.iter().any(|w| {
        let parts: Vec<&str> = w.split('/').collect();
        parts.len() >= 2
            && parts[..2]
                .iter()
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
    });
    let path = words.iter().any(|w| w.contains('/') && w.rsplit('/').next().is_some_and(|f| f.contains('.')));
    if !(source.contains("https://") || (owner_repo && path)) {
        problems.push("names no upstream location (a URL, or owner/repo and a path)");
    }
    problems
}

#[test]
fn every_artifact_source_names_a_version_and_an_upstream_location() {
    let path = repo().join("harness/artifacts.toml");
    let manifest: toml::Value = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let artifacts = manifest["artifact"].as_array().expect("[[artifact]] entries");
    assert!(!artifacts.is_empty());
    let mut found = Vec::new();
    for a in artifacts {
        let field = |k: &str| a.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
        let (name, set) = (field("name"), field("set"));
        for p in source_problems(&field("version"), &field("upstream_version"), &field("source")) {
            found.push(format!("{set} {name}: source {p}"));
        }
    }
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn a_source_without_a_version_or_a_location_is_caught() {
    assert_eq!(
        source_problems("1.32.4", "v1.32.4", "the changelog, read at some point"),
        ["names no version of the artifact", "names no upstream location (a URL, or owner/repo and a path)"]
    );
    assert_eq!(source_problems("1.32.4", "v1.32.4", "kubernetes/kubernetes CHANGELOG/CHANGELOG-1.32.md").len(), 1);
    assert!(
        source_problems("1.32.4", "v1.32.4", "kubernetes/kubernetes CHANGELOG/CHANGELOG-1.32.md, v1.32.4").is_empty()
    );
    assert!(source_problems(
        "3.5.21",
        "v3.5.21",
        "https://github.com/etcd-io/etcd/releases/download/v3.5.21/SHA256SUMS"
    )
    .is_empty());
}

// The nightly's timeouts (issue 29): what nextest applies to each tier under each profile, read from
// .config/nextest.toml by nextest's own precedence, and a scenario's deadlines ending before nextest's.

/// A `slow-timeout`: its period in seconds and how many periods before nextest terminates the test (None:
/// never), and where it came from.
#[derive(Debug, PartialEq, Eq)]
struct SlowTimeout {
    period: u64,
    terminate_after: Option<u64>,
    from: String,
}

impl SlowTimeout {
    fn terminates_after(&self) -> Option<u64> {
        self.terminate_after.map(|n| n * self.period)
    }
}

fn seconds(text: &str) -> u64 {
    let (n, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = n.parse().unwrap_or_else(|_| panic!("a duration lint.rs cannot read: {text:?}"));
    match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => panic!("a duration unit lint.rs cannot read: {text:?}"),
    }
}

fn slow_timeout(value: &toml::Value, from: String) -> SlowTimeout {
    match value {
        toml::Value::String(period) => SlowTimeout { period: seconds(period), terminate_after: None, from },
        toml::Value::Table(t) => SlowTimeout {
            period: seconds(t["period"].as_str().expect("slow-timeout.period")),
            terminate_after: t.get("terminate-after").map(|n| n.as_integer().expect("an integer") as u64),
            from,
        },
        other => panic!("slow-timeout {other:?}"),
    }
}

/// Whether an override's filterset selects the tests of binary `binary`. Only what our config uses is read
/// (`binary(NAME)` terms joined by `|`): anything else fails here rather than being guessed.
fn filter_selects(filter: &str, binary: &str) -> bool {
    filter.split('|').map(str::trim).any(|term| {
        let name = term
            .strip_prefix("binary(")
            .and_then(|t| t.strip_suffix(')'))
            .unwrap_or_else(|| panic!("lint.rs reads only `binary(NAME) | ...` filters, not {filter:?}: extend it"));
        name == binary
    })
}

/// The setting `key` nextest applies to the tests of binary `binary` under `profile`, by the rules of
/// nexte.st docs/configuration/per-test-overrides, "Override precedence": the first matching override of the
/// profile that sets it, then the first matching override of `profile.default`, then the profile's own
/// setting, then the default profile's. None: nextest's built-in default applies.
fn effective<'a>(config: &'a toml::Value, profile: &str, binary: &str, key: &str) -> Option<(&'a toml::Value, String)> {
    let p = |name: &str| config.get("profile").and_then(|ps| ps.get(name));
    let from_overrides = |name: &str| {
        p(name)?.get("overrides")?.as_array()?.iter().enumerate().find_map(|(i, o)| {
            let filter = o.get("filter")?.as_str()?;
            (filter_selects(filter, binary) && o.get(key).is_some())
                .then(|| (&o[key], format!("profile.{name}.overrides[{i}] ({filter})")))
        })
    };
    from_overrides(profile)
        .or_else(|| from_overrides("default"))
        .or_else(|| p(profile)?.get(key).map(|v| (v, format!("profile.{profile}"))))
        .or_else(|| p("default")?.get(key).map(|v| (v, "profile.default".to_string())))
}

fn nextest_config() -> toml::Value {
    let path = repo().join(".config/nextest.toml");
    toml::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))).unwrap()
}

fn effective_slow_timeout(config: &toml::Value, profile: &str, binary: &str) -> SlowTimeout {
    let (value, from) = effective(config, profile, binary, "slow-timeout")
        .unwrap_or_else(|| panic!("no slow-timeout for {binary} under {profile}: nextest's default never terminates"));
    slow_timeout(value, from)
}

/// Example from the docs' own rules, written by hand: a profile whose override sets only the test group
/// inherits the default profile's override's timeout, not its own global one (the nightly's bug, issue 29).
#[test]
fn the_precedence_reader_follows_nextests_rules() {
    let config: toml::Value = toml::from_str(
        "[profile.default]\nslow-timeout = \"60s\"\n[[profile.default.overrides]]\nfilter = 'binary(vm)'\n\
         slow-timeout = { period = \"120s\", terminate-after = 8 }\n[profile.n]\n\
         slow-timeout = { period = \"300s\", terminate-after = 6 }\n[[profile.n.overrides]]\n\
         filter = 'binary(vm) | binary(cluster)'\ntest-group = \"vm\"\n",
    )
    .unwrap();
    let vm = effective_slow_timeout(&config, "n", "vm");
    assert_eq!(
        (vm.period, vm.terminate_after, vm.from.as_str()),
        (120, Some(8), "profile.default.overrides[0] (binary(vm))")
    );
    let cluster = effective_slow_timeout(&config, "n", "cluster");
    assert_eq!((cluster.period, cluster.terminate_after, cluster.from.as_str()), (300, Some(6), "profile.n"));
    assert_eq!(effective_slow_timeout(&config, "default", "lint").terminate_after, None);
    assert_eq!(effective(&config, "n", "vm", "test-group").map(|(v, _)| v.as_str()), Some(Some("vm")));
}

/// Every tier that boots VMs takes its timeouts and its one-thread group from each profile's own settings,
/// and shows what it gets (`cargo nextest run -p kthw --test lint -- --nocapture` prints the table).
#[test]
fn each_profile_gives_the_vm_tiers_its_own_timeouts_and_the_vm_group() {
    let config = nextest_config();
    for profile in ["default", "ci", "nightly"] {
        for binary in ["lint", "cli", "libvirt", "ssh", "vm", "cluster", "scenarios"] {
            let t = effective_slow_timeout(&config, profile, binary);
            println!("{profile:8} {binary:10} {:>4} s x {:?} from {}", t.period, t.terminate_after, t.from);
            assert!(t.terminate_after.is_some(), "{profile} {binary}: a hung test must be ended: {t:?}");
            if ["vm", "cluster", "scenarios"].contains(&binary) {
                assert!(
                    t.from.starts_with(&format!("profile.{profile}")),
                    "{profile} {binary}: the timeout comes from {}, not from the {profile} profile",
                    t.from
                );
                let group = effective(&config, profile, binary, "test-group").map(|(v, _)| v.as_str());
                assert_eq!(group, Some(Some("vm")), "{profile} {binary}: one VM test at a time");
            }
        }
    }
    let nightly = effective_slow_timeout(&config, "nightly", "cluster");
    let ci = effective_slow_timeout(&config, "ci", "cluster");
    assert!(nightly.terminates_after() >= ci.terminates_after(), "the nightly's clusters get at least CI's time");
}

/// The deadlines a scenario's module writes (`Duration::from_secs(N)`, before its tests), summed: each wait
/// can run to its deadline one after the other. By file name.
fn scenario_deadlines() -> Vec<(String, u64)> {
    let mut found = Vec::new();
    for file in files_in(&repo().join("scenarios/src")) {
        let text = std::fs::read_to_string(&file).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        let total: u64 = code
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .flat_map(|l| l.split("Duration::from_secs(").skip(1))
            .filter_map(|rest| rest.split(')').next()?.trim().parse::<u64>().ok())
            .sum();
        found.push((file.file_name().unwrap().to_string_lossy().into_owned(), total));
    }
    found
}

/// A fresh cluster of the seed through `ready` (or a golden copy of one) before a scenario starts: an
/// allowance for a KVM runner, not a measurement (no KVM runner has run the cluster tier yet).
const BRING_UP: u64 = 900;

/// Why a scenario module whose waits add up to `waits` seconds cannot leave its bundle under `config`'s nightly
/// profile: its waits, the bring-up before them and the bundle of the seed's cluster must all end before
/// nextest's terminate-after. None when they do.
fn scenario_overruns(config: &toml::Value, module: &str, waits: u64) -> Option<String> {
    let bundle = kthw::bundle::collect_budget(kthw::spec::ClusterSpec::default().nodes.len()).as_secs();
    let need = waits + BRING_UP + bundle;
    let nightly = effective_slow_timeout(config, "nightly", "scenarios");
    let given = nightly.terminates_after().unwrap_or(u64::MAX);
    println!(
        "{module}: {waits} s of waits + {BRING_UP} s to bring up + {bundle} s of bundle = {need} s; nextest: {given} s"
    );
    (need >= given).then(|| {
        format!(
            "under the nightly profile nextest ends a scenario after {given} s ({}), but {module} may wait {waits} s, \
             bring-up {BRING_UP} s and its bundle {bundle} s: raise terminate-after in .config/nextest.toml",
            nightly.from
        )
    })
}

/// A scenario that times out must still leave its bundle (scenarios/src/run.rs makes one for a command past its
/// deadline): every scenario module's waits fit under the nightly's timeout with room for it.
#[test]
fn a_timed_out_scenario_still_has_time_for_its_bundle() {
    let deadlines = scenario_deadlines();
    let connectivity = deadlines.iter().find(|(f, _)| f == "connectivity.rs").expect("connectivity.rs").1;
    assert!(connectivity >= 1800, "connectivity's `cilium connectivity test` deadline is read: {deadlines:?}");
    let config = nextest_config();
    let overruns: Vec<String> =
        deadlines.iter().filter_map(|(module, waits)| scenario_overruns(&config, module, *waits)).collect();
    assert!(overruns.is_empty(), "{overruns:#?}");
}

#[test]
fn a_scenario_longer_than_nextest_allows_is_caught() {
    let config: toml::Value = toml::from_str(
        "[[profile.nightly.overrides]]\nfilter = 'binary(scenarios)'\nslow-timeout = { period = \"300s\", terminate-after = 6 }\n",
    )
    .unwrap();
    let said = scenario_overruns(&config, "connectivity.rs", 1830).expect("1830 s of waits do not fit 30 min");
    assert!(said.contains("1800 s (profile.nightly.overrides[0]") && said.contains("connectivity.rs"), "{said}");
    assert_eq!(scenario_overruns(&config, "pod_cidr.rs", 60), None, "a minute of waits fits");
}

// `just test` builds the example downstream crate (examples/downstream, a workspace of its own) in the
// workspace's target directory, so that it compiles no dependency a second time: that holds only while its
// dev profile is the workspace's. kthw itself is a member here and a dependency there, where
// `[profile.dev.package."*"]` would optimise it, so the example gives kthw the members' settings by name.

/// The `[profile]` table of the manifest at `path` (relative to the root).
fn profile_of(path: &str) -> toml::Table {
    let file = repo().join(path);
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
    let doc: toml::Table = text.parse().unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    doc.get("profile").and_then(|p| p.as_table()).cloned().unwrap_or_default()
}

#[test]
fn the_example_downstream_crate_builds_in_the_workspaces_profile() {
    let ours = profile_of("Cargo.toml");
    let mut theirs = profile_of("examples/downstream/Cargo.toml");
    let dev = theirs.get_mut("dev").and_then(|d| d.as_table_mut()).expect("the example has [profile.dev]");
    let packages = dev.get_mut("package").and_then(|p| p.as_table_mut()).expect("per-package settings");
    let kthw = packages.remove("kthw").expect("the example names kthw's own settings");
    let members_debug = ours["dev"].get("debug").cloned().expect("the workspace's dev debug setting");
    let expected = toml::Table::from_iter([
        ("opt-level".to_string(), toml::Value::Integer(0)),
        ("debug".to_string(), members_debug),
    ]);
    assert_eq!(kthw.as_table(), Some(&expected), "kthw as the workspace builds its members");
    assert_eq!(theirs, ours, "examples/downstream/Cargo.toml's [profile] is the workspace's (plus kthw's line)");
}
