//! The scenarios' own test workloads: a namespace each, pods pinned to a node, all from pinned images that
//! are on the workers already (nodes have no egress in tests), and waits on them through the API.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Namespace, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};

use crate::{ScenarioError, World};

/// `repository:tag@sha256:<index digest>` of artifact `name` in version set `set` (the cluster's): the form
/// the charts use, which a node resolves by digest from what preloading imported.
pub fn pinned_image(set: kthw::spec::VersionSet, name: &str) -> String {
    let m = kthw::artifacts::Manifest::pinned().for_set(set);
    let a = m.get(name).unwrap_or_else(|| panic!("the pinned manifest has {name}"));
    format!("{}@{}", a.locator(), a.digest.as_deref().expect("a pinned image has a digest"))
}

/// A pod of one container on `node`, placed there directly (no scheduler decision to wait for).
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

impl World<'_> {
    fn kube_err(&self, what: String) -> impl FnOnce(kube::Error) -> ScenarioError + '_ {
        move |e| ScenarioError::Kube { scenario: self.name(), what, source: Box::new(e) }
    }

    /// A fresh namespace for this scenario's workloads (an old one from an earlier run on a kept cluster is
    /// deleted first).
    pub async fn namespace(&self) -> Result<String, ScenarioError> {
        let ns = format!("kthw-{}", self.name());
        let api: Api<Namespace> = Api::all(self.client());
        if api.get_opt(&ns).await.map_err(self.kube_err(format!("get namespace {ns}")))?.is_some() {
            self.delete_namespace(&ns).await?;
        }
        let obj = Namespace {
            metadata: ObjectMeta { name: Some(ns.clone()), ..ObjectMeta::default() },
            ..Namespace::default()
        };
        api.create(&PostParams::default(), &obj).await.map_err(self.kube_err(format!("create namespace {ns}")))?;
        Ok(ns)
    }

    /// Deletes `ns` and waits until it is gone.
    pub async fn delete_namespace(&self, ns: &str) -> Result<(), ScenarioError> {
        let api: Api<Namespace> = Api::all(self.client());
        let _ = api.delete(ns, &DeleteParams::default()).await;
        self.wait_until(&format!("namespace {ns} deleted"), self.scaled(Duration::from_secs(120)), async || {
            match api.get_opt(ns).await {
                Ok(None) => Ok(Some(())),
                Ok(Some(n)) => Err(format!("{ns} is {:?}", n.status.and_then(|s| s.phase))),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
    }

    /// Creates `pod` in `ns` and waits until it runs with an address; returns it as last read.
    pub async fn run_pod(&self, ns: &str, pod: &Pod) -> Result<Pod, ScenarioError> {
        let api: Api<Pod> = Api::namespaced(self.client(), ns);
        let name = pod.metadata.name.clone().unwrap_or_default();
        api.create(&PostParams::default(), pod).await.map_err(self.kube_err(format!("create pod {ns}/{name}")))?;
        self.running(ns, &name).await
    }

    /// Waits until pod `ns/name` runs with an address.
    pub async fn running(&self, ns: &str, name: &str) -> Result<Pod, ScenarioError> {
        let api: Api<Pod> = Api::namespaced(self.client(), ns);
        self.wait_until(&format!("pod {ns}/{name} running"), self.scaled(Duration::from_secs(120)), async || {
            let p = api.get(name).await.map_err(|e| e.to_string())?;
            let status = p.status.clone().unwrap_or_default();
            let ready = status.phase.as_deref() == Some("Running") && status.pod_ip.is_some();
            if ready {
                return Ok(Some(p));
            }
            let waiting: Vec<String> = status
                .container_statuses
                .iter()
                .flatten()
                .filter_map(|c| c.state.as_ref()?.waiting.as_ref().map(|w| format!("{}: {:?}", c.name, w.reason)))
                .collect();
            Err(format!("phase {:?}, ip {:?}, waiting {waiting:?}", status.phase, status.pod_ip))
        })
        .await
    }

    /// `kubectl exec` into `ns/pod`: its output whatever the exit status.
    pub async fn exec_in(&self, ns: &str, pod: &str, cmd: &str) -> Result<kthw::ssh::Output, ScenarioError> {
        self.kubectl(&format!("-n {ns} exec {pod} -- {cmd}")).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pinned_pod_runs_its_image_by_tag_and_index_digest_on_its_node() {
        let image = pinned_image(kthw::spec::VersionSet::Seed, "pause");
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
        assert!(mock(kthw::spec::VersionSet::Current).starts_with("quay.io/cilium/json-mock:v1.4.1@sha256:6a66df90"));
        assert_ne!(mock(kthw::spec::VersionSet::Seed), mock(kthw::spec::VersionSet::Current), "each set its own pin");
    }
}
