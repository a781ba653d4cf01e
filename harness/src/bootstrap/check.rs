//! Which pinned artifacts the phases need and this host lacks, decided before any VM boots.

use std::path::PathBuf;

use crate::artifacts::{Cache, Manifest};
use crate::phase::Phase;
use crate::spec::{ClusterSpec, Origin};

/// An artifact a phase needs and the artifact directory does not verifiably hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lack {
    /// The first phase that needs it.
    pub phase: Phase,
    pub artifact: String,
    /// Where it would be.
    pub path: PathBuf,
    /// The command that provides it.
    pub command: String,
    /// What is at `path` instead, when something is (a file whose checksum is not the pinned one).
    pub found: Option<String>,
}

/// How far a run can get with the artifacts at hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    /// The last phase that can run.
    pub last: Phase,
    /// The first phase that cannot, and what it lacks; None when every phase asked for can run.
    pub blocked: Option<(Phase, Vec<Lack>)>,
}

/// Every artifact the phases through `until` need and `cache` lacks, each with the phase that needs it first
/// and the command that provides it. Empty: the run can go ahead.
pub fn check_artifacts(spec: &ClusterSpec, until: Phase, cache: &Cache, manifest: &Manifest) -> Vec<Lack> {
    // One pass over the directory (it may hash a file), then ordered by the phase that needs each first.
    let mut lacks: Vec<Lack> = cache
        .missing(manifest, spec, until)
        .into_iter()
        .filter_map(|m| {
            let phase = until.through().find(|p| m.artifact.phases.contains(p))?;
            Some(Lack { phase, artifact: m.artifact.name.clone(), path: m.path, command: m.command, found: m.found })
        })
        .collect();
    lacks.sort_by_key(|l| l.phase);
    lacks
}

/// How far toward `until` the artifacts in `cache` allow (`kthw up --partial`).
pub fn reach(spec: &ClusterSpec, until: Phase, cache: &Cache, manifest: &Manifest) -> Reach {
    let lacks = check_artifacts(spec, until, cache, manifest);
    let Some(first) = lacks.first().map(|l| l.phase) else { return Reach { last: until, blocked: None } };
    let blocked = lacks.into_iter().filter(|l| l.phase == first).collect();
    Reach { last: first.previous().expect("nodes needs no artifact"), blocked: Some((first, blocked)) }
}

/// A hint for a run that cannot reach `etcd` only for lack of upstream etcd: Debian's etcd 3.5 works with no
/// upstream download (the host fetches it from Debian's package registry).
pub fn debian_etcd_hint(spec: &ClusterSpec, lacks: &[Lack]) -> Option<String> {
    let upstream_etcd_missing = spec.etcd_from == Origin::Upstream && lacks.iter().any(|l| l.phase == Phase::Etcd);
    upstream_etcd_missing.then(|| {
        "etcd_from = \"debian\" in the spec runs Debian trixie's etcd 3.5 (etcd-server and etcd-client, which the \
         host fetches through apt, Debian's package registry) and needs no upstream download: a run gets through \
         the etcd phase on a host without the upstream artifacts"
            .to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(lacks: &[Lack]) -> Vec<(Phase, &str)> {
        lacks.iter().map(|l| (l.phase, l.artifact.as_str())).collect()
    }

    /// Marks every pinned artifact as fetched and verified in `cache`, the way `Cache::fetch` leaves it (a
    /// stand-in file with the marker recording the published sum; nothing is hashed by `state_of`).
    fn fake_verified(cache: &Cache, manifest: &Manifest) {
        for a in &manifest.artifacts {
            let path = cache.path_of(a);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, b"stand-in").unwrap();
            let mut marker = path.into_os_string();
            marker.push(".verified");
            std::fs::write(marker, format!("{}\n", a.sum().unwrap())).unwrap();
        }
    }

    #[test]
    fn an_empty_artifact_directory_lacks_every_upstream_artifact_by_the_phase_that_needs_it() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::air_gapped(dir.path().to_path_buf());
        let spec = ClusterSpec::default();
        let lacks = check_artifacts(&spec, Phase::Workers, &cache, &Manifest::pinned());
        assert_eq!(
            names(&lacks),
            [
                (Phase::Etcd, "etcd"),
                (Phase::ControlPlane, "kubernetes-server"),
                (Phase::Workers, "kubernetes-node"),
                (Phase::Workers, "pause"),
                (Phase::Workers, "containerd"),
                (Phase::Workers, "runc"),
                (Phase::Workers, "cni-plugins")
            ]
        );
        for l in &lacks {
            assert!(l.command.starts_with(&format!("kthw artifacts fetch --dir {}", dir.path().display())), "{l:?}");
            assert!(l.path.starts_with(dir.path()), "{l:?}");
        }
        assert!(check_artifacts(&spec, Phase::Kubeconfigs, &cache, &Manifest::pinned()).is_empty());
        assert!(check_artifacts(&spec, Phase::Nodes, &cache, &Manifest::pinned()).is_empty());
    }

    #[test]
    fn without_downloads_upstream_etcd_stops_before_etcd_and_debian_etcd_gets_through_it() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_path_buf());
        let manifest = Manifest::pinned();
        let mut spec = ClusterSpec::default();

        let r = reach(&spec, Phase::Workers, &cache, &manifest);
        assert_eq!(r.last, Phase::Kubeconfigs);
        let (blocked, lacks) = r.blocked.unwrap();
        assert_eq!((blocked, names(&lacks)), (Phase::Etcd, vec![(Phase::Etcd, "etcd")]));
        assert!(debian_etcd_hint(&spec, &lacks).unwrap().contains("etcd_from = \"debian\""));

        spec.etcd_from = Origin::Debian;
        let r = reach(&spec, Phase::Workers, &cache, &manifest);
        assert_eq!(r.last, Phase::Etcd);
        let (blocked, lacks) = r.blocked.unwrap();
        assert_eq!((blocked, names(&lacks)), (Phase::ControlPlane, vec![(Phase::ControlPlane, "kubernetes-server")]));
        assert_eq!(debian_etcd_hint(&spec, &lacks), None);
        assert_eq!(reach(&spec, Phase::Etcd, &cache, &manifest), Reach { last: Phase::Etcd, blocked: None });
    }

    #[test]
    fn with_every_artifact_verified_nothing_is_lacking() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_path_buf());
        let manifest = Manifest::pinned();
        fake_verified(&cache, &manifest);
        let spec = ClusterSpec::default();
        assert!(check_artifacts(&spec, Phase::Workers, &cache, &manifest).is_empty());
        assert_eq!(reach(&spec, Phase::Workers, &cache, &manifest), Reach { last: Phase::Workers, blocked: None });
    }
}
