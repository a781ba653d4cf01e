//! The table of phases: one module each, every one a function of the shared [`Ctx`]. Adding a phase is one
//! entry in [`Phase`] and one module here; no phase module imports the dispatcher or another phase.

mod cilium;
mod control_plane;
mod coredns;
mod etcd;
mod kubeconfigs;
mod nodes;
mod pki;
mod ready;
mod workers;

pub use cilium::{workloads as cilium_workloads, IMAGES as CILIUM_IMAGES, STATUS_OUTPUT as CILIUM_STATUS_OUTPUT};
pub use control_plane::apiserver_to_kubelet_rbac;
pub use etcd::ETCD_VERSION_OUTPUT;
pub use kubeconfigs::kubeconfig_files;
pub use pki::{load_or_generate, pki_files};
pub use ready::{NODES_FILE as READY_NODES_OUTPUT, PODS_FILE as READY_PODS_OUTPUT};

use super::context::Ctx;
use super::BootstrapError;
use crate::phase::Phase;

/// Runs `ctx.phase`; returns `node:path` of every file it installed or replaced.
pub(super) async fn run(ctx: &Ctx<'_>) -> Result<Vec<String>, BootstrapError> {
    match ctx.phase {
        Phase::Nodes => nodes::run(ctx).await,
        Phase::Pki => pki::run(ctx).await,
        Phase::Kubeconfigs => kubeconfigs::run(ctx).await,
        Phase::Etcd => etcd::run(ctx).await,
        Phase::ControlPlane => control_plane::run(ctx).await,
        Phase::Workers => workers::run(ctx).await,
        Phase::Cilium => cilium::run(ctx).await,
        Phase::Coredns => coredns::run(ctx).await,
        Phase::Ready => ready::run(ctx).await,
    }
}

/// Whether the shell check `check(cmd)` succeeds, run by a real `sh` with `cmd` (kubectl, getent) a test double that
/// prints `prints` (for unit tests of checks that parse a command's output).
#[cfg(test)]
fn succeeds_with_kubectl_double(check: impl Fn(&str) -> String, prints: &str) -> bool {
    let script = format!("kubectl_double() {{ printf '%s' \"$PRINTS\"; }}; {}", check("kubectl_double"));
    let out = std::process::Command::new("sh").arg("-c").arg(script).env("PRINTS", prints).output().unwrap();
    out.status.success()
}
