//! What a golden snapshot is keyed by: everything that determines the saved state. Two runs that agree on all
//! of it would boot and bootstrap to the same state, so one may be restored in place of the other.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::accel::Accel;
use crate::artifacts::Manifest;
use crate::phase::Phase;
use crate::spec::ClusterSpec;

/// Bumped whenever what a snapshot holds, or how it is restored, changes: older snapshots stop matching.
pub const FORMAT: u32 = 1;

/// The inputs, kept in the manifest so `kthw golden list` can say what a snapshot is of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyInputs {
    pub format: u32,
    /// The node image (its recipe hash and mirrors): the base disk, kernel and initrd.
    pub image_key: String,
    /// The spec, less its `name`: the cluster's name only names libvirt objects and the run directory.
    pub spec: serde_json::Value,
    /// Every artifact the phases through `phase` install, with its published sum.
    pub artifacts: Vec<String>,
    pub phase: Phase,
    pub accel: Accel,
    /// libvirt's hypervisor version: QEMU restores only migration streams it understands.
    pub hypervisor: u32,
    /// The harness wrote the files the phases installed: its version and a hash of its sources (build.rs),
    /// so a snapshot made by other code is never restored.
    pub harness: String,
    /// A golden state of a user's own ([`crate::testkit::Golden`]): this phase's state plus their setup step,
    /// which only they can name and version. Absent from the snapshots of a plain phase, whose keys it leaves
    /// as they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<StateName>,
}

/// The name and version a user gives their golden state. The version is their promise that the setup step
/// it names did the same thing each time: kthw cannot see into a closure, so a changed step under an
/// unchanged version would restore the state of the old one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateName {
    pub name: String,
    pub version: String,
}

impl KeyInputs {
    pub fn new(
        image_key: &str,
        spec: &ClusterSpec,
        artifacts: &Manifest,
        phase: Phase,
        accel: Accel,
        hypervisor: u32,
    ) -> KeyInputs {
        let mut spec = spec.clone();
        spec.name = String::new();
        let mut needed: Vec<String> = artifacts
            .needed_until(&spec, phase)
            .into_iter()
            .map(|a| {
                let sum = a.sum().map(|s| s.to_string()).unwrap_or_else(|_| "unpublished".into());
                format!("{} {} {sum}", a.name, a.version)
            })
            .collect();
        needed.sort();
        KeyInputs {
            format: FORMAT,
            image_key: image_key.to_string(),
            // A Value's maps are sorted: the same spec always serializes the same way.
            spec: serde_json::to_value(&spec).expect("a spec serializes"),
            artifacts: needed,
            phase,
            accel,
            hypervisor,
            harness: format!("{} {}", env!("CARGO_PKG_VERSION"), env!("KTHW_SOURCE_HASH")),
            state: None,
        }
    }

    /// `<phase>-<16 hex digits of the inputs' sha256>`, or `<phase>-<state name>-<16 hex digits>` for a user's
    /// state: readable, and stable across runs and hosts.
    pub fn key(&self) -> String {
        let canonical =
            serde_json::to_string(&serde_json::to_value(self).expect("inputs serialize")).expect("a value serializes");
        let hash = hex::encode(Sha256::digest(canonical.as_bytes()));
        match &self.state {
            Some(s) => format!("{}-{}-{}", self.phase.name(), s.name, &hash[..16]),
            None => format!("{}-{}", self.phase.name(), &hash[..16]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(spec: &ClusterSpec, phase: Phase) -> KeyInputs {
        KeyInputs::new("bookworm-0123", spec, &Manifest::pinned(), phase, Accel::Tcg, 10_000_000)
    }

    #[test]
    fn the_key_is_stable_and_ignores_only_the_cluster_name() {
        let spec = ClusterSpec::default();
        let key = inputs(&spec, Phase::Etcd).key();
        assert!(key.starts_with("etcd-") && key.len() == "etcd-".len() + 16, "{key}");
        assert_eq!(inputs(&spec, Phase::Etcd).key(), key);
        let renamed = ClusterSpec { name: "other".into(), ..spec.clone() };
        assert_eq!(inputs(&renamed, Phase::Etcd).key(), key);
        let mut addressed = spec.clone();
        addressed.nodes[1].address = "10.0.0.9".parse().unwrap();
        assert_ne!(inputs(&addressed, Phase::Etcd).key(), key);
        assert_ne!(inputs(&spec, Phase::Kubeconfigs).key(), key);
        let kvm = KeyInputs { accel: Accel::Kvm, ..inputs(&spec, Phase::Etcd) };
        assert_ne!(kvm.key(), key);
        let qemu = KeyInputs { hypervisor: 10_001_000, ..inputs(&spec, Phase::Etcd) };
        assert_ne!(qemu.key(), key);
    }

    #[test]
    fn a_users_state_is_keyed_by_its_name_and_version_on_top_of_the_phases_inputs() {
        let spec = ClusterSpec::default();
        let phase = inputs(&spec, Phase::Etcd);
        let state = |name: &str, version: &str| KeyInputs {
            state: Some(StateName { name: name.into(), version: version.into() }),
            ..inputs(&spec, Phase::Etcd)
        };
        let mine = state("with-my-files", "1").key();
        assert!(mine.starts_with("etcd-with-my-files-") && mine.len() == "etcd-with-my-files-".len() + 16, "{mine}");
        assert_eq!(state("with-my-files", "1").key(), mine, "the same promise restores the same snapshot");
        assert_ne!(state("with-my-files", "2").key(), mine, "a new version never restores the old setup's state");
        assert_ne!(state("with-other-files", "1").key(), mine);
        assert_ne!(phase.key(), mine);
        let other_phase = KeyInputs { phase: Phase::Kubeconfigs, ..state("with-my-files", "1") };
        assert_ne!(other_phase.key(), mine, "everything the phase's key has is in it too");
        let json = serde_json::to_value(&phase).unwrap();
        assert!(json.get("state").is_none(), "a phase's inputs serialize as before, so its keys stay");
    }

    #[test]
    fn the_artifacts_the_phases_install_are_part_of_the_key() {
        let spec = ClusterSpec::default();
        assert!(inputs(&spec, Phase::Kubeconfigs).artifacts.is_empty());
        let workers = inputs(&spec, Phase::Workers);
        assert!(workers.artifacts.iter().any(|a| a.starts_with("containerd ")), "{:?}", workers.artifacts);
        let current = ClusterSpec { versions: crate::spec::VersionSet::Current, ..spec.clone() };
        let newer = inputs(&current, Phase::Workers);
        assert_ne!(newer.key(), workers.key(), "the version set is part of the key");
        assert!(
            newer.artifacts.iter().any(|a| a.starts_with("containerd 1.35.4 sha256:91cd216e")),
            "{:?}",
            newer.artifacts
        );
        assert!(newer.artifacts.iter().all(|a| !workers.artifacts.contains(a)), "no pin is shared with the seed set");
        // Even a phase that installs no artifact: the spec names its set.
        assert_ne!(inputs(&current, Phase::Nodes).key(), inputs(&spec, Phase::Nodes).key());
    }
}
