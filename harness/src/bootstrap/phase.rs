//! The phases of bringing a cluster up, in the seed's order. `kthw up --until PHASE` stops after any of them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One step of the seed's checklist. Cilium and CoreDNS come in later issues: they are not phases until they
/// do something.
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
}

impl Phase {
    pub const ALL: [Phase; 6] =
        [Phase::Nodes, Phase::Pki, Phase::Kubeconfigs, Phase::Etcd, Phase::ControlPlane, Phase::Workers];

    /// The last phase: what `kthw up` runs to when given no `--until`.
    pub const LAST: Phase = Phase::Workers;

    pub fn name(self) -> &'static str {
        match self {
            Phase::Nodes => "nodes",
            Phase::Pki => "pki",
            Phase::Kubeconfigs => "kubeconfigs",
            Phase::Etcd => "etcd",
            Phase::ControlPlane => "control-plane",
            Phase::Workers => "workers",
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
    use crate::artifacts::PHASES;

    #[test]
    fn names_round_trip_in_seed_order() {
        let names: Vec<String> = Phase::ALL.iter().map(|p| p.to_string()).collect();
        assert_eq!(names, ["nodes", "pki", "kubeconfigs", "etcd", "control-plane", "workers"]);
        for p in Phase::ALL {
            assert_eq!(p.name().parse::<Phase>(), Ok(p));
        }
        assert!(Phase::ALL.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(Phase::LAST, *Phase::ALL.last().unwrap());
    }

    #[test]
    fn an_unknown_name_lists_the_phases() {
        let e = "cilium".parse::<Phase>().unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown phase \"cilium\"; the phases, in order: nodes, pki, kubeconfigs, etcd, control-plane, workers"
        );
    }

    #[test]
    fn every_phase_after_nodes_is_one_the_artifact_manifest_knows_in_the_same_order() {
        let ours: Vec<&str> = Phase::ALL[1..].iter().map(|p| p.name()).collect();
        assert_eq!(ours, PHASES[..ours.len()], "artifacts::PHASES begins with our phases");
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
