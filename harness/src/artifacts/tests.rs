//! The pinned manifest's promises, and the fetch/verify path against files served from this machine only
//! (a file:// URL and an HTTP server on 127.0.0.1), through test-double manifests.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;

use super::*;
use crate::pki::test_tools::{run, verifier_present};

#[test]
fn every_pinned_artifact_has_a_published_sum_with_its_source_and_the_spec_default_version() {
    let spec = ClusterSpec::default();
    let m = Manifest::pinned();
    for a in &m.artifacts {
        let sum = a.sum().unwrap_or_else(|e| panic!("{}: {e}", a.name));
        assert!(a.source.len() > 20, "{}: the source must say where {sum} was published", a.name);
        assert_eq!(a.spec_version(&spec), Some(a.version.as_str()), "{}: manifest and spec defaults disagree", a.name);
        assert!(a.locator().contains(&a.upstream_version), "{}: {} is not the pinned tag", a.name, a.locator());
    }
    for name in ["kubernetes-server", "kubernetes-node", "etcd", "cilium-cli", "cilium", "cilium-operator-generic"] {
        let a = m.get(name).unwrap_or_else(|| panic!("{name} must be pinned"));
        assert_eq!(a.upstream_version, format!("v{}", a.version), "{name} follows the spec version");
    }
    // The Kubernetes CHANGELOG publishes sha512s; etcd and cilium-cli publish sha256s.
    assert_eq!(m.get("kubernetes-server").unwrap().sum().unwrap().algorithm, Algorithm::Sha512);
    assert_eq!(m.get("etcd").unwrap().sum().unwrap().algorithm, Algorithm::Sha256);
    let images: Vec<&str> = m.artifacts.iter().filter(|a| a.kind == Kind::Image).map(|a| a.name.as_str()).collect();
    assert_eq!(images, ["cilium", "cilium-operator-generic", "cilium-envoy", "coredns", "pause"]);
    assert!(m.artifacts.iter().all(|a| !a.name.contains("proxy")), "nothing for kube-proxy");
}

#[test]
fn the_pinned_container_runtime_is_one_containerd_supports_for_kubernetes_1_32() {
    let m = Manifest::pinned();
    let version = |name: &str| {
        let a = m.get(name).unwrap_or_else(|| panic!("{name} must be pinned"));
        assert_eq!(a.phases, [Phase::Workers], "{name}: the workers phase installs it");
        assert!(a.source.contains("kubespray") && a.source.contains(".sha256"), "{name}: {}", a.source);
        a.upstream_version.trim_start_matches('v').split('.').map(|p| p.parse().unwrap()).collect::<Vec<u32>>()
    };
    // containerd/containerd RELEASES.md, "Kubernetes Support": 1.32 wants 2.1.0+, 2.0.1+, 1.7.24+ or 1.6.36+.
    let containerd = version("containerd");
    assert!(containerd[..2] == [1, 7] && containerd[2] >= 24, "{containerd:?}");
    // The runc containerd 1.7.27 is tested with (its script/setup/runc-version).
    assert_eq!(version("runc"), [1, 2, 5]);
    assert_eq!(version("cni-plugins"), [1, 6, 2]);
}

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
    assert_eq!(names(&spec, Phase::Coredns).len(), m.artifacts.len());
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

#[test]
fn fetch_verifies_a_good_file_and_list_then_shows_it_cached() {
    if !verifier_present("curl", "fetch_verifies_a_good_file_and_list_then_shows_it_cached") {
        return;
    }
    let src = tempfile::tempdir().unwrap();
    let (file, sum) = payload(src.path());
    let m = double(&format!("file://{}", file.display()), &sum);
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path().to_path_buf());
    let spec = ClusterSpec::default();

    let missing = cache.missing(&m, &spec, Phase::Etcd);
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0].command, format!("kthw artifacts fetch --dir {}", cache.dir.display()));

    let got = cache.fetch(&m.artifacts[0]).unwrap();
    assert_eq!(std::fs::read(&got).unwrap(), std::fs::read(&file).unwrap());
    assert_eq!(cache.state_of(&m.artifacts[0]), State::Cached);
    assert!(cache.missing(&m, &spec, Phase::Etcd).is_empty());
}

#[test]
fn a_mismatching_file_is_deleted_and_the_error_shows_both_sums() {
    if !verifier_present("curl", "a_mismatching_file_is_deleted_and_the_error_shows_both_sums") {
        return;
    }
    let src = tempfile::tempdir().unwrap();
    let (file, actual) = payload(src.path());
    let wrong = format!("sha256:{}", "0".repeat(64));
    let m = double(&format!("file://{}", file.display()), &wrong);
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path().to_path_buf());

    let err = cache.fetch(&m.artifacts[0]).unwrap_err();
    assert!(matches!(err, ArtifactError::Mismatch { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains(&wrong) && text.contains(&actual), "both sums must be shown: {text}");
    assert!(!cache.path_of(&m.artifacts[0]).exists(), "the mismatching file must be deleted");
    assert_eq!(cache.state_of(&m.artifacts[0]), State::Absent);

    // A file already in an air-gapped directory that does not match is deleted the same way.
    let placed = cache.path_of(&m.artifacts[0]);
    std::fs::create_dir_all(placed.parent().unwrap()).unwrap();
    std::fs::copy(&file, &placed).unwrap();
    assert_eq!(cache.state_of(&m.artifacts[0]), State::Unverified);
    assert!(matches!(cache.fetch(&m.artifacts[0]), Err(ArtifactError::Mismatch { .. })));
    assert!(!placed.exists());
}

/// Serves `body` once over HTTP on 127.0.0.1; returns the URL.
fn serve_once(body: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut req = [0u8; 4096];
        let _ = conn.read(&mut req);
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
        conn.write_all(head.as_bytes()).unwrap();
        conn.write_all(&body).unwrap();
    });
    format!("http://127.0.0.1:{port}/payload-v9.tar.gz")
}

#[test]
fn fetch_downloads_over_http_from_a_loopback_server_and_verifies() {
    if !verifier_present("curl", "fetch_downloads_over_http_from_a_loopback_server_and_verifies") {
        return;
    }
    let src = tempfile::tempdir().unwrap();
    let (file, sum) = payload(src.path());
    let m = double(&serve_once(std::fs::read(&file).unwrap()), &sum);
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path().to_path_buf());
    let got = cache.fetch(&m.artifacts[0]).unwrap();
    assert_eq!(got, dir.path().join("payload/v9/payload-v9.tar.gz"));
    assert_eq!(cache.state_of(&m.artifacts[0]), State::Cached);
}

#[test]
fn an_unreachable_url_fails_naming_it() {
    if !verifier_present("curl", "an_unreachable_url_fails_naming_it") {
        return;
    }
    // A loopback port nothing listens on: refused at once, and nothing leaves this machine.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/etcd-v9-linux-amd64.tar.gz");
    let m = double(&url, &format!("sha256:{}", "a".repeat(64)));
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path().to_path_buf());
    let err = cache.fetch(&m.artifacts[0]).unwrap_err().to_string();
    assert!(err.contains(&url) && err.contains("curl exited"), "{err}");
    assert!(err.contains("--artifacts-dir"), "the error says how to run air-gapped: {err}");
    assert!(!cache.path_of(&m.artifacts[0]).exists());
}

#[test]
fn an_artifact_without_a_published_sum_is_refused() {
    let m = Manifest::parse(
        r#"[[artifact]]
name = "unsummed"
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

#[test]
fn a_manifest_entry_needs_a_sum_or_a_reason() {
    let text = r#"[[artifact]]
name = "x"
kind = "file"
component = "etcd"
version = "1"
upstream_version = "v1"
url = "https://example.invalid/x"
source = "s"
phases = ["etcd"]
"#;
    let err = Manifest::parse(text, "t").unwrap_err().to_string();
    assert!(err.contains("no checksum"), "{err}");
    let short = text.replace("source", "checksum = \"sha256:abc\"\nsource");
    assert!(Manifest::parse(&short, "t").unwrap_err().to_string().contains("hex digits"));
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
}
