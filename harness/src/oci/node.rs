//! Images onto nodes: an OCI archive copied to a node and imported into containerd's Kubernetes namespace
//! under its name and its digest name, checked by listing them afterwards.

use std::path::{Path, PathBuf};

use super::{ImageRef, OciError};
use crate::cluster::Cluster;
use crate::ssh::{shell_quote, Session};

/// The containerd namespace the kubelet's CRI plugin uses (containerd's `k8s.io`, its CRI default).
pub const K8S_NAMESPACE: &str = "k8s.io";
/// Where `kthw load` leaves image archives on a node.
const LOAD_DIR: &str = "/var/lib/kthw/load";

/// Puts the images of `archive` into every node's containerd (started if it is not running), all nodes at
/// once; returns `node: name (digest)` for each.
pub async fn load(cluster: &Cluster, archive: &Path, images: &[ImageRef]) -> Result<Vec<String>, OciError> {
    let first = images.first().expect("read_archive gives at least one image");
    let remote = PathBuf::from(LOAD_DIR).join(format!("{}.oci.tar", first.digest.replace(':', "-")));
    let ctr = crate::bootstrap::Layout::default().ctr();
    let mut set = tokio::task::JoinSet::new();
    for n in cluster.nodes() {
        let s =
            cluster.session(&n.name).await.map_err(|e| OciError::Node { node: n.name.clone(), source: Box::new(e) })?;
        let (archive, remote, images, ctr) = (archive.to_path_buf(), remote.clone(), images.to_vec(), ctr.clone());
        set.spawn(async move {
            // The image leaves containerd disabled until the workers phase configures it (a boot cut,
            // images/debian/boot-cuts/disabled-units.txt); a load before that phase starts the image's own.
            command_on(&s, format!("mkdir -p {LOAD_DIR} && systemctl start containerd")).await?;
            s.upload(&archive, &remote.display().to_string(), 0o644)
                .await
                .map_err(|e| OciError::Upload { node: s.node().to_string(), source: Box::new(e) })?;
            import(&s, &ctr, &remote, &images).await?;
            Ok::<_, OciError>(
                images.iter().map(|i| format!("{}: {} ({})", s.node(), i.reference, i.digest)).collect::<Vec<_>>(),
            )
        });
    }
    let mut loaded: Vec<String> = crate::tasks::join_all(set).await?.into_iter().flatten().collect();
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

/// The flags `ctr images import` needs, beside `--digests`, to take the local import path, the one that names
/// an image the archive names `repository@<digest>` too, given what `ctr --version` printed:
/// - 1.6 has only the local path, and no `--local` flag (v1.6.20 cmd/ctr/commands/images/import.go);
/// - 1.7 has `--local` as a flag that defaults to true (v1.7.24 import.go: `cli.BoolTFlag{Name: "local"}`);
/// - 2.x defaults to the transfer API (v2.2.7 import.go: `cli.BoolFlag{Name: "local"}`), whose image store
///   adds no digest name to an image the archive names (`WithDigestRef(prefix, overwrite,
///   !skip-digest-for-named)`; core/transfer/image/imagestore.go `SkipNamedDigest`), while the import exits 0.
pub fn import_flags(ctr_version: &str) -> Result<&'static [&'static str], String> {
    // "ctr github.com/containerd/containerd 1.6.20~ds1", "ctr containerd.io 1.7.27",
    // "ctr github.com/containerd/containerd/v2 v2.2.7", "ctr github.com/containerd/containerd/v2 2.1.9~ds1".
    let version = ctr_version.split_whitespace().nth(2).map(|v| v.trim_start_matches('v'));
    let mut parts = version.unwrap_or_default().split(['.', '~', '-', '+']);
    let (major, minor) =
        (parts.next().and_then(|m| m.parse::<u32>().ok()), parts.next().and_then(|m| m.parse::<u32>().ok()));
    match (major, minor) {
        (Some(1), Some(minor)) if minor <= 6 => Ok(&[]),
        (Some(1), Some(_)) | (Some(2..), Some(_)) => Ok(&["--local"]),
        _ => Err(ctr_version.trim().to_string()),
    }
}

/// Imports the OCI archive at `archive` on the node into containerd's Kubernetes namespace, unless every name
/// of `images` (those [`read_archive`] read from it) is there already. `ctr` is the `ctr` command line for the
/// node's containerd.
///
/// `--digests` is what makes the second name, `repository@<digest of what the archive's index points at>`:
/// for a multi-arch image, its index digest. That is the name the CRI plugin looks for when a pod names
/// `repository:tag@sha256:<digest>`: it normalises the reference with `docker.ParseDockerRef`, which keeps only
/// the digest of a reference carrying both, and resolves that name among the images (containerd v1.6.20
/// pkg/cri/server/helpers.go `localResolve`; `--digests` in cmd/ctr/commands/images/import.go: "whether to
/// create digest images"). Each import is checked by listing the names afterwards: containerd 2.x's default
/// path exits 0 without the digest name.
pub async fn import(s: &Session, ctr: &str, archive: &Path, images: &[ImageRef]) -> Result<(), OciError> {
    let names: Vec<String> = images.iter().flat_map(ImageRef::names).collect();
    let has_all = |out: &str| names.iter().all(|n| out.lines().any(|l| l.trim() == n));
    let list = format!("{ctr} -n {K8S_NAMESPACE} images ls -q");
    if has_all(&command_on(s, list.clone()).await?) {
        return Ok(());
    }
    let said = command_on(s, format!("{ctr} --version")).await?;
    let flags = import_flags(&said).map_err(|said| OciError::UnknownContainerd { node: s.node().to_string(), said })?;
    let repository = images.first().expect("read_archive gives at least one image").repository();
    // Names in the archive that are only a tag get this repository; so does every digest name.
    command_on(
        s,
        format!(
            "{ctr} -n {K8S_NAMESPACE} images import {} --digests --base-name {} --platform linux/amd64 {}",
            flags.join(" "),
            shell_quote(repository),
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

    #[test]
    fn import_takes_the_local_path_on_every_containerd_major() {
        // What `ctr --version` prints: Debian 12's 1.6.20 (read on a node), upstream's release builds (ctr's
        // version.Package is "github.com/containerd/containerd" up to 1.7, ".../v2" from 2.0, version.Version
        // "v1.7.27"/"v2.2.7"), Debian trixie's and sid's packages.
        for (said, flags) in [
            ("ctr github.com/containerd/containerd 1.6.20~ds1", &[][..]),
            ("ctr github.com/containerd/containerd v1.7.27", &["--local"][..]),
            ("ctr github.com/containerd/containerd 1.7.24~ds1", &["--local"][..]),
            ("ctr github.com/containerd/containerd/v2 v2.2.7", &["--local"][..]),
            ("ctr github.com/containerd/containerd/v2 2.1.9~ds1", &["--local"][..]),
        ] {
            assert_eq!(import_flags(said), Ok(flags), "{said}");
        }
        assert_eq!(import_flags("ctr: command not found\n"), Err("ctr: command not found".to_string()));
    }
}
