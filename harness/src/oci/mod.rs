//! Container images on nodes: OCI image archives put into a node's containerd, in the namespace the kubelet
//! uses (`k8s.io`), so that pods run them with no pull (guests have no egress in tests). The phases preload
//! the pinned images this way, and `kthw load` any image a person gives, by archive or by reference. Whatever
//! kind of manifest a registry serves (an OCI index, with attestation manifests or not, a Docker v2 manifest
//! list, a single OCI or Docker v2 manifest), the top-level manifest keeps its bytes and so its digest, which
//! is what a pod's `repo:tag@sha256:…` names.

mod archive;
mod node;
mod pull;
mod reference;

use std::path::PathBuf;

pub use archive::{media_type, read_archive, write_archive, IMAGE_NAME, MEDIA_TYPES, REF_NAME};
pub use node::{import, import_flags, load, K8S_NAMESPACE};
pub use pull::{pull, skopeo_copy_args};
pub use reference::{split_domain, Reference};

use crate::cluster::ClusterError;
use crate::ssh::SshError;

/// Every image given, as archives to load: a file is read as an OCI archive (a missing one is reported as
/// such, not pulled), anything else is a reference pulled into `scratch` first. Every one is checked, and
/// every reference pulled, before anything changes on a node. `kthw load` and `TestCluster::load_images`.
pub fn resolve(given: &[String], scratch: &std::path::Path) -> Result<Vec<(PathBuf, Vec<ImageRef>)>, OciError> {
    let mut archives = Vec::new();
    for (i, given) in given.iter().enumerate() {
        let path = std::path::Path::new(given);
        // A file, or what can only be meant as one.
        let is_file = path.exists() || given.starts_with(['/', '.']) || given.ends_with(".tar");
        if is_file {
            archives.push((path.to_path_buf(), read_archive(path)?));
        } else {
            let reference = Reference::parse(given)?;
            let dir = scratch.join(i.to_string());
            std::fs::create_dir_all(&dir).map_err(|source| OciError::Io {
                action: "create",
                path: dir.clone(),
                source,
            })?;
            tracing::info!("pulling {}", reference.source());
            let (archive, image) = pull(&reference, &dir)?;
            archives.push((archive, vec![image]));
        }
    }
    Ok(archives)
}

/// Every image given ([`resolve`]: archives, or references pulled into a scratch directory first) into every
/// node's containerd; `node: name (digest)` for each. `kthw load`, `kthw up` for the spec's `images.extra`, and
/// `TestCluster::load_images`.
pub async fn load_given(cluster: &crate::cluster::Cluster, given: &[String]) -> Result<Vec<String>, OciError> {
    let temp = std::env::temp_dir();
    let scratch = tempfile::tempdir().map_err(|source| OciError::Io {
        action: "create a scratch directory under",
        path: temp,
        source,
    })?;
    let mut loaded = Vec::new();
    for (archive, images) in &resolve(given, scratch.path())? {
        loaded.extend(load(cluster, archive, images).await?);
    }
    Ok(loaded)
}

/// The forms of a reference that are accepted, for refusals.
const REFERENCE_FORMS: &str = "repo:tag, repo@sha256:<digest> or repo:tag@sha256:<digest>";

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
    #[error("on {node}: cannot tell which containerd `ctr --version` is ({said:?}); the import flags depend on it")]
    UnknownContainerd { node: String, said: String },
    #[error("{}: not an OCI image archive ({why}); give an archive as `docker save` (Docker 25 or later), `ctr images export`, BuildKit's OCI exporter or `skopeo copy ... oci-archive:FILE:REPO:TAG` write one, or an image reference ({REFERENCE_FORMS})", path.display())]
    NotAnArchive { path: PathBuf, why: String },
    #[error("{}: the image {digest} has no name{}: neither {IMAGE_NAME} (as `docker save`, `ctr images export` and BuildKit write it) nor a full name in {REF_NAME} (as `skopeo copy ... oci-archive:FILE:REPO:TAG` writes it); write the archive with its image's name", path.display(), tag.as_ref().map(|t| format!(" (only the tag {t:?})")).unwrap_or_default())]
    Unnamed { path: PathBuf, digest: String, tag: Option<String> },
    #[error("{given:?} is not an image reference: {why}; give {REFERENCE_FORMS}")]
    BadReference { given: String, why: String },
    #[error(
        "{reference}: the registry served a manifest with digest {served}, not the one asked for; nothing was kept"
    )]
    DigestMismatch { reference: String, served: String },
    #[error("{reference}: the registry served a manifest kthw cannot keep: {why}")]
    UnknownManifest { reference: String, why: String },
    #[error("cannot pull {reference}: skopeo {why}")]
    Pull { reference: String, why: String },
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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

/// An image by name and by the digest of its top-level manifest (for a multi-arch image, its index or list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `repository:tag`, or `repository@digest` for an image that has no tag.
    pub reference: String,
    /// `sha256:<hex>`.
    pub digest: String,
}

impl ImageRef {
    /// The repository: the reference without its tag (a `:` after the last `/`) or digest.
    pub fn repository(&self) -> &str {
        let named = self.reference.split_once('@').map_or(self.reference.as_str(), |(n, _)| n);
        let last = named.rfind('/').map_or(0, |i| i + 1);
        match named[last..].rfind(':') {
            Some(i) => &named[..last + i],
            None => named,
        }
    }

    /// `repository@digest`: the name a pod's `repository:tag@digest` resolves to.
    pub fn digested(&self) -> String {
        format!("{}@{}", self.repository(), self.digest)
    }

    /// The names it has on a node: its reference and its digest name (one, for an image with no tag).
    pub fn names(&self) -> Vec<String> {
        let mut names = vec![self.reference.clone(), self.digested()];
        names.dedup();
        names
    }
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
    fn an_image_without_a_tag_has_one_name() {
        let by_digest = image("quay.io/cilium/cilium@sha256:ab");
        assert_eq!(by_digest.repository(), "quay.io/cilium/cilium");
        assert_eq!(by_digest.names(), ["quay.io/cilium/cilium@sha256:ab"]);
        assert_eq!(image("localhost:5000/a:1").names(), ["localhost:5000/a:1", "localhost:5000/a@sha256:ab"]);
    }
}
