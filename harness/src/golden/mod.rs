//! Golden snapshots: a cluster saved once at a completed phase (every node's memory and frozen disk), keyed by
//! everything that determines that state ([`KeyInputs`]), and restored as many private copies as tests need,
//! each on its own isolated network with the same addresses, in seconds instead of a boot.
//!
//! Costs, per node: the save image holds the guest's touched memory (QEMU writes zero pages as markers, so a
//! 2 GiB node that uses 400 MB saves about that much), the frozen disk holds only what the node wrote over
//! the base image. A copy adds a small overlay, and transiently its own save image (the snapshot's stream
//! behind the copy's header), deleted as soon as QEMU has read it. `kthw golden prune` frees them.

pub mod key;
pub mod restore;
pub mod save;
pub mod saveimage;
pub mod store;
pub mod template;

use std::path::{Path, PathBuf};

pub use key::{KeyInputs, StateName};
pub use restore::{restore, Restored};
pub use save::save;
pub use store::{GoldenManifest, KeyLock, Listed, Pruned};

use crate::cluster::ClusterError;
use crate::virt::VirtError;

/// Why a snapshot could not be made, found or restored.
#[derive(Debug, thiserror::Error)]
pub enum GoldenError {
    #[error("no golden snapshot {key}")]
    NotFound { key: String },
    #[error("the golden snapshot in {} is corrupt or incomplete: {why}; it is never used, and is rebuilt (or `kthw golden prune` removes it)", dir.display())]
    Corrupt { dir: PathBuf, why: String },
    #[error("the golden snapshot {key} was made from node image {image_key}, which is no longer cached ({} is gone): its disks cannot be used; `kthw golden prune` removes it, and the next run rebuilds it from the current image", base.display())]
    ImagePruned { key: String, image_key: String, base: PathBuf },
    #[error("node {node}: the saved domain XML is not what kthw defines: {why}")]
    Template { node: String, why: String },
    #[error("node {node}: the clock could not be set after the restore: {why}")]
    Clock { node: String, why: String },
    #[error("cannot {what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Virt(#[from] VirtError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

impl GoldenError {
    pub(crate) fn io(what: &'static str, path: &Path, source: std::io::Error) -> GoldenError {
        GoldenError::Io { what, path: path.to_path_buf(), source }
    }

    /// A snapshot that exists but must not be used (rebuilt by whoever holds the exclusive lock).
    pub fn is_unusable(&self) -> bool {
        matches!(self, GoldenError::Corrupt { .. } | GoldenError::ImagePruned { .. })
    }
}
