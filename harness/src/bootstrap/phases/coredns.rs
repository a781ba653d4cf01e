//! The `coredns` phase, the seed's step 9: the pinned CoreDNS image put on every worker, its objects
//! (`coredns_manifest`: RBAC, Corefile, Deployment, the Service at `network.cluster_dns`) applied with
//! server-side apply through the host's API client, and done when the Deployment is available and
//! `kubernetes.default.svc.<cluster domain>` resolves from a pod to the apiserver's ClusterIP.
//!
//! The question is asked by a pod of its own in the pod network (`dnsPolicy: ClusterFirst`, so its resolver is
//! the cluster DNS address, reached through Cilium's service translation: what any pod sees), from the
//! pinned Cilium image the previous phase put on the workers (it has a shell and glibc's `getent`). Its
//! answer reaches the harness through the API alone: the pod's phase (Succeeded or Failed, `restartPolicy:
//! Never`) and its termination message, which the kubelet fills from the end of its log on failure
//! (`terminationMessagePolicy: FallbackToLogsOnError`, core/v1 Container). Not `kubectl exec` or `logs`:
//! those make the apiserver dial the kubelet by node name, which fails when node names do not resolve on the
//! control plane (`resolve_node_names = false`, the seed's own cluster and the dns-node-names scenario).
//! Control-plane-1 cannot ask itself: it runs no agent and has no route to ClusterIPs.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::Resource;
use serde::Serialize;

use crate::access;
use crate::bootstrap::context::Ctx;
use crate::bootstrap::coredns_manifest::{coredns, CoreDns, NAME, NAMESPACE};
use crate::bootstrap::preload::preload;
use crate::bootstrap::rollout::{self, Workload};
use crate::bootstrap::{BootstrapError, WaitFailed};
use crate::spec::ClusterSpec;

/// The field manager kthw applies as.
const FIELD_MANAGER: &str = "kthw";
/// Written for KVM: CoreDNS is ready seconds after its image is on the node; scaled under TCG.
const ROLLOUT_DEADLINE: Duration = Duration::from_secs(60);
const RESOLVE_DEADLINE: Duration = Duration::from_secs(60);

/// How long one probe pod may take to run; a failed or slow one is replaced until the phase's deadline.
const PROBE_ATTEMPT: Duration = Duration::from_secs(30);

/// The probe's shell check, with `getent` the command that answers: the apiserver's service name resolves to
/// its ClusterIP. getent's answer goes to stderr too, so that a failure's log says what it got.
pub fn resolve_check(getent: &str, spec: &ClusterSpec) -> String {
    let name = format!("kubernetes.default.svc.{}", spec.network.cluster_domain);
    format!(
        "{getent} hosts {name} | tee /dev/stderr | grep -qE '^{} +{}$'",
        spec.network.apiserver_service_ip.to_string().replace('.', "\\."),
        name.replace('.', "\\.")
    )
}

/// The probe pod: the check, once, in the pod network, from `image`.
pub fn probe_pod(spec: &ClusterSpec, image: &str, name: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NAMESPACE.into()),
            labels: Some([("app.kubernetes.io/managed-by".to_string(), FIELD_MANAGER.to_string())].into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            dns_policy: Some("ClusterFirst".into()),
            containers: vec![Container {
                name: "resolve".into(),
                image: Some(image.into()),
                image_pull_policy: Some("IfNotPresent".into()),
                command: Some(vec!["sh".into(), "-c".into(), resolve_check("getent", spec)]),
                termination_message_policy: Some("FallbackToLogsOnError".into()),
                ..Container::default()
            }],
            termination_grace_period_seconds: Some(0),
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

/// What a probe pod came to: `Some(Ok)` Succeeded, `Some(Err(what it said))` Failed, `None` not yet.
pub fn probe_outcome(pod: &Pod) -> Option<Result<(), String>> {
    let status = pod.status.as_ref()?;
    let said = || {
        let terminated =
            status.container_statuses.iter().flatten().filter_map(|c| c.state.as_ref()?.terminated.as_ref());
        terminated
            .map(|t| format!("exit {}: {}", t.exit_code, t.message.clone().unwrap_or_default().trim()))
            .collect::<Vec<_>>()
            .join("; ")
    };
    match status.phase.as_deref() {
        Some("Succeeded") => Some(Ok(())),
        Some("Failed") => Some(Err(said())),
        _ => None,
    }
}

/// Runs probe pods until one succeeds, at most `deadline`.
async fn probe(ctx: &Ctx<'_>, client: &kube::Client, image: &str) -> Result<(), BootstrapError> {
    let (phase, spec) = (ctx.phase, ctx.spec());
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let deadline = ctx.accel().scale(RESOLVE_DEADLINE);
    let start = Instant::now();
    let mut last = String::from("no probe ran");
    for attempt in 1.. {
        let name = format!("kthw-coredns-probe-{attempt}");
        let _ = pods.delete(&name, &DeleteParams::default()).await;
        match pods.create(&PostParams::default(), &probe_pod(spec, image, &name)).await {
            Err(e) => last = format!("cannot create {name}: {e}"),
            Ok(_) => {
                let tried = Instant::now();
                while tried.elapsed() < ctx.accel().scale(PROBE_ATTEMPT) && start.elapsed() < deadline {
                    match pods.get(&name).await.map(|p| probe_outcome(&p)) {
                        Ok(Some(Ok(()))) => {
                            let _ = pods.delete(&name, &DeleteParams::default()).await;
                            return Ok(());
                        }
                        Ok(Some(Err(said))) => {
                            last = format!("{name} failed: {said}");
                            break;
                        }
                        Ok(None) => last = format!("{name} has not finished"),
                        Err(e) => last = format!("cannot read {name}: {e}"),
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                let _ = pods.delete(&name, &DeleteParams::default()).await;
            }
        }
        if start.elapsed() >= deadline {
            break;
        }
    }
    Err(BootstrapError::Wait(Box::new(WaitFailed {
        phase,
        node: "a pod in the pod network".into(),
        what: format!(
            "kubernetes.default.svc.{} to resolve from a pod to {}",
            spec.network.cluster_domain, spec.network.apiserver_service_ip
        ),
        waited: start.elapsed(),
        check: resolve_check("getent", spec),
        last_output: last,
        diagnostics: String::new(),
    })))
}

pub(super) async fn run(ctx: &Ctx<'_>) -> Result<Vec<String>, BootstrapError> {
    let (phase, spec, b) = (ctx.phase, ctx.spec(), ctx.b);
    let (image, _) = b.artifact(phase, "coredns")?;
    let digest = image.sum().map_err(|e| BootstrapError::Spec { phase, detail: e.to_string() })?;
    let reference = format!("{}@{digest}", image.locator());
    let changed = if spec.images.preload { preload(ctx, &["coredns"]).await? } else { Vec::new() };

    let api = access::client(ctx.cluster).await.map_err(|e| BootstrapError::Access { phase, source: Box::new(e) })?;
    let CoreDns { service_account, cluster_role, cluster_role_binding, config_map, deployment, service } =
        coredns(spec, &reference);
    let client = &api.client;
    apply_cluster(ctx, client, &cluster_role).await?;
    apply_cluster(ctx, client, &cluster_role_binding).await?;
    apply(ctx, client, &service_account).await?;
    apply(ctx, client, &config_map).await?;
    apply(ctx, client, &deployment).await?;
    apply(ctx, client, &service).await?;

    let deployment = Workload::Deployment { namespace: NAMESPACE.into(), name: NAME.into() };
    rollout::wait(client, &[deployment], ctx.accel().scale(ROLLOUT_DEADLINE), phase, ctx.events)
        .await
        .map_err(|stalled| BootstrapError::Rollout { phase, source: Box::new(stalled) })?;

    let (cilium, _) = b.artifact(phase, "cilium")?;
    let cilium = format!(
        "{}@{}",
        cilium.locator(),
        cilium.sum().map_err(|e| BootstrapError::Spec { phase, detail: e.to_string() })?
    );
    probe(ctx, client, &cilium).await?;
    Ok(changed)
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

async fn apply<K>(ctx: &Ctx<'_>, client: &kube::Client, object: &K) -> Result<(), BootstrapError>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Serialize + Clone + std::fmt::Debug,
    K: serde::de::DeserializeOwned,
{
    let name = object.meta().name.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(client.clone(), NAMESPACE);
    api.patch(&name, &apply_params(), &Patch::Apply(object)).await.map(drop).map_err(|e| BootstrapError::Apply {
        phase: ctx.phase,
        object: format!("{} {NAMESPACE}/{name}", K::kind(&())),
        source: Box::new(e),
    })
}

async fn apply_cluster<K>(ctx: &Ctx<'_>, client: &kube::Client, object: &K) -> Result<(), BootstrapError>
where
    K: Resource<DynamicType = ()> + Serialize + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    let name = object.meta().name.clone().unwrap_or_default();
    let api: Api<K> = Api::all(client.clone());
    api.patch(&name, &apply_params(), &Patch::Apply(object)).await.map(drop).map_err(|e| BootstrapError::Apply {
        phase: ctx.phase,
        object: format!("{} {name}", K::kind(&())),
        source: Box::new(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe's check with `getent` a test double printing `answer` as getent prints it.
    fn check_against(answer: &str) -> bool {
        super::super::succeeds_with_kubectl_double(
            |g| resolve_check(g, &ClusterSpec::default()),
            &format!("{answer}\n"),
        )
    }

    #[test]
    fn the_apiserver_name_must_resolve_to_the_apiserver_service_ip() {
        assert!(check_against("10.32.0.1       kubernetes.default.svc.cluster.local"));
        assert!(!check_against("10.32.0.10      kubernetes.default.svc.cluster.local"), "another address");
        assert!(!check_against(""), "no answer");
        assert!(!check_against("10.32.0.1       kubernetes.default.svc.cluster.localdomain"));
    }

    #[test]
    fn the_probe_asks_from_the_pod_network_and_answers_through_the_api_alone() {
        let pod = probe_pod(&ClusterSpec::default(), "quay.io/cilium/cilium:v1.17.4@sha256:24a7", "p-1");
        let spec = pod.spec.unwrap();
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"), "one answer, a final phase");
        assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirst"), "the cluster DNS, as any pod");
        assert_eq!(spec.host_network, None, "in the pod network");
        let c = &spec.containers[0];
        assert_eq!(c.termination_message_policy.as_deref(), Some("FallbackToLogsOnError"), "its output without logs");
        assert!(c.command.as_ref().unwrap()[2].starts_with("getent hosts kubernetes.default.svc.cluster.local"));

        let with = |phase: &str, message: Option<&str>| -> Pod {
            serde_json::from_value(serde_json::json!({
                "status": {"phase": phase, "containerStatuses": [{
                    "name": "resolve", "ready": false, "restartCount": 0, "image": "", "imageID": "",
                    "state": {"terminated": {"exitCode": 1, "message": message}}}]}
            }))
            .unwrap()
        };
        assert_eq!(probe_outcome(&with("Succeeded", None)), Some(Ok(())));
        assert_eq!(probe_outcome(&with("Running", None)), None);
        assert_eq!(
            probe_outcome(&with("Failed", Some("10.32.0.10  kubernetes.default.svc.cluster.local\n"))),
            Some(Err("exit 1: 10.32.0.10  kubernetes.default.svc.cluster.local".into()))
        );
    }
}
