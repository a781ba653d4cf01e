//! Images that pods name by the digest of their top-level manifest start with no pull, however they reached
//! the node and whatever kind of manifest the registry served: an image made here as an OCI index put on a
//! worker the way the phases preload the pinned images (`oci::import` of its archive); then each kind a
//! registry serves (an OCI index with an attestation manifest, a Docker v2 manifest list, a single OCI and a
//! single Docker v2 manifest), pushed byte for byte to a real registry (Debian's `docker-registry`, on
//! 127.0.0.1, filled here), through `kthw artifacts fetch`'s path and the preload, through `kthw load` by
//! reference in every form a person copies, as `ctr images export` writes it, and on containerd 1.6 and 2.x.
//! Each amd64 image is run on the node by `repository@<digest>` with egress off. `ctr run` never pulls; the
//! name it resolves is the one containerd's CRI plugin resolves a pod's `repository:tag@sha256:<digest>` to.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kthw::artifacts::{Cache, Manifest, Mirror};
use kthw::bootstrap::Layout;
use kthw::cluster::Cluster;
use kthw::oci::{self, ImageRef};
use kthw::ssh::Session;
use kthw::up::Running;
use kthw_scenarios::cold_image::push_argv;
use kthw_tests::oci_layout::{layer, multi_arch_archive, Format, OciLayout};
use kthw_tests::registry::Registry;
use kthw_tests::{golden_cluster, kthw_bin, succeed, test_paths};
use rstest::rstest;

pub async fn images_by_index_digest_start_with_no_pull(cluster: &Cluster, worker: &Session, home: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::default();

    // The preload path: the archive copied to the worker and imported as the phases do.
    let (archive, index) = multi_arch_archive(dir.path(), "kthw.test/busybox:1");
    let images = oci::read_archive(&archive).unwrap();
    assert_eq!(images, [ImageRef { reference: "kthw.test/busybox:1".into(), digest: index.clone() }]);
    let remote = "/var/lib/kthw/images/busybox-1.oci.tar";
    succeed(worker, "mkdir -p /var/lib/kthw/images").await;
    worker.upload(&archive, remote, 0o644).await.unwrap();
    oci::import(worker, &layout.ctr(), Path::new(remote), &images)
        .await
        .unwrap_or_else(|e| panic!("{}", kthw::chain(&e)));
    runs_by_digest(worker, &images[0].digested(), "preloaded").await;

    // Bad input changes nothing: a file that is not an OCI archive is refused, naming it.
    let notes = dir.path().join("notes.tar");
    std::fs::write(&notes, "not a tar").unwrap();
    let before = succeed(worker, &format!("{} -n k8s.io images ls -q | sort", layout.ctr())).await;
    let bad =
        Command::new(kthw_bin()).args(["load", cluster.name()]).arg(&notes).env("KTHW_HOME", home).output().unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("notes.tar: not an OCI image archive"), "{err}");
    assert_eq!(succeed(worker, &format!("{} -n k8s.io images ls -q | sort", layout.ctr())).await, before);
}

/// Every kind of manifest a registry serves, from a registry on the host's loopback that this test fills, to
/// nodes that have `repository@<the digest the registry served>`: through `kthw artifacts fetch`'s path and the
/// preload, through `kthw load` by reference and by an archive `ctr images export` wrote, on Debian 12's
/// containerd 1.6, then again with the worker on Debian sid's containerd 2.x.
#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_image_a_registry_serves_keeps_its_digest_on_containerd_1_6_and_2(
    #[future] golden_cluster: Option<Running>,
) {
    let Some(running) = golden_cluster.await else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::start(dir.path()) else { return };
    let cluster = running.cluster;
    let home = test_paths().state.parent().unwrap().to_path_buf();
    let worker = cluster.session("worker-node-1").await.unwrap();
    succeed(&worker, "mkdir -p /var/lib/kthw/images && systemctl start containerd").await;
    let kinds = fill_registry(&registry, dir.path());
    artifacts_fetch_keeps_every_kind(&registry, &kinds, &worker, dir.path()).await;
    kthw_load_keeps_every_kind(&cluster, &registry, &kinds, &home, "containerd 1.6", kinds.len()).await;
    kthw_load_takes_what_ctr_images_export_writes(&cluster, &worker, &kinds[0], &home, dir.path()).await;
    containerd_2_imports_every_kind_with_its_digest_name(&cluster, &worker, &registry, &kinds, &home).await;
    cluster.down().await.unwrap();
}

/// Runs busybox from the image named `digested` on the node, which must not pull (egress is off anyway).
async fn runs_by_digest(node: &Session, digested: &str, how: &str) {
    let id = format!("kthw-{how}");
    let out = succeed(node, &format!("ctr -n k8s.io run --rm {digested} {id} /bin/busybox echo started-{how}")).await;
    assert_eq!(out, format!("started-{how}"), "the {how} image runs by its index digest");
}

/// One image in the loopback registry: what kind of manifest it is, where it is, and its digest.
struct Pushed {
    kind: &'static str,
    /// The repository path on the registry.
    path: String,
    digest: String,
}

impl Pushed {
    fn repository(&self, registry: &Registry) -> String {
        format!("{}/{}", registry.host(), self.path)
    }
}

/// Pushes one image of each kind a registry serves, each runnable on linux/amd64 (a static busybox):
/// an OCI index with an attestation manifest (platform unknown/unknown, as BuildKit pushes them), a Docker v2
/// manifest list (registry.k8s.io/pause is one), a single OCI manifest and a single Docker v2 manifest.
fn fill_registry(registry: &Registry, dir: &Path) -> Vec<Pushed> {
    let busybox = layer(dir, &[("bin/busybox", Path::new("/bin/busybox"))]);
    let readme = dir.join("README.arm64");
    std::fs::write(&readme, "an arm64 image this host never runs\n").unwrap();
    let arm64 = layer(dir, &[("README", &readme)]);
    let mut pushed = Vec::new();
    let mut push = |kind: &'static str, path: &str, build: &dyn Fn(&OciLayout) -> serde_json::Value| {
        let layout = OciLayout::new(dir.join(format!("registry-layout-{kind}")));
        let top = build(&layout);
        let digest = registry.push(&layout, path, "1", &top);
        pushed.push(Pushed { kind, path: path.to_string(), digest });
    };
    push("OCI index with an attestation", "kthw/oci-index", &|l| {
        let amd64 = l.image_as(Format::Oci, "amd64", &busybox);
        let attestation = l.attestation(&amd64);
        l.index_as(Format::Oci, &[amd64, l.image_as(Format::Oci, "arm64", &arm64), attestation])
    });
    push("Docker v2 manifest list", "kthw/docker-list", &|l| {
        let amd64 = l.image_as(Format::Docker, "amd64", &busybox);
        l.index_as(Format::Docker, &[amd64, l.image_as(Format::Docker, "arm64", &arm64)])
    });
    push("single OCI manifest", "kthw/oci-manifest", &|l| l.image_as(Format::Oci, "amd64", &busybox));
    push("single Docker v2 manifest", "kthw/docker-manifest", &|l| l.image_as(Format::Docker, "amd64", &busybox));
    pushed
}

/// The names containerd holds in the kubelet's namespace on `node`.
async fn names_on(node: &Session) -> String {
    succeed(node, &format!("{} -n k8s.io images ls -q", Layout::default().ctr())).await
}

/// `kthw artifacts fetch`'s path: each image pinned by digest, pulled through a mirror (the loopback registry),
/// kept under its upstream name with its digest; then the preload path imports it on the worker.
async fn artifacts_fetch_keeps_every_kind(registry: &Registry, kinds: &[Pushed], worker: &Session, dir: &Path) {
    let toml: String = kinds
        .iter()
        .map(|k| {
            format!(
                "[[artifact]]\nname = \"{name}\"\nset = \"seed\"\nkind = \"image\"\ncomponent = \"cilium\"\n\
                 version = \"1\"\nupstream_version = \"1\"\nreference = \"upstream.kthw.test/{path}:1\"\n\
                 digest = \"{digest}\"\nsource = \"written by this test: pushed to a registry on loopback\"\n\
                 phases = [\"cilium\"]\n\n",
                name = k.path.replace('/', "-"),
                path = k.path,
                digest = k.digest
            )
        })
        .collect();
    let manifest = Manifest::parse(&toml, "the test's image artifacts").unwrap();
    let mirror = Mirror::parse(&format!("http://{}", registry.host())).unwrap();
    let cache = Cache::new(dir.join("artifacts")).with_mirror(Some(mirror));
    for (a, k) in manifest.artifacts.iter().zip(kinds) {
        let archive = cache.fetch(a).unwrap_or_else(|e| panic!("fetch {}: {}", k.kind, kthw::chain(&e)));
        let images = oci::read_archive(&archive).unwrap();
        let want = ImageRef { reference: format!("upstream.kthw.test/{}:1", k.path), digest: k.digest.clone() };
        assert_eq!(
            images,
            std::slice::from_ref(&want),
            "{}: the archive keeps the upstream name and the served digest",
            k.kind
        );
        let remote = format!("/var/lib/kthw/images/{}.oci.tar", a.name);
        worker.upload(&archive, &remote, 0o644).await.unwrap();
        oci::import(worker, &Layout::default().ctr(), Path::new(&remote), &images)
            .await
            .unwrap_or_else(|e| panic!("preload {}: {}", k.kind, kthw::chain(&e)));
        let names = names_on(worker).await;
        assert!(names.lines().any(|l| l == want.digested()), "{}: {} on the worker:\n{names}", k.kind, want.digested());
        // The cold-image scenario pushes these archives into its mirror with skopeo: the digest survives.
        let mirrored = format!("kthw/mirrored-{}", a.name);
        let push =
            Command::new("skopeo").args(push_argv(&archive, &format!("{mirrored}:1"), registry.port)).output().unwrap();
        assert!(push.status.success(), "{}: {}", k.kind, String::from_utf8_lossy(&push.stderr));
        assert_eq!(registry.digest_of(&mirrored, "1"), k.digest, "{}: pushed again by the cold-image scenario", k.kind);
    }
    // A pin the registry does not serve is refused, and nothing is kept.
    let mut wrong = manifest.artifacts[0].clone();
    wrong.digest = Some(kinds[1].digest.clone());
    wrong.name = "wrong-digest".into();
    let err = kthw::chain(&cache.fetch(&wrong).unwrap_err());
    assert!(
        err.contains(&format!("cannot pull image upstream.kthw.test/{}:1@{}", kinds[0].path, kinds[1].digest)),
        "{err}"
    );
    assert!(!cache.path_of(&wrong).exists());
}

/// `kthw load` of each kind by reference, in the forms a person copies: every node then has
/// `repository@<the served digest>`, and the first `runs` kinds' amd64 image runs by it on the worker.
async fn kthw_load_keeps_every_kind(
    cluster: &Cluster,
    registry: &Registry,
    kinds: &[Pushed],
    home: &Path,
    on: &str,
    runs: usize,
) {
    let references: Vec<String> = kinds
        .iter()
        .enumerate()
        .map(|(i, k)| match i {
            0 => format!("{}:1@{}", k.repository(registry), k.digest), // as a pod spec names it
            1 => format!("{}:1", k.repository(registry)),
            2 => format!("{}@{}", k.repository(registry), k.digest),
            _ => format!("{}:1@{}", k.repository(registry), k.digest),
        })
        .collect();
    let kthw = kthw_bin();
    let started = Instant::now();
    let load =
        Command::new(kthw).args(["load", cluster.name()]).args(&references).env("KTHW_HOME", home).output().unwrap();
    let said = String::from_utf8_lossy(&load.stdout);
    assert!(load.status.success(), "kthw load ({on}): {}{said}", String::from_utf8_lossy(&load.stderr));
    eprintln!(
        "kthw load of {} images to {} nodes ({on}): {:.1} s",
        kinds.len(),
        cluster.nodes().len(),
        started.elapsed().as_secs_f64()
    );
    for n in cluster.nodes() {
        let s = cluster.session(&n.name).await.unwrap();
        let names = names_on(&s).await;
        for k in kinds {
            let digested = format!("{}@{}", k.repository(registry), k.digest);
            assert!(
                said.contains(&format!("loaded {}: ", n.name)) && said.contains(&format!("({})", k.digest)),
                "{said}"
            );
            assert!(names.lines().any(|l| l == digested), "{} ({on}): {digested} on {}:\n{names}", k.kind, n.name);
        }
    }
    let worker = cluster.session(&cluster.spec().workers().next().unwrap().name).await.unwrap();
    eprintln!("worker: {}", succeed(&worker, &format!("{} --version", Layout::default().ctr())).await);
    for k in kinds.iter().take(runs) {
        runs_by_digest(&worker, &format!("{}@{}", k.repository(registry), k.digest), &k.path.replace('/', "-")).await;
    }
}

/// An archive as `ctr images export` writes it (the full name in io.containerd.image.name, the tag alone in
/// org.opencontainers.image.ref.name), made by the worker's real containerd, loads under its name.
async fn kthw_load_takes_what_ctr_images_export_writes(
    cluster: &Cluster,
    worker: &Session,
    kind: &Pushed,
    home: &Path,
    dir: &Path,
) {
    let names = names_on(worker).await;
    let name = names.lines().find(|l| l.contains(&kind.path) && l.ends_with(":1")).expect("the loaded image");
    succeed(worker, &format!("{} -n k8s.io images export /tmp/exported.tar {name}", Layout::default().ctr())).await;
    let exported = worker.exec("cat /tmp/exported.tar", Duration::from_secs(60)).await.unwrap();
    assert!(exported.success(), "{}", exported.summary());
    let archive = dir.join("exported-by-ctr.tar");
    std::fs::write(&archive, &exported.stdout).unwrap();
    let images = oci::read_archive(&archive).unwrap_or_else(|e| panic!("{}", kthw::chain(&e)));
    assert_eq!(images, [ImageRef { reference: name.to_string(), digest: kind.digest.clone() }]);
    let digested = images[0].digested();
    succeed(worker, &format!("{} -n k8s.io images rm {name} {digested} >/dev/null", Layout::default().ctr())).await;
    let load =
        Command::new(kthw_bin()).args(["load", cluster.name()]).arg(&archive).env("KTHW_HOME", home).output().unwrap();
    assert!(load.status.success(), "kthw load of ctr's export: {}", String::from_utf8_lossy(&load.stderr));
    let names = names_on(worker).await;
    assert!(names.lines().any(|l| l == name) && names.lines().any(|l| l == digested), "{names}");
}

/// containerd 2.x (Debian sid's, fetched by the host; the node has no egress) on the worker: with every name
/// removed, `kthw load` imports each kind again and the worker has each digest name, as on 1.6.
async fn containerd_2_imports_every_kind_with_its_digest_name(
    cluster: &Cluster,
    worker: &Session,
    registry: &Registry,
    kinds: &[Pushed],
    home: &Path,
) {
    let Some(debs) = kthw_tests::debs::fetch_or_skip("sid", &["containerd"]) else { return };
    // The node keeps its own runc (containerd Depends: runc (>= 0.1.0~)).
    kthw_tests::debs::install(worker, &debs).await;
    succeed(worker, "systemctl restart containerd").await;
    let ctr = Layout::default().ctr();
    let version = worker.wait_until_succeeds(&format!("{ctr} version"), Duration::from_secs(120)).await.unwrap();
    let version = version.stdout_lossy();
    assert!(version.contains("Version:  2."), "the worker runs containerd 2.x now: {version}");
    let said = succeed(worker, &format!("{ctr} --version")).await;
    assert_eq!(oci::import_flags(&said), Ok(&["--local"][..]), "{said}");
    for n in cluster.nodes() {
        let s = cluster.session(&n.name).await.unwrap();
        let ours: Vec<String> =
            names_on(&s).await.lines().filter(|l| l.contains("/kthw/")).map(str::to_string).collect();
        succeed(&s, &format!("{ctr} -n k8s.io images rm {} >/dev/null", ours.join(" "))).await;
    }
    // One run on 2.x (with the node's runc 1.1) shows the pod path there; the names are checked for every kind.
    let on = "containerd 2.x on the worker, 1.6 on the control plane";
    kthw_load_keeps_every_kind(cluster, registry, kinds, home, on, 1).await;
}

/// `kthw up --spec` puts the spec's `images.extra` on every node once the cluster is up, as `kthw load` would:
/// a person's own images are there without a second command (before, only a test's cluster got them).
#[test]
fn kthw_up_puts_the_specs_own_images_on_every_node() {
    let Some(()) = kthw_tests::host_prerequisite("vm", kthw_tests::vm_host_missing()) else { return };
    let dir = tempfile::tempdir().unwrap();
    let (archive, index) = multi_arch_archive(dir.path(), "kthw.test/extra:1");
    let spec = dir.path().join("lab.toml");
    let extra = format!("\n[images]\nextra = [\"{}\"]\n", archive.display());
    std::fs::write(&spec, crate::nodes::toml_of(&kthw_tests::small_spec(2)) + &extra).unwrap();
    let home = test_paths().state.parent().unwrap().to_path_buf();
    let name = kthw_tests::unique_name("vm-up-extra");
    let kthw = |args: &[&str]| Command::new(kthw_bin()).args(args).env("KTHW_HOME", &home).output().unwrap();
    let up = kthw(&["up", "--until", "nodes", "--name", &name, "--spec", spec.to_str().unwrap()]);
    let said = format!("{}{}", String::from_utf8_lossy(&up.stdout), String::from_utf8_lossy(&up.stderr));
    let down = kthw(&["down", &name]);
    assert!(up.status.success(), "{said}");
    for node in ["control-plane-1", "worker-node-1"] {
        assert!(said.contains(&format!("loaded {node}: kthw.test/extra:1 ({index})")), "{node}: {said}");
    }
    assert!(down.status.success(), "{}", String::from_utf8_lossy(&down.stderr));
}
