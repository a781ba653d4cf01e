//! Bringing a booted cluster the rest of the way, one phase per seed step, each idempotent, timed and logged
//! per node.
//!
//! Below the phases: where artifacts come from and what a running phase works with (`context`), the node
//! layout (`layout`), node-side work (`node`: install, start, wait), and what is installed, rendered as pure
//! functions of the spec (`units`, `configs`, `node_files`). The phases themselves are a table (`phases`),
//! which `run` times and records. [`check`] says before any VM boots what the pinned artifacts lack.

mod check;
pub mod cilium_install;
pub mod configs;
mod context;
pub mod coredns_manifest;
mod debs;
mod error;
mod layout;
mod node;
pub mod node_files;
pub mod nodecheck;
mod phases;
mod preload;
pub mod rollout;
mod run;
pub mod units;
mod unpack;

use std::path::Path;

pub use check::{check_artifacts, debian_etcd_hint, reach, Lack, Reach};
pub use context::Bootstrap;
pub use debs::install_debs;
pub use error::{render_lacks, BootstrapError, WaitFailed};
pub use layout::Layout;
pub use node::JOURNAL_LINES;
pub use node_files::NodeFile;
pub use phases::{apiserver_to_kubelet_rbac, kubeconfig_files, load_or_generate, pki_files};
/// What the cilium phase preloads and waits for, for scenarios that install Cilium themselves.
pub use phases::{cilium_workloads, CILIUM_IMAGES};
/// What the phases keep in the run directory (`RunDir::phase_output`), by file name.
pub use phases::{CILIUM_STATUS_OUTPUT, ETCD_VERSION_OUTPUT, READY_NODES_OUTPUT, READY_PODS_OUTPUT};
pub use run::PhaseReport;

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

#[cfg(test)]
mod containerd_tests;
#[cfg(test)]
mod tests;
