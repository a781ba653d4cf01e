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
use kthw_tests::oci_layout::multi_arch_archive;
use kthw_tests::{in_ci, kthw_bin, succeed};

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
