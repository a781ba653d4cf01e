//! Container images on nodes: OCI image archives put into a node's containerd, in the namespace the kubelet
//! uses (`k8s.io`), so that pods run them with no pull (guests have no egress in tests). The phases preload
//! the pinned images this way, and `kthw load` any image a person gives, by archive or by reference.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cluster::{Cluster, ClusterError};
use crate::ssh::{shell_quote, Session, SshError};

/// The containerd namespace the kubelet's CRI plugin uses (containerd's `k8s.io`, its CRI default).
pub const K8S_NAMESPACE: &str = "k8s.io";
/// Where `kthw load` leaves image archives on a node.
const LOAD_DIR: &str = "/var/lib/kthw/load";
/// The annotation an OCI layout's index.json names an image with (OCI image-spec annotations.md).
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Why an image could not be had or put on a node.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("on {node}: `{command}` failed")]
    Ssh {
        node: String,
        command: String,
        #[source]
        source: Box<SshError>,
    },
    #[error("on {node}: importing {archive} did not make {name}; containerd lists:\n{listed}")]
    NotImported { node: String, archive: String, name: String, listed: String },
    #[error("{}: not an OCI image archive ({why}); give a file `skopeo copy --all ... oci-archive:FILE:NAME` or `docker save` writes, or an image reference", path.display())]
    NotAnArchive { path: PathBuf, why: String },
    #[error("cannot pull {reference}: skopeo {why}")]
    Pull { reference: String, why: String },
    #[error("cannot copy the image to {node}")]
    Upload {
        node: String,
        #[source]
        source: Box<SshError>,
    },
    #[error("cannot reach node {node}")]
    Node {
        node: String,
        #[source]
        source: Box<ClusterError>,
    },
}

/// An image by name and by the digest of what its archive's index points at (for a multi-arch image, its
/// index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `repository:tag`.
    pub reference: String,
    /// `sha256:<hex>`.
    pub digest: String,
}

impl ImageRef {
    /// The repository: the reference without its tag (a `:` after the last `/`).
    pub fn repository(&self) -> &str {
        let last = self.reference.rfind('/').map_or(0, |i| i + 1);
        match self.reference[last..].rfind(':') {
            Some(i) => &self.reference[..last + i],
            None => &self.reference,
        }
    }

    /// `repository@digest`: the name a pod's `repository:tag@digest` resolves to.
    pub fn digested(&self) -> String {
        format!("{}@{}", self.repository(), self.digest)
    }
}

/// The image an OCI archive holds: the one entry of its index.json, named by the `ref.name` annotation.
pub fn read_archive(path: &Path) -> Result<ImageRef, OciError> {
    let bad = |why: String| OciError::NotAnArchive { path: path.to_path_buf(), why };
    if !path.is_file() {
        return Err(bad("no such file".into()));
    }
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(path)
        .arg("index.json")
        .output()
        .map_err(|e| bad(format!("cannot run tar: {e}")))?;
    if !out.status.success() {
        return Err(bad(format!("no index.json in it: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    let index: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| bad(format!("its index.json is not JSON: {e}")))?;
    let manifests = index["manifests"].as_array().ok_or_else(|| bad("its index.json lists no manifests".into()))?;
    let [entry] = manifests.as_slice() else {
        return Err(bad(format!("its index.json lists {} images; load one at a time", manifests.len())));
    };
    let digest = entry["digest"]
        .as_str()
        .filter(|d| d.starts_with("sha256:"))
        .ok_or_else(|| bad("its image has no sha256 digest".into()))?;
    let reference = entry["annotations"][REF_NAME]
        .as_str()
        .filter(|r| r.contains(':') || r.contains('/'))
        .ok_or_else(|| bad(format!("its image has no full name ({REF_NAME}); write it with a name, e.g. oci-archive:FILE:registry/repo:tag")))?;
    Ok(ImageRef { reference: reference.to_string(), digest: digest.to_string() })
}

/// Whether `reference` names a registry on a loopback address, which is spoken to over plain HTTP, as Docker
/// allows for localhost (docker/docs "Test an insecure registry": localhost is exempt from TLS).
pub fn is_loopback_registry(reference: &str) -> bool {
    let host_port = reference.split('/').next().unwrap_or("");
    let host = match host_port.find(']') {
        Some(end) if host_port.starts_with('[') => &host_port[..=end],
        _ => host_port.split(':').next().unwrap_or(""),
    };
    matches!(host, "localhost" | "[::1]") || host.parse::<std::net::Ipv4Addr>().is_ok_and(|a| a.is_loopback())
}

/// Pulls `reference` (every platform, digests preserved) into an OCI archive in `dir`; returns its path.
pub fn pull(reference: &str, dir: &Path) -> Result<PathBuf, OciError> {
    let fail = |why: String| OciError::Pull { reference: reference.to_string(), why };
    let archive = dir.join("image.oci.tar");
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "--quiet", "--all", "--preserve-digests"]);
    if is_loopback_registry(reference) {
        cmd.arg("--src-tls-verify=false");
    }
    let out = cmd
        .arg(format!("docker://{reference}"))
        .arg(format!("oci-archive:{}:{reference}", archive.display()))
        .output()
        .map_err(|e| fail(format!("cannot run ({e}); install skopeo")))?;
    if !out.status.success() {
        return Err(fail(format!("exited with {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(archive)
}

/// Puts the image of `archive` into every node's containerd (started if it is not running), all nodes at
/// once; returns `node: name` for each.
pub async fn load(cluster: &Cluster, archive: &Path, image: &ImageRef) -> Result<Vec<String>, OciError> {
    let remote = PathBuf::from(LOAD_DIR).join(format!("{}.oci.tar", image.digest.replace(':', "-")));
    let ctr = crate::bootstrap::Layout::default().ctr();
    let mut set = tokio::task::JoinSet::new();
    for n in cluster.nodes() {
        let s =
            cluster.session(&n.name).await.map_err(|e| OciError::Node { node: n.name.clone(), source: Box::new(e) })?;
        let (archive, remote, image, ctr) = (archive.to_path_buf(), remote.clone(), image.clone(), ctr.clone());
        set.spawn(async move {
            // The image leaves containerd disabled until the workers phase configures it (a boot cut,
            // images/debian/boot-cuts/disabled-units.txt); a load before that phase starts the image's own.
            command_on(&s, format!("mkdir -p {LOAD_DIR} && systemctl start containerd")).await?;
            s.upload(&archive, &remote.display().to_string(), 0o644)
                .await
                .map_err(|e| OciError::Upload { node: s.node().to_string(), source: Box::new(e) })?;
            import(&s, &ctr, &remote, &image).await?;
            Ok::<_, OciError>(format!("{}: {} ({})", s.node(), image.reference, image.digest))
        });
    }
    let mut loaded = crate::tasks::join_all(set).await?;
    loaded.sort();
    Ok(loaded)
}

async fn command_on(s: &Session, command: String) -> Result<String, OciError> {
    s.succeed(&command).await.map(|o| o.stdout_lossy()).map_err(|e| OciError::Ssh {
        node: s.node().to_string(),
        command,
        source: Box::new(e),
    })
}

/// Imports the OCI archive at `archive` on the node into containerd's Kubernetes namespace, unless both of
/// its names are there already: `image.reference` (the name the archive's index gives it) and
/// `image.digested()`. `ctr` is the `ctr` command line for the node's containerd.
///
/// `--digests` is what makes the second name, `repository@<digest of what the archive's index points at>`:
/// for a multi-arch image, its index digest. That is the name the CRI plugin looks for when a pod names
/// `repository:tag@sha256:<digest>`: it normalises the reference with `docker.ParseDockerRef`, which keeps only
/// the digest of a reference carrying both, and resolves that name among the images (containerd v1.6.20
/// pkg/cri/server/helpers.go `localResolve`; `--digests` in cmd/ctr/commands/images/import.go: "whether to
/// create digest images").
pub async fn import(s: &Session, ctr: &str, archive: &Path, image: &ImageRef) -> Result<(), OciError> {
    let names = [image.reference.clone(), image.digested()];
    let has_all = |out: &str| names.iter().all(|n| out.lines().any(|l| l.trim() == n));
    let list = format!("{ctr} -n {K8S_NAMESPACE} images ls -q");
    if has_all(&command_on(s, list.clone()).await?) {
        return Ok(());
    }
    // Names in the archive that lack a registry part get this one; full names must begin with it.
    command_on(
        s,
        format!(
            "{ctr} -n {K8S_NAMESPACE} images import --digests --base-name {} --platform linux/amd64 {}",
            shell_quote(image.repository()),
            shell_quote(&archive.display().to_string())
        ),
    )
    .await?;
    let after = command_on(s, list).await?;
    if let Some(missing) = names.iter().find(|n| !after.lines().any(|l| l.trim() == n.as_str())) {
        return Err(OciError::NotImported {
            node: s.node().to_string(),
            archive: archive.display().to_string(),
            name: missing.clone(),
            listed: after,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(reference: &str) -> ImageRef {
        ImageRef { reference: reference.into(), digest: "sha256:ab".into() }
    }

    #[test]
    fn the_digest_name_drops_the_tag_and_keeps_a_registry_port() {
        assert_eq!(image("quay.io/cilium/cilium:v1.17.4").digested(), "quay.io/cilium/cilium@sha256:ab");
        assert_eq!(image("127.0.0.1:5000/kthw/busybox:1").digested(), "127.0.0.1:5000/kthw/busybox@sha256:ab");
        assert_eq!(image("127.0.0.1:5000/busybox").repository(), "127.0.0.1:5000/busybox");
    }

    #[test]
    fn only_loopback_registries_are_plain_http() {
        for r in ["127.0.0.1:5000/a:1", "localhost:5000/a", "127.1.2.3/a", "[::1]:5000/a", "[::1]/a"] {
            assert!(is_loopback_registry(r), "{r}");
        }
        for r in ["quay.io/cilium/cilium:v1", "10.0.0.4:5000/a", "localhost.example/a", "registry.k8s.io/pause:3.10"] {
            assert!(!is_loopback_registry(r), "{r}");
        }
    }

    #[test]
    fn a_file_that_is_not_an_oci_archive_is_refused_naming_why() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "hello").unwrap();
        let err = read_archive(&text).unwrap_err().to_string();
        assert!(err.contains("notes.txt: not an OCI image archive (no index.json in it"), "{err}");
        let err = read_archive(&dir.path().join("missing.tar")).unwrap_err().to_string();
        assert!(err.contains("not an OCI image archive (no such file)"), "{err}");

        let layout = dir.path().join("layout");
        std::fs::create_dir(&layout).unwrap();
        let entry = serde_json::json!({ "mediaType": "application/vnd.oci.image.index.v1+json", "digest": "sha256:cd", "size": 1,
            "annotations": { REF_NAME: "127.0.0.1:5000/kthw/busybox:1" } });
        for (manifests, expect) in [
            (serde_json::json!([]), Err("lists 0 images")),
            (serde_json::json!([entry.clone(), entry.clone()]), Err("lists 2 images")),
            (
                serde_json::json!([entry]),
                Ok(ImageRef { reference: "127.0.0.1:5000/kthw/busybox:1".into(), digest: "sha256:cd".into() }),
            ),
        ] {
            std::fs::write(
                layout.join("index.json"),
                serde_json::json!({ "schemaVersion": 2, "manifests": manifests }).to_string(),
            )
            .unwrap();
            let archive = dir.path().join("a.tar");
            assert!(Command::new("tar")
                .arg("-cf")
                .arg(&archive)
                .arg("-C")
                .arg(&layout)
                .arg("index.json")
                .status()
                .unwrap()
                .success());
            match (read_archive(&archive), expect) {
                (Ok(got), Ok(want)) => assert_eq!(got, want),
                (Err(e), Err(why)) => assert!(e.to_string().contains(why), "{e}"),
                (got, want) => panic!("{got:?} vs {want:?}"),
            }
        }
    }
}
