//! The `ready` phase, the seed's step 10: every worker Ready (its kubelet reports the CNI working). What
//! `kubectl get nodes -o wide` and `kubectl get pods -A -o wide` then say is kept in the run directory for
//! the person who brought the cluster up.

use std::time::Duration;

use crate::bootstrap::context::Ctx;
use crate::bootstrap::node::{wait, Wait};
use crate::bootstrap::BootstrapError;
use crate::spec::ClusterSpec;

/// Written for KVM: a worker turns Ready seconds after its Cilium agent runs; scaled by the accelerator.
const READY_DEADLINE: Duration = Duration::from_secs(60);

/// The files the phase keeps, under the run directory's `phases/ready/`.
pub const NODES_FILE: &str = "nodes.txt";
pub const PODS_FILE: &str = "pods.txt";

/// A shell check, run with root's kubectl, that succeeds once every worker's Ready condition is True; it
/// prints each worker's Ready status so that a failed wait shows which are not.
pub fn every_worker_ready(kubectl: &str, spec: &ClusterSpec) -> String {
    let jsonpath = r#"{range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#;
    let wanted: Vec<String> = spec.workers().map(|w| format!("{}=True", w.name)).collect();
    format!(
        "s=$({kubectl} get nodes -o jsonpath='{jsonpath}') && echo \"$s\" && for w in {}; do \
         echo \"$s\" | grep -qx \"$w\" || exit 1; done",
        wanted.join(" ")
    )
}

pub(super) async fn run(ctx: &Ctx<'_>) -> Result<Vec<String>, BootstrapError> {
    let (phase, spec) = (ctx.phase, ctx.spec());
    let s = ctx.session(&spec.control_plane().name).await?;
    let kubectl = ctx.layout().kubectl();
    let ready = Wait {
        what: "every worker to be Ready".into(),
        check: every_worker_ready(&kubectl, spec),
        unit: None,
        deadline: ctx.accel().scale(READY_DEADLINE),
    };
    wait(phase, &s, &ready, ctx.events).await?;
    for (file, args) in [(NODES_FILE, "get nodes -o wide"), (PODS_FILE, "get pods -A -o wide")] {
        let out = ctx.ssh(s.succeed(&format!("{kubectl} {args}")).await)?.stdout_lossy();
        ctx.keep_output(file, &out)?;
    }
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The check with kubectl printing `listing` as it prints the jsonpath (one `name=status` line per node).
    fn check_against(listing: &str) -> bool {
        super::super::succeeds_with_kubectl_double(|k| every_worker_ready(k, &ClusterSpec::default()), listing)
    }

    #[test]
    fn ready_means_every_worker_ready_and_no_fewer() {
        assert!(check_against("worker-node-1=True\nworker-node-2=True\n"));
        assert!(!check_against("worker-node-1=True\nworker-node-2=False\n"));
        assert!(!check_against("worker-node-1=True\n"));
        assert!(!check_against("worker-node-1=True\nworker-node-22=True\n"), "names match whole lines");
    }
}
