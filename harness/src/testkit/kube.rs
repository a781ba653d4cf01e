//! Kubernetes from the host, through kube-rs and the cluster's SSH forward to the apiserver
//! ([`crate::access`]): a user's YAML applied server-side and deleted, waits on any object's condition, pod
//! exec and logs, and namespaces of the test's own (whose pods the failure bundle keeps).

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, DynamicObject, LogParams, Patch, PatchParams};
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use serde_json::Value;

use super::manifest::{documents, refusal, Doc, ObjectRef};
use super::{Condition, TestCluster, TestError};
use crate::access::ApiClient;
use crate::bootstrap::Layout;
use crate::ssh::{shell_quote, Output};

/// The field manager of everything the test applies (server-side apply records it on each field).
pub const FIELD_MANAGER: &str = "kthw";
/// A wait on an object, on KVM; scaled under TCG.
pub const WAIT: Duration = Duration::from_secs(120);
/// A kind just defined (a CRD applied a moment ago) takes a moment to be served; on KVM, scaled under TCG.
const KIND_SERVED: Duration = Duration::from_secs(30);
/// `kubectl exec` of a test's command, on KVM; scaled under TCG.
const EXEC: Duration = Duration::from_secs(60);
/// How often waits look again.
const POLL: Duration = Duration::from_secs(1);

/// The test cluster's apiserver, as its admin. Clones share one forward.
///
/// ```no_run
/// # async fn f(cluster: kthw::testkit::TestCluster) -> Result<(), kthw::testkit::TestError> {
/// use kthw::testkit::{Condition, ObjectRef};
/// let k = cluster.kube().await?;
/// let ns = k.namespace("shop").await?;
/// let applied = k
///     .apply(&format!(
///         "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  selector:\n    \
///          matchLabels: {{app: web}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      \
///          containers: [{{name: web, image: registry.k8s.io/pause:3.10}}]\n"
///     ))
///     .await?;
/// k.wait_for(&applied[0], Condition::status("Available")).await?;
/// let pod = ObjectRef::pod(&ns, "client");
/// # let _ = pod;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Kube {
    cluster: TestCluster,
    api: Arc<ApiClient>,
}

impl TestCluster {
    /// The apiserver through a forward of this process (the control-plane phase must be done).
    pub async fn kube(&self) -> Result<Kube, TestError> {
        let api = crate::access::client(self.cluster()).await.map_err(|e| TestError::Access(Box::new(e)))?;
        Ok(Kube { cluster: self.clone(), api: Arc::new(api) })
    }
}

impl Kube {
    /// The kube-rs client, for typed calls of the test's own (`kthw::kube` is the kube-rs this was built with).
    pub fn client(&self) -> kube::Client {
        self.api.client.clone()
    }

    fn kube_err(what: String) -> impl FnOnce(kube::Error) -> TestError {
        move |e| TestError::Kube { what, source: Box::new(e) }
    }

    /// Applies every object of `yaml` (documents separated by `---`) server-side, in order, as field manager
    /// [`FIELD_MANAGER`] taking over conflicting fields; what it applied, namespaced objects without a
    /// namespace placed in `default`. A document the apiserver refuses stops the apply with its message,
    /// kind and name (the documents before it stay applied). Namespaces it applies become the test's.
    pub async fn apply(&self, yaml: &str) -> Result<Vec<ObjectRef>, TestError> {
        let mut applied = Vec::new();
        for doc in documents(yaml)? {
            let (api, target) = self.api_for(&doc.target).await?;
            let params = PatchParams::apply(FIELD_MANAGER).force();
            api.patch(&target.name, &params, &Patch::Apply(&doc.object))
                .await
                .map_err(|e| refused(&doc, &target, e))?;
            if target.kind == "Namespace" && target.api_version == "v1" {
                self.cluster.record_namespace(&target.name);
            }
            applied.push(target);
        }
        Ok(applied)
    }

    /// Deletes every object of `yaml`, last first; one already gone is no error. What it deleted (or found
    /// gone); [`Condition::Deleted`] waits until each is.
    pub async fn delete(&self, yaml: &str) -> Result<Vec<ObjectRef>, TestError> {
        let mut deleted = Vec::new();
        for doc in documents(yaml)?.into_iter().rev() {
            let (api, target) = self.api_for(&doc.target).await?;
            match api.delete(&target.name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(Kube::kube_err(format!("delete {target}"))(e)),
            }
            deleted.push(target);
        }
        Ok(deleted)
    }

    /// The object as the apiserver has it now, or None.
    pub async fn get(&self, obj: &ObjectRef) -> Result<Option<Value>, TestError> {
        let (api, target) = self.api_for(obj).await?;
        let got = api.get_opt(&target.name).await.map_err(Kube::kube_err(format!("get {target}")))?;
        Ok(got.map(|o| serde_json::to_value(o).expect("an object serializes")))
    }

    /// Waits until `obj` meets `condition` (120 s on KVM, scaled under TCG); the object as last read (None once deleted).
    /// The deadline's error says what the object last looked like.
    pub async fn wait_for(&self, obj: &ObjectRef, condition: Condition) -> Result<Option<Value>, TestError> {
        self.wait_for_within(obj, condition, WAIT).await
    }

    /// [`Kube::wait_for`] with a deadline of the test's own, written for KVM (scaled under TCG).
    pub async fn wait_for_within(
        &self,
        obj: &ObjectRef,
        condition: Condition,
        kvm_deadline: Duration,
    ) -> Result<Option<Value>, TestError> {
        let deadline = self.cluster.scaled(kvm_deadline);
        let start = Instant::now();
        loop {
            let seen = match self.get(obj).await {
                Ok(o) => match condition.judge(o.as_ref()) {
                    Ok(()) => return Ok(o),
                    Err(seen) => seen,
                },
                Err(e) => format!("the apiserver: {}", crate::chain(&e)),
            };
            if start.elapsed() >= deadline {
                let what = format!("{obj} {condition}");
                return Err(TestError::NotReached { what, waited: start.elapsed(), last: seen });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Runs `argv` in pod `ns/pod` (its first container) through `kubectl exec` on the control plane; its
    /// output whatever the exit status.
    pub async fn exec(&self, ns: &str, pod: &str, argv: &[&str]) -> Result<Output, TestError> {
        let words: Vec<String> = argv.iter().map(|a| shell_quote(a)).collect();
        let cmd = format!(
            "{} -n {} exec {} -- {}",
            shell_quote(&Layout::default().kubectl()),
            shell_quote(ns),
            shell_quote(pod),
            words.join(" ")
        );
        let cp = self.cluster.control_plane();
        self.cluster.node(&cp)?.with_deadlines(EXEC, super::node::WAIT).exec(&cmd).await
    }

    /// The logs of pod `ns/pod` (its only container, or the first).
    pub async fn logs(&self, ns: &str, pod: &str) -> Result<String, TestError> {
        let api: Api<Pod> = Api::namespaced(self.client(), ns);
        api.logs(pod, &LogParams::default()).await.map_err(Kube::kube_err(format!("logs of pod {ns}/{pod}")))
    }

    /// A fresh namespace `name` for the test (one left by an earlier run on a kept cluster is deleted first);
    /// the failure bundle takes every pod's description and logs in it.
    pub async fn namespace(&self, name: &str) -> Result<String, TestError> {
        let ns = ObjectRef::new("v1", "Namespace", name);
        if self.get(&ns).await?.is_some() {
            self.delete_namespace(name).await?;
        }
        self.apply(&namespace_doc(name)).await?;
        Ok(name.to_string())
    }

    /// Deletes namespace `name` and waits until it is gone.
    pub async fn delete_namespace(&self, name: &str) -> Result<(), TestError> {
        let ns = ObjectRef::new("v1", "Namespace", name);
        self.delete(&namespace_doc(name)).await?;
        self.wait_for(&ns, Condition::Deleted).await.map(|_| ())
    }

    /// The API for `target`'s kind, and `target` with its namespace as the apiserver places it (`default`
    /// for a namespaced object that names none, none for a cluster-scoped one). A kind just defined may take
    /// a moment to be served: it is looked up again until [`KIND_SERVED`] has passed.
    async fn api_for(&self, target: &ObjectRef) -> Result<(Api<DynamicObject>, ObjectRef), TestError> {
        let (resource, caps) = self.resource(target).await?;
        let mut placed = target.clone();
        let api = match caps.scope {
            Scope::Namespaced => {
                let ns = placed.namespace.get_or_insert_with(|| "default".to_string()).clone();
                Api::namespaced_with(self.client(), &ns, &resource)
            }
            Scope::Cluster => {
                placed.namespace = None;
                Api::all_with(self.client(), &resource)
            }
        };
        Ok((api, placed))
    }

    async fn resource(&self, target: &ObjectRef) -> Result<(ApiResource, ApiCapabilities), TestError> {
        let gvk = target.gvk();
        let deadline = self.cluster.scaled(KIND_SERVED);
        let start = Instant::now();
        loop {
            match kube::discovery::pinned_kind(&self.client(), &gvk).await {
                Ok(found) => return Ok(found),
                Err(e) if start.elapsed() >= deadline => {
                    let what =
                        format!("find kind {} {} among what the apiserver serves", target.api_version, target.kind);
                    return Err(Kube::kube_err(what)(e));
                }
                Err(_) => tokio::time::sleep(POLL).await,
            }
        }
    }
}

/// Namespace `name` as a document (JSON is YAML).
fn namespace_doc(name: &str) -> String {
    serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}).to_string()
}

/// An apply's error: the apiserver's refusal of `doc`, or a failure to ask.
fn refused(doc: &Doc, target: &ObjectRef, e: kube::Error) -> TestError {
    match e {
        kube::Error::Api(status) => refusal(&Doc { target: target.clone(), ..doc.clone() }, &status),
        e => TestError::Kube { what: format!("apply {target} (document {})", doc.index), source: Box::new(e) },
    }
}
