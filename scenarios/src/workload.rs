//! The scenarios' own test workloads: a namespace each, pods pinned to a node, all from pinned images that
//! are on the workers already (nodes have no egress in tests; `kthw::testkit::pinned_pod`), and waits on
//! them through the test API.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kthw::testkit::{Condition, ObjectRef};
use kube::api::{Api, PostParams};

use crate::{ScenarioError, World};

/// A pod's wait to run, on KVM; scaled under TCG.
const POD_RUNNING: Duration = Duration::from_secs(120);

impl World {
    /// A fresh namespace for this scenario's workloads (an old one from an earlier run on a kept cluster is
    /// deleted first); a failure bundle takes its pods' descriptions and logs.
    pub async fn namespace(&self) -> Result<String, ScenarioError> {
        self.kube.namespace(&format!("kthw-{}", self.name())).await.map_err(self.err())
    }

    /// Deletes `ns` and waits until it is gone.
    pub async fn delete_namespace(&self, ns: &str) -> Result<(), ScenarioError> {
        self.kube.delete_namespace(ns).await.map_err(self.err())
    }

    /// Creates `pod` in `ns` and waits until it runs with an address; returns it as last read.
    pub async fn run_pod(&self, ns: &str, pod: &Pod) -> Result<Pod, ScenarioError> {
        let api: Api<Pod> = Api::namespaced(self.client(), ns);
        let name = pod.metadata.name.clone().unwrap_or_default();
        api.create(&PostParams::default(), pod).await.map_err(|e| ScenarioError::Kube {
            scenario: self.name(),
            what: format!("create pod {ns}/{name}"),
            source: Box::new(e),
        })?;
        self.running(ns, &name).await
    }

    /// Waits until pod `ns/name` runs with an address.
    pub async fn running(&self, ns: &str, name: &str) -> Result<Pod, ScenarioError> {
        let pod = ObjectRef::pod(ns, name);
        let seen = self.kube.wait_for_within(&pod, Condition::PodRunning, POD_RUNNING).await.map_err(self.err())?;
        let seen = seen.unwrap_or_default();
        serde_json::from_value(seen).map_err(|e| ScenarioError::Command {
            scenario: self.name(),
            node: "the apiserver".into(),
            cmd: format!("get pod {ns}/{name}"),
            status: "not a pod".into(),
            output: e.to_string(),
        })
    }

    /// `kubectl exec` into `ns/pod`: its output whatever the exit status.
    pub async fn exec_in(&self, ns: &str, pod: &str, cmd: &str) -> Result<kthw::ssh::Output, ScenarioError> {
        self.kubectl(&format!("-n {ns} exec {pod} -- {cmd}")).await
    }
}
