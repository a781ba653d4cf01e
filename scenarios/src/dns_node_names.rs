//! dns-node-names, beyond the seed: with no node names in /etc/hosts (`resolve_node_names = false`), `cilium
//! status` reports `lookup worker-node-N on 127.0.0.53:53: server misbehaving` while every node is Ready and
//! every agent Running, and `cilium status --wait` times out for that reason, not for images. The seed says
//! CoreDNS made the errors go away; this scenario installs CoreDNS and asserts what DESIGN.md argues (CoreDNS
//! serves pods, not the control plane's resolver, so the errors stay), then shows what does clear them:
//! node names in the control plane's /etc/hosts, or kube-apiserver's `--kubelet-preferred-address-types`
//! with InternalIP first.
//!
//! Why: `cilium status` reads each agent's status by exec into its pod, which the apiserver serves by dialing
//! the pod's kubelet at the first address of the node's that `--kubelet-preferred-address-types` names;
//! the default order starts with Hostname (kubernetes/kubernetes cmd/kube-apiserver/app/options/options.go,
//! `KubeletPreferredAddressTypes: []string{string(api.NodeHostName), ...InternalDNS, InternalIP, ExternalDNS,
//! ExternalIP}`), and the control plane resolves that name through systemd-resolved's stub at 127.0.0.53
//! (Go's resolver error: `lookup NAME on SERVER: REASON`, net/dnsclient_unix.go).

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kthw::bootstrap::cilium_install::{install_argv, status_argv, CILIUM_CLI};
use kthw::bootstrap::units::kube_apiserver_unit;
use kthw::bootstrap::{cilium_workloads, rollout};
use kthw::diagnosis::{self, Finding, WaitTimeoutCause};
use kthw::phase::Phase;
use kthw::spec::ClusterSpec;
use kube::api::{Api, ListParams};

use crate::{Needs, Override, Report, Scenario, ScenarioError, ScenarioFuture, World};

/// How long the scenario lets `cilium status --wait` wait where it is expected to time out.
const SHORT_WAIT: Duration = Duration::from_secs(30);
/// The flag and the order that clears it.
pub const PREFERRED_FLAG: &str = "kubelet-preferred-address-types";
pub const INTERNAL_IP_FIRST: &str = "InternalIP,Hostname,InternalDNS,ExternalDNS,ExternalIP";

/// The node names `text` says did not resolve, with the resolver and reason of each.
pub fn unresolved(text: &str) -> Vec<(String, String, String)> {
    diagnosis::diagnose(text)
        .into_iter()
        .filter_map(|f| match f {
            Finding::NodeNameUnresolvable { name, resolver, reason } => Some((name, resolver, reason)),
            _ => None,
        })
        .collect()
}

/// `spec` with kube-apiserver preferring InternalIP: the second fix.
pub fn internal_ip_first(spec: &ClusterSpec) -> ClusterSpec {
    let mut s = spec.clone();
    s.components.kube_apiserver.insert(PREFERRED_FLAG.into(), INTERNAL_IP_FIRST.into());
    s
}

fn cilium_status(w: &World) -> Vec<String> {
    vec![
        CILIUM_CLI.to_string(),
        "status".into(),
        "--kubeconfig".into(),
        w.layout().root_kubeconfig.display().to_string(),
    ]
}

/// The scenario; the module's documentation says what it shows and how.
pub struct DnsNodeNames;

impl Scenario for DnsNodeNames {
    fn name(&self) -> &'static str {
        "dns-node-names"
    }

    fn shows(&self) -> &'static str {
        "without node names in /etc/hosts, `cilium status` cannot resolve worker names though every node is Ready; what clears it (and whether CoreDNS does)"
    }

    fn needs(&self) -> Needs {
        Needs::at(Phase::Workers).running(Phase::Coredns).with(Override::ResolveNodeNames(false))
    }

    fn run<'a>(&'a self, w: &'a World, r: &'a mut Report) -> ScenarioFuture<'a> {
        Box::pin(act(w, r))
    }
}

async fn act(w: &World, r: &mut Report) -> Result<(), ScenarioError> {
    let root = w.layout().root_kubeconfig.clone();
    let workers = w.workers();
    let cp = w.cp();
    w.cilium_cli().await?;
    let installed =
        w.run_argv(&install_argv(w.spec(), &root), w.scaled(Duration::from_secs(120)), "install.txt").await?;
    r.check("`cilium install` as admin-internal succeeds", installed.success(), installed.describe_status());
    let rolled =
        rollout::wait(&w.client(), &cilium_workloads(), w.spec().cilium.status_wait, Phase::Cilium, w.events()).await;
    r.check(
        "every Cilium pod is ready (the harness's own wait, through the API)",
        rolled.is_ok(),
        rolled.err().map(|e| e.to_string()).unwrap_or_default(),
    );
    every_node_ready(w, r).await?;

    let resolved = w.exec(&cp, "getent hosts worker-node-1 worker-node-2", w.scaled(Duration::from_secs(30))).await?;
    r.fact(
        "control-plane-1 resolving worker names (getent)",
        if resolved.success() { resolved.stdout_lossy() } else { "no answer".into() },
    );

    let seen = w.run_argv(&cilium_status(w), w.scaled(Duration::from_secs(60)), "status-without-names.txt").await?;
    let text = format!("{}{}", seen.stdout_lossy(), seen.stderr_lossy());
    let lookups = unresolved(&text);
    for worker in &workers {
        let hit = lookups.iter().find(|(n, _, _)| n == worker);
        r.check(
            format!("`cilium status` cannot resolve {worker} on the control plane"),
            hit.is_some_and(|(_, resolver, _)| resolver.starts_with("127.0.0.53")),
            hit.map_or_else(
                || format!("no lookup error for {worker}: {lookups:?}"),
                |(n, s, why)| format!("lookup {n} on {s}: {why}"),
            ),
        );
    }
    if let Some((_, _, why)) = lookups.first() {
        r.fact("the resolver's reason (the seed saw \"server misbehaving\")", why.clone());
    }

    let mut short = w.spec().clone();
    short.cilium.status_wait = SHORT_WAIT;
    let waited = w
        .run_argv(
            &status_argv(&short, &root),
            SHORT_WAIT + w.scaled(Duration::from_secs(60)),
            "status-wait-without-names.txt",
        )
        .await?;
    let cause = diagnosis::wait_timeout_cause(&diagnosis::diagnose(&format!(
        "{}{}",
        waited.stdout_lossy(),
        waited.stderr_lossy()
    )));
    r.check(
        "`cilium status --wait` does not succeed while names do not resolve",
        !waited.success(),
        waited.describe_status(),
    );
    r.check(
        "its timeout is classified as unresolvable node names, not cold images",
        matches!(cause, WaitTimeoutCause::UnresolvableNodeNames(_)),
        cause.to_string(),
    );

    // The seed's claim: CoreDNS made the errors go away.
    w.phase(Phase::Coredns).await?;
    let after = w.run_argv(&cilium_status(w), w.scaled(Duration::from_secs(60)), "status-with-coredns.txt").await?;
    let still = unresolved(&format!("{}{}", after.stdout_lossy(), after.stderr_lossy()));
    r.check(
        "with CoreDNS installed the lookup errors remain (CoreDNS serves pods, not the control plane's resolver)",
        !still.is_empty(),
        if still.is_empty() {
            "CoreDNS cleared them: the seed was right and DESIGN.md's reasoning is wrong; look at status-with-coredns.txt".into()
        } else {
            format!("still unresolved: {:?}", still.iter().map(|(n, _, _)| n).collect::<Vec<_>>())
        },
    );

    // Fix 1: node names in the control plane's /etc/hosts.
    let hosts = kthw::identity::hosts_file(w.spec(), &cp);
    w.succeed(
        &cp,
        &format!("cp /etc/hosts /etc/hosts.kthw-before && printf '%s' {} > /etc/hosts", kthw::ssh::shell_quote(&hosts)),
    )
    .await?;
    clears(w, r, "node names in control-plane-1's /etc/hosts", &root, "hosts").await?;
    w.succeed(&cp, "mv /etc/hosts.kthw-before /etc/hosts").await?;

    // Fix 2: kube-apiserver preferring InternalIP.
    apiserver_with(w, &internal_ip_first(w.spec())).await?;
    clears(w, r, &format!("--{PREFERRED_FLAG}={INTERNAL_IP_FIRST}"), &root, "preferred-address-types").await?;
    apiserver_with(w, w.spec()).await
}

/// Whether, after a fix, `cilium status` shows no lookup error and `status --wait` succeeds.
async fn clears(w: &World, r: &mut Report, fix: &str, root: &std::path::Path, file: &str) -> Result<(), ScenarioError> {
    let out = w.run_argv(&cilium_status(w), w.scaled(Duration::from_secs(60)), &format!("status-{file}.txt")).await?;
    let left = unresolved(&format!("{}{}", out.stdout_lossy(), out.stderr_lossy()));
    r.check(format!("{fix}: `cilium status` shows no lookup error"), left.is_empty(), format!("{left:?}"));
    let mut spec = w.spec().clone();
    spec.cilium.status_wait = Duration::from_secs(120);
    let waited = w
        .run_argv(&status_argv(&spec, root), w.scaled(Duration::from_secs(240)), &format!("status-wait-{file}.txt"))
        .await?;
    r.check(format!("{fix}: `cilium status --wait` succeeds"), waited.success(), waited.describe_status());
    Ok(())
}

/// kube-apiserver's unit rendered from `spec`, installed, and the apiserver restarted and ready again.
async fn apiserver_with(w: &World, spec: &ClusterSpec) -> Result<(), ScenarioError> {
    let cp = w.cp();
    let unit = kube_apiserver_unit(spec, w.layout(), w.cluster.cluster().accel());
    let path = w.layout().unit("kube-apiserver");
    w.succeed(
        &cp,
        &format!(
            "printf '%s' {} > {} && systemctl daemon-reload && systemctl restart kube-apiserver",
            kthw::ssh::shell_quote(&unit),
            path.display()
        ),
    )
    .await?;
    let kubectl = w.layout().kubectl();
    w.wait_until("kube-apiserver ready again", w.scaled(Duration::from_secs(120)), async || {
        let out = w
            .exec(&cp, &format!("{kubectl} get --raw /readyz"), Duration::from_secs(15))
            .await
            .map_err(|e| kthw::chain(&e))?;
        if out.success() {
            Ok(Some(()))
        } else {
            Err(out.summary())
        }
    })
    .await
}

async fn every_node_ready(w: &World, r: &mut Report) -> Result<(), ScenarioError> {
    let nodes: Api<Node> = Api::all(w.client());
    let ready = w
        .wait_until("every node Ready", w.scaled(Duration::from_secs(120)), async || {
            let list = nodes.list(&ListParams::default()).await.map_err(|e| e.to_string())?;
            let not: Vec<String> = list
                .items
                .iter()
                .filter(|n| {
                    !n.status
                        .iter()
                        .flat_map(|s| s.conditions.iter().flatten())
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                })
                .filter_map(|n| n.metadata.name.clone())
                .collect();
            if not.is_empty() && !list.items.is_empty() {
                Ok(Some(list.items.len()))
            } else {
                Err(format!("not Ready: {not:?}"))
            }
        })
        .await;
    r.check(
        "every node is Ready while names do not resolve",
        ready.is_ok(),
        ready.map(|n| format!("{n} nodes")).unwrap_or_else(|e| e.to_string()),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_lookup_error_names_the_worker_and_the_stub_resolver() {
        // shared/seed/cilium-bootstrap.md, "The DNS Errors in cilium status", inside the error cilium status
        // prints for an agent whose status it could not get (the apiserver's "error dialing backend").
        let text = "Errors: cilium cilium-7xk2p unable to retrieve cilium status: error dialing backend: dial tcp: \
lookup worker-node-2 on 127.0.0.53:53: server misbehaving";
        assert_eq!(unresolved(text), [("worker-node-2".into(), "127.0.0.53:53".into(), "server misbehaving".into())]);
        assert!(matches!(
            diagnosis::wait_timeout_cause(&diagnosis::diagnose(text)),
            WaitTimeoutCause::UnresolvableNodeNames(n) if n == ["worker-node-2"]
        ));
    }

    #[test]
    fn the_second_fix_puts_internal_ip_first_for_the_apiserver_only() {
        let spec = internal_ip_first(&ClusterSpec::default());
        let unit = kube_apiserver_unit(&spec, &kthw::bootstrap::Layout::default(), kthw::accel::Accel::Kvm);
        assert!(unit.contains(&format!("--{PREFERRED_FLAG}={INTERNAL_IP_FIRST}")), "{unit}");
        assert!(spec.violations().is_empty(), "{:?}", spec.violations());
        let plain =
            kube_apiserver_unit(&ClusterSpec::default(), &kthw::bootstrap::Layout::default(), kthw::accel::Accel::Kvm);
        assert!(!plain.contains(PREFERRED_FLAG), "the seed's apiserver keeps the default order");
    }
}
