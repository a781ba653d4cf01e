//! Images into every worker's containerd before a phase deploys them, from the host's artifact cache: each
//! pinned image's OCI archive (its multi-arch index kept, digests preserved) is copied to the worker and
//! imported into the kubelet's namespace with a digest name, so the references the manifests carry
//! (`repository:tag@sha256:<index digest>`) resolve with no pull. Guests have no egress in tests; without
//! this, pods would pull cold, as in the seed.

use std::path::PathBuf;

use super::context::{Bootstrap, Ctx};
use super::node::{install, Put};
use super::BootstrapError;
use crate::artifacts::Artifact;
use crate::cluster::Cluster;
use crate::events::Events;
use crate::oci::{self, ImageRef};
use crate::phase::Phase;

/// Where image archives are kept on a worker (kept, so that a second run sees them unchanged and copies
/// nothing).
const IMAGE_DIR: &str = "/var/lib/kthw/images";

/// Where the archive of image artifact `a` is kept on a node.
pub fn remote_archive(a: &Artifact) -> PathBuf {
    PathBuf::from(IMAGE_DIR).join(format!("{}-{}.oci.tar", a.name, a.upstream_version))
}

/// One image to put on the nodes: its archive on the host, where it goes on a node, and its name.
#[derive(Debug, Clone)]
struct Image {
    local: PathBuf,
    remote: PathBuf,
    name: ImageRef,
}

/// Puts the image artifacts `names` on every worker; returns `node:path` of each archive copied.
pub async fn preload(ctx: &Ctx<'_>, names: &[&str]) -> Result<Vec<String>, BootstrapError> {
    let phase = ctx.phase;
    let images = names
        .iter()
        .map(|n| {
            let (a, local) = ctx.b.artifact(phase, n)?;
            let digest = a.sum().map_err(|e| BootstrapError::Spec { phase, detail: e.to_string() })?.to_string();
            let name = ImageRef { reference: a.locator().to_string(), digest };
            Ok(Image { local, remote: remote_archive(a), name })
        })
        .collect::<Result<Vec<_>, BootstrapError>>()?;
    let ctr = ctx.layout().ctr();
    let work = ctx.spec().workers().map(|w| (w.name.clone(), (images.clone(), ctr.clone()))).collect();
    ctx.per_node(work, |s, (images, ctr): (Vec<Image>, String)| async move {
        let puts: Vec<Put> = images.iter().map(|i| Put::file(&i.remote, &i.local, 0o644)).collect();
        let changed = install(phase, &s, &puts).await?;
        for i in &images {
            oci::import(&s, &ctr, &i.remote, std::slice::from_ref(&i.name))
                .await
                .map_err(|source| BootstrapError::Oci { phase, source: Box::new(source) })?;
        }
        Ok(changed)
    })
    .await
}

impl Bootstrap {
    /// Puts the pinned image artifacts `names` on every worker, as `phase` does before it deploys them: for
    /// callers that deploy images of their own after the phases (the scenarios' test workloads).
    pub async fn preload(
        &self,
        cluster: &Cluster,
        phase: Phase,
        names: &[&str],
        events: &Events,
    ) -> Result<Vec<String>, BootstrapError> {
        preload(&Ctx { b: self, cluster, phase, events }, names).await
    }
}
