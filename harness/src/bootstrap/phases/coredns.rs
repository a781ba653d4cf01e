//! The `coredns` phase, the seed's step 9: the pinned CoreDNS image put on every worker, its objects
//! (`coredns_manifest`: RBAC, Corefile, Deployment, the Service at `network.cluster_dns`) applied with
//! server-side apply through the host's API client, and done when the Deployment is available and
//! `kubernetes.default.svc.<cluster domain>` resolves from a pod to the apiserver's ClusterIP.
//!
//! The pod asked is a Cilium agent (the cilium image has glibc's `getent`; it is on the host network with
//! `dnsPolicy: ClusterFirstWithHostNet`, so its resolver is the cluster DNS address, reached through Cilium's
//! service translation: what a pod sees), reached as `ds/cilium` (`kubectl exec (POD | TYPE/NAME)`, kubectl
//! 1.32's `exec --help`, picks one of its pods). Control-plane-1 cannot ask itself: it runs no agent and has no
//! route to ClusterIPs.

use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, Patch, PatchParams};
use kube::Resource;
use serde::Serialize;

use crate::access;
use crate::bootstrap::context::Ctx;
use crate::bootstrap::coredns_manifest::{coredns, CoreDns, NAME, NAMESPACE};
use crate::bootstrap::node::{wait, Wait};
use crate::bootstrap::preload::preload;
use crate::bootstrap::rollout::{self, Workload};
use crate::bootstrap::BootstrapError;
use crate::spec::ClusterSpec;

/// The field manager kthw applies as.
const FIELD_MANAGER: &str = "kthw";
/// Written for KVM: CoreDNS is ready seconds after its image is on the node; scaled under TCG.
const ROLLOUT_DEADLINE: Duration = Duration::from_secs(60);
const RESOLVE_DEADLINE: Duration = Duration::from_secs(60);

/// The check, run on the control plane with root's kubectl, that a pod resolves the apiserver's service name
/// to its ClusterIP.
pub fn resolves_from_a_pod(kubectl: &str, spec: &ClusterSpec) -> String {
    let name = format!("kubernetes.default.svc.{}", spec.network.cluster_domain);
    format!(
        "{kubectl} -n kube-system exec ds/cilium -c cilium-agent -- getent hosts {name} | tee /dev/stderr | \
         grep -qE '^{} +{}$'",
        spec.network.apiserver_service_ip.to_string().replace('.', "\\."),
        name.replace('.', "\\.")
    )
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

    let s = ctx.session(&spec.control_plane().name).await?;
    let resolves = Wait {
        what: format!(
            "kubernetes.default.svc.{} to resolve from a pod to {}",
            spec.network.cluster_domain, spec.network.apiserver_service_ip
        ),
        check: resolves_from_a_pod(&ctx.layout().kubectl(), spec),
        unit: None,
        deadline: ctx.accel().scale(RESOLVE_DEADLINE),
    };
    wait(phase, &s, &resolves, ctx.events).await?;
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

    /// The check with kubectl (exec'ing `getent hosts`) printing `answer` as getent prints it.
    fn check_against(answer: &str) -> bool {
        super::super::succeeds_with_kubectl_double(
            |k| resolves_from_a_pod(k, &ClusterSpec::default()),
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
}
