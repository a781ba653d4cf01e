//! The pinned manifest's promises, and the fetch/verify path against an HTTP server on 127.0.0.1 only,
//! through test-double manifests.

use std::path::Path;

use super::cache::part;
use super::test_server::{quick, Reply, Server};
use super::*;
use crate::pki::test_tools::run;
use crate::spec::VersionSet;

#[test]
fn every_pinned_artifact_of_each_set_has_a_published_sum_with_its_source_and_that_sets_version() {
    let m = Manifest::pinned();
    assert_eq!(m.sets(), VersionSet::ALL, "the manifest pins every version set the spec can name");
    for set in VersionSet::ALL {
        let spec = ClusterSpec { versions: set.into(), ..ClusterSpec::default() };
        let m = m.for_set(set);
        for a in &m.artifacts {
            let sum = a.sum().unwrap_or_else(|e| panic!("{set} {}: {e}", a.name));
            // What a source must name (a version, an upstream location) is the lint tier's rule, tested there
            // against a violation: harness/tests/lint/ every_artifact_source_names_a_version_and_...
            assert!(!a.source.trim().is_empty(), "{set} {}: the source must say where {sum} was published", a.name);
            assert_eq!(
                a.spec_version(&spec).as_deref(),
                Some(a.version.as_str()),
                "{set} {}: not the set's version",
                a.name
            );
            assert!(
                a.locator().contains(&a.upstream_version),
                "{set} {}: {} is not the pinned tag",
                a.name,
                a.locator()
            );
        }
        for name in ["kubernetes-server", "kubernetes-node", "etcd", "cilium-cli", "cilium", "cilium-operator-generic"]
        {
            let a = m.get(name).unwrap_or_else(|| panic!("{set}: {name} must be pinned"));
            assert_eq!(a.upstream_version, format!("v{}", a.version), "{set} {name} follows the spec version");
        }
        // The Kubernetes CHANGELOG publishes sha512s; etcd, containerd and cilium-cli publish sha256s.
        assert_eq!(m.get("kubernetes-server").unwrap().sum().unwrap().algorithm, Algorithm::Sha512);
        assert_eq!(m.get("kubernetes-node").unwrap().sum().unwrap().algorithm, Algorithm::Sha512);
        for name in ["etcd", "containerd", "runc", "cni-plugins", "cilium-cli"] {
            assert_eq!(m.get(name).unwrap().sum().unwrap().algorithm, Algorithm::Sha256, "{set} {name}");
        }
        let images: Vec<&str> = m.artifacts.iter().filter(|a| a.kind == Kind::Image).map(|a| a.name.as_str()).collect();
        assert_eq!(
            images,
            [
                "cilium",
                "cilium-operator-generic",
                "cilium-envoy",
                "coredns",
                "pause",
                "connectivity-curl",
                "connectivity-json-mock"
            ],
            "{set}"
        );
        assert!(m.artifacts.iter().all(|a| !a.name.contains("proxy")), "nothing for kube-proxy");
    }
}

#[test]
fn the_sets_pin_the_same_artifacts_for_the_same_phases_and_the_current_set_is_newer() {
    let m = Manifest::pinned();
    // What an artifact is for: name, kind, component, phases, scenarios.
    type Shape = (String, Kind, String, Vec<Phase>, Vec<String>);
    let shape = |set| -> Vec<Shape> {
        let mut v: Vec<_> = m
            .for_set(set)
            .artifacts
            .into_iter()
            .map(|a| (a.name, a.kind, a.component, a.phases, a.scenarios))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    assert_eq!(shape(VersionSet::Seed), shape(VersionSet::Current), "a set swaps versions, never what is installed");
    let (seed, current) = (VersionSet::Seed.pins(), VersionSet::Current.pins());
    let newer = |a: &str, b: &str| {
        let parse = |v: &str| v.split('.').map(|p| p.parse::<u32>().unwrap()).collect::<Vec<_>>();
        parse(b) > parse(a)
    };
    for (what, s, c) in [
        ("kubernetes", &seed.kubernetes, &current.kubernetes),
        ("etcd", &seed.etcd, &current.etcd),
        ("cilium", &seed.cilium, &current.cilium),
        ("cilium_cli", &seed.cilium_cli, &current.cilium_cli),
        ("coredns", &seed.coredns, &current.coredns),
    ] {
        assert!(newer(s, c), "{what}: the current set's {c} is not newer than the seed's {s}");
    }
    // Each file of a set has its own place in the cache: the sets can be fetched side by side.
    let paths: std::collections::HashSet<_> =
        m.artifacts.iter().filter(|a| a.kind == Kind::File).map(|a| Cache::new("/c".into()).path_of(a)).collect();
    assert_eq!(paths.len(), m.artifacts.iter().filter(|a| a.kind == Kind::File).count());
}

/// The container runtime each set pins, as `[major, minor, patch]`.
fn runtime(set: VersionSet, name: &str) -> Vec<u32> {
    let m = Manifest::pinned().for_set(set);
    let a = m.get(name).unwrap_or_else(|| panic!("{set}: {name} must be pinned"));
    assert_eq!(a.phases, [Phase::Workers], "{name}: the workers phase installs it");
    assert!(a.source.contains("kubespray") && a.source.contains(".sha256"), "{name}: {}", a.source);
    a.upstream_version.trim_start_matches('v').split('.').map(|p| p.parse().unwrap()).collect()
}

#[test]
fn the_pinned_container_runtime_is_one_containerd_supports_for_that_sets_kubernetes() {
    // containerd/containerd RELEASES.md, "Kubernetes Support" (commit 301026e58c619e63d09c0ec411012e54c0124b03):
    // 1.32 wants 2.1.0+, 2.0.1+, 1.7.24+ or 1.6.36+; 1.35 wants 2.2.0+, 2.1.5+ or 1.7.28+.
    assert_eq!(VersionSet::Seed.pins().kubernetes, "1.32.4");
    let containerd = runtime(VersionSet::Seed, "containerd");
    assert!(containerd[..2] == [1, 7] && containerd[2] >= 24, "{containerd:?}");
    assert!(VersionSet::Current.pins().kubernetes.starts_with("1.35."));
    let containerd = runtime(VersionSet::Current, "containerd");
    assert!(containerd[..2] == [2, 2], "the newest containerd line recommended for 1.35: {containerd:?}");
    // The runc each containerd is tested with (its script/setup/runc-version: v1.7.27 -> v1.2.5, v2.2.7 -> v1.3.6).
    assert_eq!(runtime(VersionSet::Seed, "runc"), [1, 2, 5]);
    assert_eq!(containerd, [2, 2, 7]);
    assert_eq!(runtime(VersionSet::Current, "runc"), [1, 3, 6]);
    assert_eq!(runtime(VersionSet::Seed, "cni-plugins"), [1, 6, 2]);
    assert_eq!(runtime(VersionSet::Current, "cni-plugins"), [1, 9, 1]);
}

// What each image's reference and digest must be, from the source that publishes it: published_tests.rs.

#[test]
fn a_phase_needs_only_what_it_and_earlier_phases_use() {
    let m = Manifest::pinned();
    let names = |spec: &ClusterSpec, until: Phase| -> Vec<String> {
        m.needed_until(spec, until).into_iter().map(|a| a.name.clone()).collect()
    };
    let mut spec = ClusterSpec::default();
    assert!(names(&spec, Phase::Kubeconfigs).is_empty());
    assert_eq!(names(&spec, Phase::Etcd), ["etcd"]);
    assert_eq!(
        names(&spec, Phase::Workers),
        ["kubernetes-server", "kubernetes-node", "etcd", "pause", "containerd", "runc", "cni-plugins"]
    );
    let seed = m.for_set(VersionSet::Seed);
    let scenario_only = seed.artifacts.iter().filter(|a| a.phases.is_empty()).count();
    assert_eq!(names(&spec, Phase::Coredns).len(), seed.artifacts.len() - scenario_only);
    assert!(m.artifacts.iter().filter(|a| a.phases.is_empty()).all(|a| !a.scenarios.is_empty()));
    let current = ClusterSpec { versions: VersionSet::Current.into(), ..spec.clone() };
    let etcd = m.needed_until(&current, Phase::Etcd);
    assert_eq!(etcd.len(), 1);
    assert_eq!((etcd[0].set, etcd[0].version.as_str()), (Some(VersionSet::Current), "3.6.14"), "only the spec's set");
    spec.etcd_from = crate::spec::Origin::Debian;
    assert!(names(&spec, Phase::Etcd).is_empty(), "etcd from the image's Debian package needs no download");
    spec.containerd_from = crate::spec::Origin::Debian;
    assert_eq!(names(&spec, Phase::Workers), ["kubernetes-server", "kubernetes-node", "pause"], "nor containerd");
}

/// A manifest with one file artifact served from `url`, pinned to `checksum`.
fn double(url: &str, checksum: &str) -> Manifest {
    Manifest::parse(
        &format!(
            r#"[[artifact]]
name = "payload"
set = "seed"
kind = "file"
component = "etcd"
version = "3.5.21"
upstream_version = "v9"
url = "{url}"
checksum = "{checksum}"
source = "test double: the sum of the file this test wrote, taken by coreutils"
phases = ["etcd"]
"#
        ),
        "test double",
    )
    .unwrap()
}

fn payload(dir: &Path) -> (std::path::PathBuf, String) {
    let path = dir.join("payload-v9.tar.gz");
    std::fs::write(&path, b"not really a tarball, but bytes with a known sum\n".repeat(1000)).unwrap();
    let (ok, out, err) = run("sha256sum", &[path.to_str().unwrap()], dir);
    assert!(ok, "{err}");
    (path, format!("sha256:{}", out.split_whitespace().next().unwrap()))
}

/// A cache in a fresh directory that downloads with short timeouts and no proxy.
fn quick_cache(dir: &Path) -> Cache {
    Cache::new(dir.to_path_buf()).with_download(quick())
}

#[test]
fn fetch_downloads_verifies_and_list_then_shows_it_cached() {
    let src = tempfile::tempdir().unwrap();
    let (file, sum) = payload(src.path());
    let server = Server::start(std::fs::read(&file).unwrap(), &[]);
    let m = double(&server.url("/v9/payload-v9.tar.gz"), &sum);
    let dir = tempfile::tempdir().unwrap();
    let cache = quick_cache(dir.path());
    let spec = ClusterSpec::default();

    let missing = cache.missing(&m, &spec, Phase::Etcd);
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0].command, format!("kthw artifacts fetch --dir {}", cache.dir.display()));

    let got = cache.fetch(&m.artifacts[0]).unwrap();
    assert_eq!(got, dir.path().join("payload/v9/payload-v9.tar.gz"));
    assert_eq!(std::fs::read(&got).unwrap(), std::fs::read(&file).unwrap());
    assert!(!part(&got).exists(), "the .part file was moved into place");
    assert_eq!(cache.state_of(&m.artifacts[0]), State::Cached);
    assert!(cache.missing(&m, &spec, Phase::Etcd).is_empty());
    assert!(cache.missing(&m, &spec, Phase::Etcd).is_empty());
    // Cached now: a second fetch asks the server nothing.
    cache.fetch(&m.artifacts[0]).unwrap();
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn a_truncated_download_resumes_and_is_verified() {
    let src = tempfile::tempdir().unwrap();
    let (file, sum) = payload(src.path());
    let server = Server::start(std::fs::read(&file).unwrap(), &[Reply::Truncate(10_000)]);
    let m = double(&server.url("/payload-v9.tar.gz"), &sum);
    let dir = tempfile::tempdir().unwrap();
    let cache = quick_cache(dir.path());
    cache.fetch(&m.artifacts[0]).unwrap();
    assert_eq!(cache.state_of(&m.artifacts[0]), State::Cached);
    let ranges: Vec<_> = server.requests().into_iter().map(|s| s.range).collect();
    assert_eq!(ranges, [None, Some("bytes=10000-".to_string())]);
}

#[test]
fn wrong_bytes_are_refused_deleted_and_the_error_shows_both_sums() {
    let src = tempfile::tempdir().unwrap();
    let (file, expected) = payload(src.path());
    let server = Server::start(std::fs::read(&file).unwrap(), &[Reply::Wrong]);
    let m = double(&server.url("/payload-v9.tar.gz"), &expected);
    let dir = tempfile::tempdir().unwrap();
    let cache = quick_cache(dir.path());

    let err = cache.fetch(&m.artifacts[0]).unwrap_err();
    let ArtifactError::Mismatch { actual, .. } = &err else { panic!("{err:?}") };
    let text = err.to_string();
    assert!(text.contains(&expected) && text.contains(actual.as_str()), "both sums must be shown: {text}");
    let path = cache.path_of(&m.artifacts[0]);
    assert!(!path.exists() && !part(&path).exists(), "the mismatching file must be deleted");
    assert_eq!(cache.state_of(&m.artifacts[0]), State::Absent);

    // The next fetch starts afresh (no Range: nothing was kept) and gets the right bytes.
    cache.fetch(&m.artifacts[0]).unwrap();
    assert_eq!(cache.state_of(&m.artifacts[0]), State::Cached);
    assert_eq!(server.requests().iter().map(|s| s.range.clone()).collect::<Vec<_>>(), [None, None]);
}

#[test]
fn a_mismatching_file_already_in_the_directory_is_deleted() {
    let src = tempfile::tempdir().unwrap();
    let (file, _) = payload(src.path());
    let m = double("https://upstream.invalid/payload-v9.tar.gz", &format!("sha256:{}", "0".repeat(64)));
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::air_gapped(dir.path().to_path_buf());
    let placed = cache.path_of(&m.artifacts[0]);
    std::fs::create_dir_all(placed.parent().unwrap()).unwrap();
    std::fs::copy(&file, &placed).unwrap();
    assert_eq!(cache.state_of(&m.artifacts[0]), State::Unverified);
    assert!(matches!(cache.fetch(&m.artifacts[0]), Err(ArtifactError::Mismatch { .. })));
    assert!(!placed.exists());
}

#[test]
fn a_404_fails_at_once_naming_the_url_and_how_to_run_air_gapped() {
    let server = Server::start(Vec::new(), &[Reply::Status(404)]);
    let url = server.url("/etcd-v9-linux-amd64.tar.gz");
    let m = double(&url, &format!("sha256:{}", "a".repeat(64)));
    let dir = tempfile::tempdir().unwrap();
    let cache = quick_cache(dir.path());
    let err = cache.fetch(&m.artifacts[0]).unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&url), "{text}");
    assert!(text.contains("--artifacts-dir") && text.contains("--mirror"), "says how to run air-gapped: {text}");
    let cause = std::error::Error::source(&err).expect("the HTTP failure is the source").to_string();
    assert!(cause.contains("404 Not Found") && !text.contains("404"), "the cause only in the chain: {text} / {cause}");
    assert_eq!(server.requests().len(), 1);
    assert!(!cache.path_of(&m.artifacts[0]).exists());
}

#[test]
fn an_unreachable_url_fails_after_the_retries() {
    // A loopback port nothing listens on: refused at once, and nothing leaves this machine.
    let refused = crate::artifacts::test_server::refused_port();
    let url = format!("http://127.0.0.1:{}/etcd-v9-linux-amd64.tar.gz", refused.port);
    let m = double(&url, &format!("sha256:{}", "a".repeat(64)));
    let dir = tempfile::tempdir().unwrap();
    let cache = quick_cache(dir.path());
    let err = cache.fetch(&m.artifacts[0]).unwrap_err();
    assert!(err.to_string().contains(&url), "{err}");
    let cause = std::error::Error::source(&err).unwrap().to_string();
    assert!(cause.contains("gave up after 4 attempts"), "{cause}");
    assert!(!cache.path_of(&m.artifacts[0]).exists());
}

#[test]
fn a_mirror_serves_each_file_at_its_upstream_path() {
    let src = tempfile::tempdir().unwrap();
    let (file, sum) = payload(src.path());
    let server = Server::start(std::fs::read(&file).unwrap(), &[]);
    // The upstream host is never contacted (and .invalid never resolves): the mirror replaces it.
    let m = double("https://upstream.invalid/releases/download/v9/payload-v9.tar.gz", &sum);
    let dir = tempfile::tempdir().unwrap();
    let mirror = Mirror::parse(&server.url("/mirror/")).unwrap();
    let cache = quick_cache(dir.path()).with_mirror(Some(mirror));
    assert_eq!(cache.url_of(&m.artifacts[0]), server.url("/mirror/releases/download/v9/payload-v9.tar.gz"));
    cache.fetch(&m.artifacts[0]).unwrap();
    assert_eq!(cache.state_of(&m.artifacts[0]), State::Cached);
    let paths: Vec<String> = server.requests().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, ["/mirror/releases/download/v9/payload-v9.tar.gz"]);
}

#[test]
fn images_are_pulled_by_index_digest_with_every_platform_from_upstream_or_the_mirror() {
    let m = Manifest::pinned();
    let cilium = m.get("cilium").unwrap();
    let digest = cilium.sum().unwrap();
    let to = Path::new("/cache/images/cilium-v1.17.4.oci.dir.part");
    let upstream = Cache::new("/cache".into()).skopeo_args(cilium, &digest, to);
    let from = format!("docker://quay.io/cilium/cilium@{digest}");
    assert_eq!(
        upstream,
        [
            "copy",
            "--quiet",
            "--all",
            "--preserve-digests",
            "--retry-times=5",
            from.as_str(),
            "dir:/cache/images/cilium-v1.17.4.oci.dir.part",
        ]
    );
    let mirror = Mirror::parse("http://127.0.0.1:5000/proxy").unwrap();
    let mirrored = Cache::new("/cache".into()).with_mirror(Some(mirror)).skopeo_args(cilium, &digest, to);
    assert!(mirrored.contains(&"--src-tls-verify=false".to_string()), "{mirrored:?}");
    assert!(mirrored.contains(&format!("docker://127.0.0.1:5000/proxy/cilium/cilium@{digest}")), "{mirrored:?}");
}

#[test]
fn an_artifact_without_a_published_sum_is_refused() {
    let m = Manifest::parse(
        r#"[[artifact]]
name = "unsummed"
set = "seed"
kind = "image"
component = "coredns"
version = "1.12.1"
upstream_version = "v1.12.1"
reference = "registry.example/unsummed:v1.12.1"
source = "test double"
missing_checksum = "the publisher lists no digest for this tag"
phases = ["coredns"]
"#,
        "test double",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::air_gapped(dir.path().to_path_buf());
    let err = cache.fetch(&m.artifacts[0]).unwrap_err();
    assert!(matches!(err, ArtifactError::NoChecksum { .. }), "{err}");
    let missing = cache.missing(&m, &ClusterSpec::default(), Phase::Coredns);
    assert!(missing[0].command.starts_with("none:"), "{}", missing[0].command);
}

/// Written by hand to exercise the refusal of a manifest entry with no sum.
const UNSUMMED: &str = r#"[[artifact]]
name = "x"
set = "seed"
kind = "file"
component = "etcd"
version = "1"
upstream_version = "v1"
url = "https://example.invalid/x"
source = "s"
phases = ["etcd"]
"#;

#[test]
fn a_name_pinned_twice_in_one_set_is_refused() {
    let one = UNSUMMED.replace("source", &format!("checksum = \"sha256:{}\"\nsource", "0".repeat(64)));
    let other_set = one.replace("\"seed\"", "\"current\"");
    assert_eq!(Manifest::parse(&format!("{one}\n{other_set}"), "t").unwrap().sets(), VersionSet::ALL);
    let err = Manifest::parse(&format!("{one}\n{one}"), "t").unwrap_err().to_string();
    assert!(err.contains("x: pinned more than once in the seed set"), "{err}");
    let unknown = one.replace("\"seed\"", "\"newest\"");
    let err = Manifest::parse(&unknown, "t").unwrap_err().to_string();
    assert!(err.contains("newest") && err.contains("current"), "{err}");
}

#[test]
fn a_manifest_entry_needs_a_sum_or_a_reason() {
    let text = UNSUMMED;
    let err = Manifest::parse(text, "t").unwrap_err().to_string();
    assert!(err.contains("no checksum"), "{err}");
    let short = text.replace("source", "checksum = \"sha256:abc\"\nsource");
    assert!(Manifest::parse(&short, "t").unwrap_err().to_string().contains("hex digits"));
}

/// A directory filled by hand (no `.verified` markers): the run's preflight hashes what is there. The right
/// bytes are verified in place; a stand-in is refused naming its sum and path, and left where it was.
#[test]
fn an_unverified_file_is_hashed_before_a_run_and_a_stand_in_is_refused_in_place() {
    let src = tempfile::tempdir().unwrap();
    let (file, sum) = payload(src.path());
    let m = double("https://example.invalid/v9/payload-v9.tar.gz", &sum);
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::air_gapped(dir.path().to_path_buf());
    let path = cache.path_of(&m.artifacts[0]);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"a stand-in\n").unwrap();
    let missing = cache.missing(&m, &ClusterSpec::default(), Phase::Etcd);
    let found = missing[0].found.as_deref().expect("what is there instead");
    assert!(found.starts_with("checksum mismatch: sha256:") && found.contains(&sum), "{found}");
    assert!(path.is_file(), "a stand-in in the user's directory is left where it was");
    assert_eq!(cache.state_of(&m.artifacts[0]), State::Unverified);

    std::fs::copy(&file, &path).unwrap();
    assert!(cache.missing(&m, &ClusterSpec::default(), Phase::Etcd).is_empty());
    assert_eq!(cache.state_of(&m.artifacts[0]), State::Cached, "verified once, marked so");
}

#[test]
fn air_gapped_directories_say_where_to_fetch_from() {
    let m = Manifest::pinned();
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::air_gapped(dir.path().to_path_buf());
    let missing = cache.missing(&m, &ClusterSpec::default(), Phase::Etcd);
    assert_eq!(missing.len(), 1);
    assert!(missing[0].command.contains("etcd-v3.5.21-linux-amd64.tar.gz"), "{}", missing[0].command);
    assert_eq!(missing[0].path, dir.path().join("etcd/v3.5.21/etcd-v3.5.21-linux-amd64.tar.gz"));
    // Fetching without `--set` fetches the seed's: the command for another set's artifact names its set.
    let current = ClusterSpec { versions: VersionSet::Current.into(), ..ClusterSpec::default() };
    let missing = Cache::new(dir.path().to_path_buf()).missing(&m, &current, Phase::Etcd);
    assert_eq!(missing[0].command, format!("kthw artifacts fetch --dir {} --set current", dir.path().display()));
}

#[test]
fn the_nightly_workflow_runs_every_version_set_and_sums_up_each() {
    let path = crate::testing::workspace_dir().join(".github/workflows/nightly.yml");
    let text = std::fs::read_to_string(path).unwrap();
    let names = VersionSet::NAMES;
    assert!(text.contains(&format!("versions: [{}]", names.join(", "))), "the test matrix runs every set");
    assert!(text.contains(&format!("SETS: \"{}\"", names.join(" "))), "the summary reads every set's reports");
    assert!(text.contains("KTHW_VERSIONS: ${{ matrix.versions }}"), "the tests read their set from the matrix");
    for set in names {
        let fetch = format!("run: target/debug/kthw artifacts fetch --set {set} --dir target/kthw-artifacts/{set}");
        assert!(text.contains(&fetch), "the build job fetches {set} in a step of its own, into its own directory");
        assert!(text.contains(&format!("key: kthw-artifacts-{set}-")), "{set} has a cache of its own");
        assert!(
            text.contains(&format!("id: fetch-{set}\n        continue-on-error: true")),
            "{set} failing stops nothing"
        );
    }
}
