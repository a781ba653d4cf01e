//! Pods from pinned images: the images kthw pins (harness/artifacts.toml), which the phases preload on the
//! workers by their multi-arch index digest, so a test's pod starts with no pull (nodes have no egress in
//! tests).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::spec::VersionSet;

/// `repository:tag@sha256:<index digest>` of pinned image artifact `name` in version set `set` (the
/// cluster's): the form the charts use, which a node resolves by digest from what preloading imported.
/// Panics on a name that is not a pinned image: a test's typo, not a condition to handle.
///
/// ```
/// let pause = kthw::testkit::pinned_image(kthw::spec::VersionSet::Seed, "pause");
/// assert!(pause.starts_with("registry.k8s.io/pause:3.10@sha256:"));
/// ```
pub fn pinned_image(set: VersionSet, name: &str) -> String {
    let m = crate::artifacts::Manifest::pinned().for_set(set);
    let a = m.get(name).unwrap_or_else(|| panic!("the pinned manifest has no {name}"));
    format!("{}@{}", a.locator(), a.digest.as_deref().unwrap_or_else(|| panic!("{name} is no pinned image")))
}

/// A pod of one container `main` on `node`, placed there directly (no scheduler decision to wait for), that
/// never pulls an image the node has.
///
/// ```
/// use kthw::testkit::{pinned_image, pinned_pod};
/// let image = pinned_image(kthw::spec::VersionSet::Seed, "pause");
/// let pod = pinned_pod("p", "worker-node-2", &image, None, &[("app", "x")]);
/// assert_eq!(pod.spec.unwrap().node_name.as_deref(), Some("worker-node-2"));
/// ```
pub fn pinned_pod(name: &str, node: &str, image: &str, command: Option<Vec<String>>, labels: &[(&str, &str)]) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            containers: vec![Container {
                name: "main".into(),
                image: Some(image.into()),
                image_pull_policy: Some("IfNotPresent".into()),
                command,
                ..Container::default()
            }],
            termination_grace_period_seconds: Some(1),
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pinned_pod_runs_its_image_by_tag_and_index_digest_on_its_node() {
        let image = pinned_image(VersionSet::Seed, "pause");
        assert_eq!(
            image,
            "registry.k8s.io/pause:3.10@sha256:ee6521f290b2168b6e0935a181d4cff9be1ac3f505666ef0e3c98fae8199917a"
        );
        let pod = pinned_pod("p", "worker-node-2", &image, None, &[("app", "x")]);
        let spec = pod.spec.unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("worker-node-2"));
        assert_eq!(spec.containers[0].image.as_deref(), Some(image.as_str()));
        assert_eq!(spec.containers[0].image_pull_policy.as_deref(), Some("IfNotPresent"), "no pull when it is there");
        let mock = |set| pinned_image(set, "connectivity-json-mock");
        assert!(mock(VersionSet::Current).starts_with("quay.io/cilium/json-mock:v1.4.1@sha256:6a66df90"));
        assert_ne!(mock(VersionSet::Seed), mock(VersionSet::Current), "each set its own pin");
    }
}
