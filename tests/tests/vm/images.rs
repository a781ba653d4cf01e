//! Images that pods name by their multi-arch index digest start with no pull, however they reached the node:
//! an image made here as an OCI index (linux/amd64, runnable: a static busybox, and linux/arm64), put on a
//! worker the way the phases preload the pinned images (`oci::import` of its archive), and by `kthw load`
//! from a real registry (Debian's `docker-registry`, on 127.0.0.1, started here). Each is then run on the
//! node by `repository@<index digest>` with egress off. `ctr run` never pulls; the name it resolves is the
//! one containerd's CRI plugin resolves a pod's `repository:tag@sha256:<digest>` to.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kthw::bootstrap::Layout;
use kthw::cluster::Cluster;
use kthw::oci::{self, ImageRef};
use kthw::ssh::Session;
use kthw_tests::{in_ci, kthw_bin, succeed};
use sha2::{Digest, Sha256};

pub async fn images_by_index_digest_start_with_no_pull(cluster: &Cluster, worker: &Session, home: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::default();

    // The preload path: the archive copied to the worker and imported as the phases do.
    let (archive, index) = multi_arch_archive(dir.path(), "kthw.test/busybox:1");
    let image = oci::read_archive(&archive).unwrap();
    assert_eq!(image, ImageRef { reference: "kthw.test/busybox:1".into(), digest: index.clone() });
    let remote = "/var/lib/kthw/images/busybox-1.oci.tar";
    succeed(worker, "mkdir -p /var/lib/kthw/images").await;
    worker.upload(&archive, remote, 0o644).await.unwrap();
    oci::import(worker, &layout.ctr(), Path::new(remote), &image)
        .await
        .unwrap_or_else(|e| panic!("{}", kthw::chain(&e)));
    runs_by_digest(worker, &image.digested(), "preloaded").await;

    // kthw load, from a registry on the host's loopback (plain HTTP, as Docker allows for localhost).
    let Some(mut registry) = Registry::start(dir.path()) else { return };
    let reference = format!("127.0.0.1:{}/kthw/busybox:2", registry.port);
    let push = Command::new("skopeo")
        .args(["copy", "--quiet", "--all", "--preserve-digests", "--dest-tls-verify=false"])
        .arg(format!("oci-archive:{}", archive.display()))
        .arg(format!("docker://{reference}"))
        .output()
        .unwrap();
    assert!(push.status.success(), "skopeo push: {}", String::from_utf8_lossy(&push.stderr));
    let started = Instant::now();
    let load =
        Command::new(kthw_bin()).args(["load", cluster.name(), &reference]).env("KTHW_HOME", home).output().unwrap();
    let said = String::from_utf8_lossy(&load.stdout);
    assert!(load.status.success(), "kthw load: {}", String::from_utf8_lossy(&load.stderr));
    eprintln!(
        "kthw load from the loopback registry to {} nodes took {:.1} s",
        cluster.nodes().len(),
        started.elapsed().as_secs_f64()
    );
    for n in cluster.nodes() {
        assert!(said.contains(&format!("loaded {}: {reference} ({index})", n.name)), "{said}");
    }
    let loaded = ImageRef { reference: reference.clone(), digest: index.clone() };
    runs_by_digest(worker, &loaded.digested(), "loaded").await;
    registry.stop();

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

/// Runs busybox from the image named `digested` on the node, which must not pull (egress is off anyway).
async fn runs_by_digest(node: &Session, digested: &str, how: &str) {
    let id = format!("kthw-{how}");
    let out = succeed(node, &format!("ctr -n k8s.io run --rm {digested} {id} /bin/busybox echo started-{how}")).await;
    assert_eq!(out, format!("started-{how}"), "the {how} image runs by its index digest");
}

/// An OCI image archive of a two-platform image named `name`: an index (its digest is returned) of a
/// linux/amd64 image whose one layer holds the host's static busybox, and a linux/arm64 one.
fn multi_arch_archive(dir: &Path, name: &str) -> (PathBuf, String) {
    let layout = dir.join(format!("layout-{}", name.replace(['/', ':'], "-")));
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let blob = |bytes: &[u8], media: &str| {
        let hex = hex::encode(Sha256::digest(bytes));
        std::fs::write(blobs.join(&hex), bytes).unwrap();
        serde_json::json!({ "mediaType": media, "digest": format!("sha256:{hex}"), "size": bytes.len() })
    };
    let platform_image = |arch: &str, layer: Vec<u8>| {
        let layer_desc = blob(&layer, "application/vnd.oci.image.layer.v1.tar");
        let config = serde_json::json!({
            "architecture": arch, "os": "linux", "config": {},
            "rootfs": { "type": "layers", "diff_ids": [layer_desc["digest"]] },
        });
        let config_desc = blob(config.to_string().as_bytes(), "application/vnd.oci.image.config.v1+json");
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config_desc, "layers": [layer_desc],
        });
        let mut desc = blob(manifest.to_string().as_bytes(), "application/vnd.oci.image.manifest.v1+json");
        desc["platform"] = serde_json::json!({ "architecture": arch, "os": "linux" });
        desc
    };
    let amd64 = platform_image("amd64", layer_with(dir, "bin/busybox", Path::new("/bin/busybox")));
    let readme = dir.join("README");
    std::fs::write(&readme, "an arm64 image this host never runs\n").unwrap();
    let arm64 = platform_image("arm64", layer_with(dir, "README", &readme));
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [amd64, arm64],
    });
    let mut index_desc = blob(index.to_string().as_bytes(), "application/vnd.oci.image.index.v1+json");
    let digest = index_desc["digest"].as_str().unwrap().to_string();
    index_desc["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": name });
    std::fs::write(
        layout.join("index.json"),
        serde_json::json!({ "schemaVersion": 2, "manifests": [index_desc] }).to_string(),
    )
    .unwrap();
    std::fs::write(layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let archive = dir.join(format!("{}.oci.tar", name.replace(['/', ':'], "-")));
    let tar = Command::new("tar")
        .arg("-cf")
        .arg(&archive)
        .arg("-C")
        .arg(&layout)
        .args(["index.json", "oci-layout", "blobs"])
        .status();
    assert!(tar.unwrap().success());
    (archive, digest)
}

/// An uncompressed layer tar holding `from` at `at`.
fn layer_with(dir: &Path, at: &str, from: &Path) -> Vec<u8> {
    let root = dir.join(format!("root-{}", at.replace('/', "-")));
    let target = root.join(at);
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::copy(from, &target).unwrap();
    let out = Command::new("tar").arg("-cf").arg("-").arg("-C").arg(&root).arg(at).output().unwrap();
    assert!(out.status.success());
    out.stdout
}

/// Debian's docker-registry serving on a free 127.0.0.1 port, storing under a temporary directory.
struct Registry {
    child: Child,
    port: u16,
}

impl Registry {
    fn start(dir: &Path) -> Option<Registry> {
        let Ok(bin) = which("docker-registry") else {
            assert!(!in_ci(), "CI=true and docker-registry is not installed (scripts/setup-host installs it)");
            eprintln!("SKIPPED: kthw load from a registry: docker-registry is not installed here");
            return None;
        };
        let port = kthw::virt::free_port().unwrap();
        let config = dir.join("registry.yml");
        let storage = dir.join("registry");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                storage.display()
            ),
        )
        .unwrap();
        let child =
            Command::new(bin).arg("serve").arg(&config).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let registry = Registry { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not listen on 127.0.0.1:{port} within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(registry)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

fn which(bin: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join(bin)).find(|c| c.is_file()))
        .ok_or(())
}
