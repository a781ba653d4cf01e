//! `kthw versions lock`, end to end, against a registry and a file server on loopback that serve upstream's
//! layout: a real registry (Debian's `docker-registry` on 127.0.0.1, filled here with an OCI index as CoreDNS
//! is served and a Docker v2 manifest list as pause is), and `kthw::lock::stand_in::StandIn`, a stand-in for
//! dl.k8s.io, GitHub releases and helm.cilium.io whose checksum files it computes itself in each publisher's
//! form. Then what the lock is for: the spec beside it validates and is what `kthw up` would use; a changed
//! spec makes the lock stale, refused before anything boots; a version upstream does not have is refused
//! naming the URL that answered 404. No VM is booted there; the last test boots two small nodes of versions
//! that are no preset, to show the lock stays with the cluster for the work that comes after `up`.

use std::path::Path;
use std::process::{Command, Output};

use kthw::lock::stand_in::StandIn;
use kthw::lock::Lock;
use kthw::phase::Phase;
use kthw::spec::Versions;
use kthw_tests::oci_layout::{layer, Format, OciLayout};
use kthw_tests::registry::Registry;
use kthw_tests::{host_prerequisite, kthw_bin, small_spec, unique_name, up_or_panic, vm_host_missing};

/// A stand-in chart's values.yaml, written by hand to exercise the resolver's reading of a chart: the image
/// blocks of Cilium's chart (their keys as cilium/cilium@v1.18.3:install/kubernetes/cilium/values.yaml writes
/// them) with digests made up here.
const STAND_IN_VALUES: &str = "image:\n  repository: \"quay.io/cilium/cilium\"\n  tag: \"v1.18.3\"\n  \
digest: \"sha256:1111111111111111111111111111111111111111111111111111111111111111\"\n  useDigest: true\n\
operator:\n  image:\n    repository: \"quay.io/cilium/operator\"\n    tag: \"v1.18.3\"\n    \
genericDigest: \"sha256:2222222222222222222222222222222222222222222222222222222222222222\"\n    useDigest: true\n\
envoy:\n  image:\n    repository: \"quay.io/cilium/cilium-envoy\"\n    tag: \"v1.34.7-stand-in\"\n    \
digest: \"sha256:3333333333333333333333333333333333333333333333333333333333333333\"\n    useDigest: true\n";

const SPEC: &str =
    "name = \"lab\"\n[versions]\npreset = \"current\"\nkubernetes = \"1.33.5\"\ncontainerd = \"2.1.5\"\n\
                    cilium = \"1.18.3\"\ncoredns = \"1.12.1\"\n";

fn kthw(home: &Path, args: &[&str]) -> Output {
    Command::new(kthw_bin())
        .args(args)
        .env("KTHW_HOME", home)
        // Only the loopback servers are asked, whatever proxy the environment names.
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn versions_lock_resolves_from_a_registry_and_a_file_server_serving_upstreams_layout() {
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::start(dir.path()) else { return };
    let files = dir.path().join("upstream");
    let stand_in = StandIn::start(&files).unwrap();
    let spec_path = dir.path().join("lab.toml");
    std::fs::write(&spec_path, SPEC).unwrap();
    let v: Versions = kthw::ClusterSpec::load(&spec_path).unwrap().versions.pins();
    let sums = stand_in.publish(&v, STAND_IN_VALUES);

    let busybox = layer(dir.path(), &[("bin/busybox", Path::new("/bin/busybox"))]);
    let oci = OciLayout::new(dir.path().join("coredns-layout"));
    let index = {
        let amd64 = oci.image_as(Format::Oci, "amd64", &busybox);
        oci.index_as(Format::Oci, &[amd64])
    };
    let coredns = registry.push(&oci, "coredns/coredns", "v1.12.1", &index);
    let docker = OciLayout::new(dir.path().join("pause-layout"));
    let list = {
        let amd64 = docker.image_as(Format::Docker, "amd64", &busybox);
        docker.index_as(Format::Docker, &[amd64])
    };
    let pause = registry.push(&docker, "pause", "3.10", &list);

    let home = dir.path().join("home");
    let spec = spec_path.to_str().unwrap();
    let registry_url = format!("http://{}", registry.host());
    let lock_args =
        ["versions", "lock", "--spec", spec, "--mirror", &stand_in.url(), "--registry-mirror", &registry_url];
    let out = kthw(&home, &lock_args);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(
            "locked custom (kubernetes 1.33.5, containerd 2.1.5, cilium 1.18.3, coredns 1.12.1 over current)"
        ),
        "{}",
        text(&out)
    );

    let lock = Lock::read(&dir.path().join("lab.lock")).unwrap();
    assert_eq!(lock.versions, v);
    for (url, sum) in &sums {
        let a = lock.artifacts.iter().find(|a| a.url.as_deref() == Some(url)).unwrap_or_else(|| panic!("{url}"));
        assert_eq!(a.checksum.as_ref(), Some(sum), "{url}: the sum its publisher (the stand-in) put beside it");
    }
    let digest = |name: &str| lock.artifacts.iter().find(|a| a.name == name).unwrap().digest.clone().unwrap();
    assert_eq!(digest("coredns"), coredns, "the registry's digest of the OCI index");
    assert_eq!(digest("pause"), pause, "the registry's digest of the Docker list");
    assert_eq!(digest("cilium"), format!("sha256:{}", "1".repeat(64)), "the chart's values.yaml");
    // The chart read while resolving is in the cache, verified: fetching does not download it again.
    let chart = lock.artifacts.iter().find(|a| a.name == "cilium-chart").unwrap();
    let cache = kthw::artifacts::Cache::new(home.join("cache/artifacts"));
    assert_eq!(cache.state_of(chart), kthw::artifacts::State::Cached, "{}", cache.dir.display());

    // The same versions again: the lock is kept, nothing is asked.
    let again = kthw(&home, &lock_args);
    assert!(text(&again).contains("already locks"), "{}", text(&again));
    let show = kthw(&home, &["versions", "show", "--spec", spec]);
    assert!(
        text(&show).contains("lab.lock") && text(&show).contains("kubernetes   1.33.5     named"),
        "{}",
        text(&show)
    );
    let valid = kthw(&home, &["spec", "validate", spec]);
    assert!(valid.status.success(), "{}", text(&valid));
    let listed = text(&kthw(&home, &["artifacts", "list", "--spec", spec]));
    assert!(listed.lines().any(|l| l.contains("cilium-chart") && l.contains("cached")), "{listed}");
    assert!(listed.contains("--spec SPEC") && listed.contains("of 15 not cached"), "{listed}");

    // A changed spec: its lock is stale, and every command that would use it says what changed.
    std::fs::write(&spec_path, SPEC.replace("1.33.5", "1.33.6")).unwrap();
    for args in [vec!["spec", "validate", spec], vec!["up", "--spec", spec], vec!["artifacts", "fetch", "--spec", spec]]
    {
        let out = kthw(&home, &args);
        assert!(!out.status.success(), "{args:?}: {}", text(&out));
        assert!(
            text(&out).contains("kubernetes 1.33.5 -> 1.33.6") && text(&out).contains("kthw versions lock"),
            "{args:?}: {}",
            text(&out)
        );
    }
    assert!(!home.join("state/runs").exists(), "nothing was booted");

    // A version upstream does not have: the URL that answered 404.
    std::fs::write(&spec_path, SPEC.replace("1.33.5", "1.33.99")).unwrap();
    let out = kthw(&home, &lock_args);
    assert!(!out.status.success());
    let expected = format!("{}/v1.33.99/kubernetes-server-linux-amd64.tar.gz.sha512 answered 404", stand_in.url());
    assert!(text(&out).contains(&expected), "{}", text(&out));
}

/// `kthw bundle` of a running cluster and a test on a kept one have no `Up` to hand them the lock: they read the
/// one `Up` left in the run directory, so a cluster of versions that are no preset gets its own artifacts and
/// chart keys there, never its preset's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_of_versions_that_are_no_preset_keeps_its_lock_for_what_comes_after_up() {
    let Some(()) = host_prerequisite("vm", vm_host_missing()) else { return };
    let mut spec = small_spec(2);
    spec.versions.named.insert(kthw::spec::VersionKey::Cilium, "1.18.3".into());
    // A lock as `kthw versions lock` writes one (its artifacts of no preset), its chart keys told apart from any
    // preset's; its files are the preset's, which no phase through `nodes` asks for.
    let preset = Lock::preset(spec.versions.preset);
    let lock = Lock {
        versions: spec.versions.pins(),
        chart_keys: vec!["image".into(), "stand-in-key".into()],
        artifacts: preset.artifacts.iter().cloned().map(|a| kthw::artifacts::Artifact { set: None, ..a }).collect(),
        ..preset
    };
    let up = kthw_tests::up(&spec, &unique_name("vm-lock-kept")).await.lock(lock.clone()).until(Phase::Nodes);
    let running = up_or_panic(up).await;
    let kept = Lock::read(&running.cluster.run_dir().lock()).unwrap();
    assert_eq!(kept, lock, "the run directory's lock is the one Up was given");
    assert_eq!(kthw::lock::of_cluster(&running.cluster), lock);
    let paths = kthw::testing::test_paths();
    let made = kthw::bundle::collect(&running.cluster, &paths, Some("lock test")).await.unwrap();
    let bundled = Lock::read(&made.dir.join(kthw::bundle::LOCK)).unwrap();
    assert_eq!(bundled.chart_keys, lock.chart_keys, "kthw repro of this bundle checks the same chart's keys");
    std::fs::remove_dir_all(&made.dir).unwrap();
    std::fs::remove_file(&made.archive).unwrap();
}
