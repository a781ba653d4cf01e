//! The phases of bringing a cluster up, in the seed's order: the one list of them. `kthw up --until PHASE`
//! stops after any of them, the artifact manifest names the phases that need each artifact, and run records
//! name the phase they time. It sits at the bottom of the library so that every layer can name a phase.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One step of the seed's checklist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Every node booted and answering SSH (`Cluster::up`).
    Nodes,
    /// The CA and every certificate, generated once into the run directory and installed on the nodes.
    Pki,
    /// Kubeconfigs for admin, the controller manager, the scheduler and each kubelet, installed on the nodes.
    Kubeconfigs,
    /// etcd with TLS on the control plane.
    Etcd,
    /// kube-apiserver, kube-controller-manager and kube-scheduler on the control plane.
    ControlPlane,
    /// containerd and the kubelet on every worker, each registered as a node.
    Workers,
    /// The seed's step 8: Cilium installed with the cilium CLI as CNI and kube-proxy replacement.
    Cilium,
    /// The seed's step 9: CoreDNS serving the cluster domain at `network.cluster_dns`.
    Coredns,
    /// The seed's step 10: every worker Ready.
    Ready,
}

impl Phase {
    pub const ALL: [Phase; 9] = [
        Phase::Nodes,
        Phase::Pki,
        Phase::Kubeconfigs,
        Phase::Etcd,
        Phase::ControlPlane,
        Phase::Workers,
        Phase::Cilium,
        Phase::Coredns,
        Phase::Ready,
    ];

    /// The last phase: what `kthw up` runs to when given no `--until`.
    pub const LAST: Phase = Phase::Ready;

    pub fn name(self) -> &'static str {
        match self {
            Phase::Nodes => "nodes",
            Phase::Pki => "pki",
            Phase::Kubeconfigs => "kubeconfigs",
            Phase::Etcd => "etcd",
            Phase::ControlPlane => "control-plane",
            Phase::Workers => "workers",
            Phase::Cilium => "cilium",
            Phase::Coredns => "coredns",
            Phase::Ready => "ready",
        }
    }

    /// What a person sees the phase do.
    pub fn describe(self) -> &'static str {
        match self {
            Phase::Nodes => "every node booted and answering SSH",
            Phase::Pki => "CA and certificates generated and installed",
            Phase::Kubeconfigs => "kubeconfigs generated and installed",
            Phase::Etcd => "etcd serving TLS on the control plane",
            Phase::ControlPlane => "apiserver, controller manager and scheduler running",
            Phase::Workers => "containerd and kubelet on every worker, each registered as a node",
            Phase::Cilium => "Cilium running on every worker as CNI and kube-proxy replacement",
            Phase::Coredns => "CoreDNS answering cluster names at the cluster DNS address",
            Phase::Ready => "every worker Ready",
        }
    }

    /// Every phase from the first through `self`.
    pub fn through(self) -> impl Iterator<Item = Phase> {
        Phase::ALL.into_iter().take_while(move |p| *p <= self)
    }

    /// The phase before this one; None for `Nodes`.
    pub fn previous(self) -> Option<Phase> {
        Phase::ALL.into_iter().take_while(|p| *p < self).last()
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A phase name that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown phase {given:?}; the phases, in order: {}", Phase::ALL.map(Phase::name).join(", "))]
pub struct UnknownPhase {
    pub given: String,
}

impl FromStr for Phase {
    type Err = UnknownPhase;

    fn from_str(s: &str) -> Result<Phase, UnknownPhase> {
        Phase::ALL.into_iter().find(|p| p.name() == s).ok_or_else(|| UnknownPhase { given: s.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_in_seed_order() {
        let names: Vec<String> = Phase::ALL.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            names,
            ["nodes", "pki", "kubeconfigs", "etcd", "control-plane", "workers", "cilium", "coredns", "ready"]
        );
        for p in Phase::ALL {
            assert_eq!(p.name().parse::<Phase>(), Ok(p));
        }
        assert!(Phase::ALL.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(Phase::LAST, *Phase::ALL.last().unwrap());
    }

    #[test]
    fn an_unknown_name_lists_the_phases() {
        let e = "kube-proxy".parse::<Phase>().unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown phase \"kube-proxy\"; the phases, in order: nodes, pki, kubeconfigs, etcd, control-plane, \
             workers, cilium, coredns, ready"
        );
    }

    #[test]
    fn through_and_previous_walk_the_order() {
        assert_eq!(
            Phase::Etcd.through().collect::<Vec<_>>(),
            [Phase::Nodes, Phase::Pki, Phase::Kubeconfigs, Phase::Etcd]
        );
        assert_eq!(Phase::Nodes.through().collect::<Vec<_>>(), [Phase::Nodes]);
        assert_eq!(Phase::ControlPlane.previous(), Some(Phase::Etcd));
        assert_eq!(Phase::Nodes.previous(), None);
    }
}
