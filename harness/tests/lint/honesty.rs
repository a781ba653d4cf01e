//! The rules that keep tests honest (issue 23): a skip that cannot hide under CI, fixtures that say where they
//! came from, artifact sums that say where they were published. Each rule is a function over text, so a test
//! beside it shows it catches a violation.

use super::*;

/// The repository's own Rust sources (the workspace's and the example downstream crate's), relative to the
/// root, sorted.
pub(super) fn rust_sources() -> Vec<(String, String)> {
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
pub(super) const THIS_DIR: &str = "harness/tests/lint/";

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
    let found: Vec<String> = rust_sources()
        .iter()
        .filter(|(p, _)| !p.starts_with(THIS_DIR))
        .flat_map(|(p, t)| skip_violations(p, t))
        .collect();
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
    let found: Vec<String> = rust_sources()
        .iter()
        .filter(|(p, _)| !p.starts_with(THIS_DIR))
        .flat_map(|(p, t)| fixture_violations(p, t))
        .collect();
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
