//! Container images on nodes: OCI image archives put into a node's containerd, in the namespace the kubelet
//! uses (`k8s.io`), so that pods run them with no pull. Guests have no egress; this is how images get there.

use std::path::Path;

use crate::ssh::{shell_quote, Session, SshError};

/// The containerd namespace the kubelet's CRI plugin uses (containerd's `k8s.io`, its CRI default).
pub const K8S_NAMESPACE: &str = "k8s.io";

/// Why an image could not be put on a node.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("on {node}: `{command}` failed")]
    Ssh {
        node: String,
        command: String,
        #[source]
        source: SshError,
    },
    #[error("on {node}: importing {archive} did not make {reference}; containerd lists:\n{listed}")]
    NotImported { node: String, archive: String, reference: String, listed: String },
}

/// Imports the OCI archive at `archive` on the node into containerd's Kubernetes namespace as `reference`
/// (the name the archive's index gives it), unless an image of that name is there already. `ctr` is the
/// `ctr` command line for the node's containerd.
///
/// `--digests` also names the image `repository@<digest of what the archive's index points at>`: for an
/// archive of a multi-arch image that is its index digest. That is the name the CRI plugin looks for when a
/// pod names `repository:tag@sha256:<digest>`: it normalises the reference with `docker.ParseDockerRef`, which
/// keeps only the digest of a reference carrying both, and resolves that name among the images
/// (containerd v1.6.20 pkg/cri/server/helpers.go `localResolve`; `--digests` in
/// cmd/ctr/commands/images/import.go: "whether to create digest images").
pub async fn import(s: &Session, ctr: &str, archive: &Path, reference: &str) -> Result<(), OciError> {
    let run = |command: String| async move {
        s.succeed(&command).await.map(|o| o.stdout_lossy()).map_err(|source| OciError::Ssh {
            node: s.node().to_string(),
            command,
            source,
        })
    };
    let listed = |out: &str| out.lines().any(|l| l.trim() == reference);
    let list = format!("{ctr} -n {K8S_NAMESPACE} images ls -q");
    if listed(&run(list.clone()).await?) {
        return Ok(());
    }
    // Names in the archive that lack a registry part get this one; full names must begin with it.
    let base = reference.rsplit_once(':').map_or(reference, |(repo, _)| repo);
    run(format!(
        "{ctr} -n {K8S_NAMESPACE} images import --digests --base-name {} --platform linux/amd64 {}",
        shell_quote(base),
        shell_quote(&archive.display().to_string())
    ))
    .await?;
    let after = run(list).await?;
    if !listed(&after) {
        return Err(OciError::NotImported {
            node: s.node().to_string(),
            archive: archive.display().to_string(),
            reference: reference.to_string(),
            listed: after,
        });
    }
    Ok(())
}
