//! The lock: checksum files in their publishers' forms (real lines transcribed, each with its source), the
//! chart's values read as Cilium publishes them, the resolver against a stand-in of upstream's layout on
//! loopback, the lock's round trip, and every refusal.

use super::stand_in::StandIn;
use super::*;
use crate::artifacts::published_tests::PUBLISHED;
use crate::artifacts::test_server::quick;
use crate::artifacts::{Algorithm, Cache, Kind, Mirror, State};
use crate::spec::{ClusterSpec, VersionSet};

// ---------------------------------------------------------------------------------------------------------
// Checksum files, as the publishers write them.

/// dl.k8s.io's `kubernetes-server-linux-amd64.tar.gz.sha512` for v1.32.4 holds only this digest: the value is
/// the v1.32.4 "Server Binaries" sha512 of kubernetes/kubernetes CHANGELOG/CHANGELOG-1.32.md (read at commit
/// 030880a5dc5449403c6d1f0aa146a7dc21d6c6dc, as harness/artifacts.toml pins it), the bare form is the one
/// kubernetes/website's install-kubectl-linux.md checks with `echo "$(cat kubectl.sha256)  kubectl" |
/// sha256sum --check`.
const K8S_SERVER_1_32_4_SHA512: &str = "06c42d365aa4336881c81893d415a9f2be61857f9db36425e2a6d58fb016b4c1dbe2c51b98848adbbedb0f624f6648d1e93f65b2c94224d683f679754b108409";

/// cilium-cli v0.18.4's `cilium-linux-amd64.tar.gz.sha256sum`: `sha256sum cilium-linux-amd64.tar.gz` run in
/// the release directory (cilium/cilium-cli Makefile at v0.19.7, line 74), with v0.18.4's sum as
/// kubernetes-sigs/kubespray checksums.yml (commit 46dbdd3994b32640bcd806b0097f50e8fdf1d514) copies it.
const CILIUM_CLI_0_18_4_LINE: &str =
    "6d7d2831380e8741cd46ef92e8f5132c66864311432fae5ab572608ca2d69353  cilium-linux-amd64.tar.gz\n";

/// etcd v3.5.21's SHA256SUMS line for the linux-amd64 tarball (the sum as kubespray's checksums.yml copies it
/// from that file, at the commit above), among the lines for its other assets.
const ETCD_3_5_21_SUMS: &str =
    "0000000000000000000000000000000000000000000000000000000000000000  etcd-v3.5.21-darwin-arm64.zip\n\
adddda4b06718e68671ffabff2f8cee48488ba61ad82900e639d108f2148501c  etcd-v3.5.21-linux-amd64.tar.gz\n";

#[test]
fn each_publishers_sum_file_is_read_in_the_form_it_publishes() {
    let dl = parse_sum_file(K8S_SERVER_1_32_4_SHA512, SumForm::BareHex, Algorithm::Sha512, "x").unwrap();
    let pinned = Manifest::pinned().for_set(VersionSet::Seed);
    assert_eq!(Some(dl.to_string()), pinned.get("kubernetes-server").unwrap().checksum);
    let cli =
        parse_sum_file(CILIUM_CLI_0_18_4_LINE, SumForm::Coreutils, Algorithm::Sha256, "cilium-linux-amd64.tar.gz")
            .unwrap();
    assert_eq!(Some(cli.to_string()), pinned.get("cilium-cli").unwrap().checksum);
    let etcd =
        parse_sum_file(ETCD_3_5_21_SUMS, SumForm::Coreutils, Algorithm::Sha256, "etcd-v3.5.21-linux-amd64.tar.gz")
            .unwrap();
    assert_eq!(Some(etcd.to_string()), pinned.get("etcd").unwrap().checksum);
    // sha256sum's binary-mode marker and a `./` the publisher's shell added are the same file.
    let binary = CILIUM_CLI_0_18_4_LINE.replace("  ", " *./");
    assert_eq!(
        parse_sum_file(&binary, SumForm::Coreutils, Algorithm::Sha256, "cilium-linux-amd64.tar.gz").unwrap(),
        cli
    );
}

#[test]
fn a_sum_file_in_a_form_its_publisher_never_used_is_refused_saying_what_was_expected() {
    let hex = CILIUM_CLI_0_18_4_LINE.split_whitespace().next().unwrap();
    let cases = [
        // BSD's `sha256sum --tag` form: none of these publishers writes it.
        (format!("SHA256 (cilium-linux-amd64.tar.gz) = {hex}\n"), SumForm::Coreutils, Algorithm::Sha256, "sha256sum's"),
        // A sha256sum line where dl.k8s.io publishes the bare digest.
        (CILIUM_CLI_0_18_4_LINE.to_string(), SumForm::BareHex, Algorithm::Sha256, "bare hex"),
        // A sha256 where the sha512 file is asked for.
        (hex.to_string(), SumForm::BareHex, Algorithm::Sha512, "128 hex digits"),
        // An HTML error page served with 200.
        ("<html>rate limited</html>".to_string(), SumForm::BareHex, Algorithm::Sha512, "<html>"),
    ];
    for (text, form, algorithm, says) in cases {
        let err = parse_sum_file(&text, form, algorithm, "cilium-linux-amd64.tar.gz").unwrap_err();
        assert!(err.contains(says), "{text:?} as {form:?}: {err}");
    }
    let other =
        parse_sum_file(ETCD_3_5_21_SUMS, SumForm::Coreutils, Algorithm::Sha256, "etcd-v3.5.99-linux-amd64.tar.gz");
    assert!(other.unwrap_err().contains("no line for etcd-v3.5.99-linux-amd64.tar.gz"));
    let twice = format!("{CILIUM_CLI_0_18_4_LINE}{CILIUM_CLI_0_18_4_LINE}");
    assert!(parse_sum_file(&twice, SumForm::Coreutils, Algorithm::Sha256, "cilium-linux-amd64.tar.gz")
        .unwrap_err()
        .contains("2 lines"));
}

// ---------------------------------------------------------------------------------------------------------
// The chart.

/// values.yaml of the Cilium chart 1.17.4 as Cilium published it, composed of the lines that name its images
/// (transcribed in artifacts::published_tests::PUBLISHED with where each was read) under their parents.
fn published_values(set: VersionSet) -> String {
    let excerpt = |name: &str| PUBLISHED.iter().find(|p| p.set == set && p.name == name).unwrap().excerpt;
    format!(
        "image:\n{}operator:\n  image:\n{}envoy:\n  image:\n{}",
        excerpt("cilium"),
        excerpt("cilium-operator-generic"),
        excerpt("cilium-envoy")
    )
}

#[test]
fn the_charts_images_are_read_from_its_values_as_cilium_publishes_them() {
    for set in VersionSet::ALL {
        let images = chart_images(&published_values(set)).unwrap();
        let pinned = Manifest::pinned().for_set(set);
        for image in &images {
            let a = pinned.get(image.name).unwrap();
            assert_eq!(image.reference, a.locator(), "{set} {}", image.name);
            assert_eq!(Some(&image.digest), a.digest.as_ref(), "{set} {}", image.name);
            assert_eq!(image.tag, a.upstream_version, "{set} {}", image.name);
        }
        assert_eq!(images.len(), 3);
    }
    let by_tag = published_values(VersionSet::Seed).replacen("useDigest: true", "useDigest: false", 1);
    assert!(chart_images(&by_tag).unwrap_err().contains("image.useDigest is not true"));
    let keys = top_level_keys(&published_values(VersionSet::Seed)).unwrap();
    assert_eq!(keys, ["envoy", "image", "operator"]);
}

#[test]
fn the_helm_index_gives_the_archive_and_its_digest_and_names_a_missing_version() {
    let index = "apiVersion: v1\nentries:\n  cilium:\n  - version: 1.18.3\n    digest: ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789\n    urls:\n    - https://helm.cilium.io/cilium-1.18.3.tgz\n";
    let (url, digest) = index_entry(index, "cilium", "1.18.3").unwrap();
    assert_eq!(url, "https://helm.cilium.io/cilium-1.18.3.tgz");
    assert!(digest.starts_with("sha256:abcdef0123"));
    assert!(index_entry(index, "cilium", "1.18.99").unwrap_err().contains("no version 1.18.99"));
    assert!(index_entry("entries: {}\n", "cilium", "1.18.3").unwrap_err().contains("no entries.cilium"));
}

// ---------------------------------------------------------------------------------------------------------
// The resolver against the stand-in.

fn custom() -> Versions {
    Versions {
        kubernetes: "1.33.5".into(),
        // containerd's table recommends 2.1 (not 2.2) for Kubernetes 1.33.
        containerd: "2.1.5".into(),
        cilium: "1.18.3".into(),
        coredns: "1.12.1".into(),
        ..VersionSet::Current.pins()
    }
}

/// values.yaml of the stand-in chart: the 1.19.5 chart's image lines with other tags and digests, so the
/// resolved lock cannot have copied a preset's.
fn stand_in_values() -> String {
    published_values(VersionSet::Current)
        .replace("v1.19.5", "v1.18.3")
        .replace("20fbbc14ac20b55a292c0dcda5571bf31cde30a7dbc68c29db3e709390ab0732", &"1".repeat(64))
        .replace("be848a365776e07d0c5a895eda7aec928ddc52a5a1fa2f432fd7a286609e1db4", &"2".repeat(64))
        .replace("326f872e19ce8aa45170efbf583b3f301586ba3feead14b864676d4baf3b45ed", &"3".repeat(64))
}

struct Upstream {
    _dir: tempfile::TempDir,
    server: StandIn,
    sums: Vec<(String, String)>,
    coredns: String,
    pause: String,
}

fn upstream(v: &Versions) -> Upstream {
    let dir = tempfile::tempdir().unwrap();
    let server = StandIn::start(dir.path()).unwrap();
    let sums = server.publish(v, &stand_in_values());
    let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
    let coredns = server.put_manifest("coredns/coredns", &format!("v{}", v.coredns), index);
    let list = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}"#;
    let pause = server.put_manifest("pause", "3.10", list);
    Upstream { _dir: dir, server, sums, coredns, pause }
}

fn resolver(up: &Upstream, cache: Option<Cache>) -> (Resolver, tempfile::TempDir) {
    let scratch = tempfile::tempdir().unwrap();
    let mirror = Mirror::parse(&up.server.url()).unwrap();
    let resolver = Resolver {
        sources: Sources { files: Some(mirror), registry: None },
        download: quick(),
        scratch: scratch.path().to_path_buf(),
        cache,
    };
    (resolver, scratch)
}

#[test]
fn the_resolver_reads_every_sum_from_the_publishers_layout_and_every_digest_from_chart_and_registry() {
    let v = custom();
    let up = upstream(&v);
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(cache_dir.path().to_path_buf());
    let (resolver, _scratch) = resolver(&up, Some(cache.clone()));
    let Resolved { lock, asked } = resolver.resolve(&v, VersionSet::Current).unwrap();

    assert_eq!(lock.versions, v);
    for (url, sum) in &up.sums {
        let a = lock.artifacts.iter().find(|a| a.url.as_deref() == Some(url)).unwrap_or_else(|| panic!("{url}"));
        assert_eq!(a.checksum.as_deref(), Some(sum.as_str()), "{url}");
        assert_eq!(a.set, None);
        assert!(a.source.contains(&up.server.url()), "{}", a.source);
    }
    let image = |name: &str| lock.artifacts.iter().find(|a| a.name == name).unwrap();
    assert_eq!(image("cilium").locator(), "quay.io/cilium/cilium:v1.18.3");
    assert_eq!(image("cilium").digest, Some(format!("sha256:{}", "1".repeat(64))));
    assert_eq!(image("cilium-operator-generic").locator(), "quay.io/cilium/operator-generic:v1.18.3");
    assert!(image("cilium-envoy").source.contains("envoy.image.digest"));
    assert_eq!(image("coredns").locator(), "registry.k8s.io/coredns/coredns:v1.12.1");
    assert_eq!(image("coredns").digest.as_ref(), Some(&up.coredns));
    assert!(image("coredns").source.contains("application/vnd.oci.image.index.v1+json"));
    assert_eq!(image("pause").digest.as_ref(), Some(&up.pause));
    assert!(image("pause").source.contains("manifest.list.v2+json"), "a Docker list stays a list");
    // The CLI is the current preset's, so the connectivity test's images are its defaults.
    assert!(lock.artifacts.iter().any(|a| a.name == "connectivity-curl"));
    // Every artifact a phase needs in the preset is locked, with the same phases.
    for a in &Lock::preset(VersionSet::Current).artifacts {
        let locked = lock.artifacts.iter().find(|b| b.name == a.name).unwrap_or_else(|| panic!("{}", a.name));
        assert_eq!((&locked.phases, locked.kind), (&a.phases, a.kind), "{}", a.name);
    }
    assert!(lock.chart_keys.contains(&"envoy".to_string()));
    assert!(asked.iter().all(|u| u.starts_with(&up.server.url())), "only the stand-in was asked: {asked:?}");
    // The chart archive the resolve read is in the cache, verified: fetching the lock downloads it never again.
    let chart = image("cilium-chart");
    assert_eq!(cache.state_of(chart), State::Cached);
    assert_eq!(chart.url.as_deref(), Some("https://helm.cilium.io/cilium-1.18.3.tgz"));
    Manifest::check(&lock.artifacts, "resolved").unwrap();
}

#[test]
fn a_version_that_does_not_exist_upstream_is_refused_naming_the_url_that_answered_404() {
    let v = custom();
    let up = upstream(&v);
    let (resolver, _scratch) = resolver(&up, None);
    let missing = Versions { kubernetes: "1.33.99".into(), ..v.clone() };
    let err = resolver.resolve(&missing, VersionSet::Current).unwrap_err().to_string();
    assert!(err.contains("kubernetes 1.33.99"), "{err}");
    assert!(
        err.contains(&format!("{}/v1.33.99/kubernetes-server-linux-amd64.tar.gz.sha512 answered 404", up.server.url())),
        "{err}"
    );
    let no_chart = Versions { cilium: "1.18.99".into(), ..v.clone() };
    let err = resolver.resolve(&no_chart, VersionSet::Current).unwrap_err().to_string();
    assert!(err.contains("cilium 1.18.99") && err.contains("index.yaml answered 404"), "{err}");
    let no_tag = Versions { coredns: "1.99.0".into(), ..v };
    let err = resolver.resolve(&no_tag, VersionSet::Current).unwrap_err().to_string();
    assert!(err.contains("/v2/coredns/coredns/manifests/v1.99.0 answered 404"), "{err}");
}

#[test]
fn a_checksum_file_in_another_form_is_refused_naming_it_and_its_publisher() {
    let v = custom();
    let up = upstream(&v);
    let url = format!("https://dl.k8s.io/v{}/kubernetes-node-linux-amd64.tar.gz.sha512", v.kubernetes);
    up.server.put(&url, format!("{}  kubernetes-node-linux-amd64.tar.gz\n", "a".repeat(128)).as_bytes());
    let (resolver, _scratch) = resolver(&up, None);
    let err = resolver.resolve(&v, VersionSet::Current).unwrap_err().to_string();
    assert!(
        err.contains("kubernetes-node-linux-amd64.tar.gz.sha512 is not a checksum file in the form dl.k8s.io"),
        "{err}"
    );
    assert!(err.contains("bare hex"), "{err}");
}

// ---------------------------------------------------------------------------------------------------------
// The lock file.

#[test]
fn a_lock_round_trips_and_is_what_a_spec_beside_it_uses_until_its_versions_change() {
    let v = custom();
    let up = upstream(&v);
    let (resolver, _scratch) = resolver(&up, None);
    let lock = resolver.resolve(&v, VersionSet::Current).unwrap().lock;
    assert_eq!(Lock::parse(&lock.to_toml(), Path::new("x.lock")).unwrap(), lock);

    let dir = tempfile::tempdir().unwrap();
    let spec_path = dir.path().join("lab.toml");
    let toml =
        "[versions]\npreset = \"current\"\nkubernetes = \"1.33.5\"\ncontainerd = \"2.1.5\"\ncilium = \"v1.18.3\"\n\
                coredns = \"1.12.1\"\n";
    std::fs::write(&spec_path, toml).unwrap();
    let spec = ClusterSpec::load(&spec_path).unwrap();
    let err = for_spec(&spec.versions, Some(&spec_path)).unwrap_err().to_string();
    assert!(err.contains("have no lock") && err.contains("kthw versions lock --spec"), "{err}");

    lock.write(&lock_path(&spec_path)).unwrap();
    assert_eq!(lock_path(&spec_path), dir.path().join("lab.lock"));
    assert_eq!(for_spec(&spec.versions, Some(&spec_path)).unwrap(), lock);

    std::fs::write(&spec_path, toml.replace("1.33.5", "1.33.6")).unwrap();
    let changed = ClusterSpec::load(&spec_path).unwrap();
    let err = for_spec(&changed.versions, Some(&spec_path)).unwrap_err().to_string();
    assert!(err.contains("kubernetes 1.33.5 -> 1.33.6") && err.contains("nothing is re-resolved"), "{err}");

    // A preset needs no file: its lock ships with kthw.
    let preset = ClusterSpec::default();
    assert_eq!(for_spec(&preset.versions, None).unwrap(), Lock::preset(VersionSet::Seed));
}

#[test]
fn a_lock_that_is_not_one_or_is_newer_is_refused_saying_what_to_do() {
    let lock = Lock::preset(VersionSet::Seed);
    let text = lock.to_toml();
    assert_eq!(Lock::parse(&text, Path::new("seed.lock")).unwrap(), lock, "the shipped lock round-trips");
    let newer = text.replacen("format = 1", "format = 2", 1);
    assert!(matches!(Lock::parse(&newer, Path::new("a.lock")), Err(LockError::Newer { found: 2, .. })));
    let bad_sum = text.replacen("sha512:06c42d", "sha512:zz", 1);
    let err = Lock::parse(&bad_sum, Path::new("a.lock")).unwrap_err().to_string();
    assert!(err.contains("a.lock is not a kthw lock") && err.contains("kubernetes-server"), "{err}");
    assert!(Lock::parse("format = 1\n", Path::new("a.lock")).unwrap_err().to_string().contains("missing field"));
    // Every file of a preset's lock is a file with a published checksum.
    assert!(lock.artifacts.iter().filter(|a| a.kind == Kind::File).all(|a| a.checksum.is_some()));
}
