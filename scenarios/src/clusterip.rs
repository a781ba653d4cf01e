//! clusterip-no-kube-proxy: Services work with Cilium as the only service proxy. There is no kube-proxy
//! anywhere (process, DaemonSet, pod, certificate, kubeconfig) and none of its chains on any node, in
//! iptables-save or in nft; Cilium reports its kube-proxy replacement True; an echo server behind a ClusterIP
//! answers a client on the other worker by IP and by DNS name, its NodePort answers at a node's address,
//! Cilium's service table shows the frontend with the echo pod as backend; scaled to zero the service has no
//! backend and refuses connections, scaled back it answers again.
//!
//! Sources: kube-proxy's chain names, kubernetes/kubernetes pkg/proxy/iptables/proxier.go
//! (`kubeServicesChain = "KUBE-SERVICES"`, per-service `KUBE-SVC-<hash>` and per-endpoint `KUBE-SEP-<hash>`)
//! and its nftables mode's table, pkg/proxy/nftables/proxier.go (`kubeProxyTable = "kube-proxy"`);
//! `cilium-dbg status` and `cilium-dbg service list` as cilium/cilium
//! Documentation/network/kubernetes/kubeproxy-free.rst prints them ("Validate the Setup"); a service without
//! backends is rejected, not dropped, by default (values.yaml of chart 1.17.4: `serviceNoBackendResponse:
//! reject`); the echo server and client are the images `cilium connectivity test` uses, run as it runs them
//! (cilium-cli v0.18.4 connectivity/check/deployment.go: json-mock listening on `$PORT`, alpine-curl running
//! `/usr/bin/pause`).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, Pod, PodSpec, PodTemplateSpec, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};

use crate::{Needs, Report, Scenario, ScenarioError, ScenarioFuture, World};
use kthw::phase::Phase;
use kthw::testkit::{pinned_image, pinned_pod};

/// The pinned images it deploys: the echo server and the client of `cilium connectivity test`.
pub const IMAGES: &[&str] = &["connectivity-json-mock", "connectivity-curl"];
const PORT: i32 = 8080;

/// kube-proxy's chains and tables in `text` (iptables-save or `nft list ruleset` output), each once.
pub fn kube_proxy_chains(text: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut add = |s: String| {
        if !found.contains(&s) {
            found.push(s);
        }
    };
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let ["table", family, "kube-proxy", ..] = words.as_slice() {
            add(format!("nft table {family} kube-proxy"));
        }
        for w in &words {
            let w = w.trim_start_matches(':').trim_end_matches('{');
            if w == "KUBE-SERVICES" || w.starts_with("KUBE-SVC-") || w.starts_with("KUBE-SEP-") {
                add(w.to_string());
            }
        }
    }
    found
}

/// The `KubeProxyReplacement:` line of `cilium-dbg status`: its verdict (`True`, `False`) and the rest.
pub fn kube_proxy_replacement(status: &str) -> Option<(String, String)> {
    status.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("KubeProxyReplacement:")?.trim();
        let (verdict, devices) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        Some((verdict.to_string(), devices.trim().to_string()))
    })
}

/// One frontend of `cilium-dbg service list`, addresses without their `/TCP` suffix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    pub frontend: String,
    pub kind: String,
    pub backends: Vec<String>,
}

/// The table `cilium-dbg service list` prints: a frontend per numbered line, its backends as `N => ADDR`
/// on that line and the indented lines after it.
pub fn service_list(text: &str) -> Vec<ServiceEntry> {
    let strip = |a: &str| a.split('/').next().unwrap_or(a).to_string();
    let mut out: Vec<ServiceEntry> = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let backend =
            |from: &[&str]| from.iter().position(|w| *w == "=>").and_then(|i| from.get(i + 1)).map(|a| strip(a));
        match words.as_slice() {
            [id, frontend, kind, rest @ ..] if id.parse::<u32>().is_ok() && frontend.contains(':') => {
                out.push(ServiceEntry {
                    frontend: strip(frontend),
                    kind: kind.to_string(),
                    backends: backend(rest).into_iter().collect(),
                });
            }
            [n, "=>", ..] if n.parse::<u32>().is_ok() => {
                if let (Some(last), Some(b)) = (out.last_mut(), backend(&words)) {
                    last.backends.push(b);
                }
            }
            _ => {}
        }
    }
    out
}

/// What curl's exit status says about a connection (curl's man page, "EXIT CODES": 7 "Failed to connect to
/// host", 28 "Operation timeout").
pub fn curl_outcome(code: Option<u32>) -> &'static str {
    match code {
        Some(0) => "answered",
        Some(7) => "refused",
        Some(28) => "timed out",
        _ => "failed otherwise",
    }
}

fn echo_deployment(set: kthw::spec::VersionSet, node: &str, replicas: i32) -> Deployment {
    let labels = BTreeMap::from([("app".to_string(), "echo".to_string())]);
    Deployment {
        metadata: ObjectMeta { name: Some("echo".into()), ..ObjectMeta::default() },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector { match_labels: Some(labels.clone()), ..LabelSelector::default() },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels), ..ObjectMeta::default() }),
                spec: Some(PodSpec {
                    node_selector: Some(BTreeMap::from([("kubernetes.io/hostname".to_string(), node.to_string())])),
                    containers: vec![Container {
                        name: "echo".into(),
                        image: Some(pinned_image(set, "connectivity-json-mock")),
                        image_pull_policy: Some("IfNotPresent".into()),
                        env: Some(vec![EnvVar {
                            name: "PORT".into(),
                            value: Some(PORT.to_string()),
                            ..EnvVar::default()
                        }]),
                        ports: Some(vec![ContainerPort { container_port: PORT, ..ContainerPort::default() }]),
                        ..Container::default()
                    }],
                    termination_grace_period_seconds: Some(1),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

fn echo_service() -> Service {
    Service {
        metadata: ObjectMeta { name: Some("echo".into()), ..ObjectMeta::default() },
        spec: Some(ServiceSpec {
            type_: Some("NodePort".into()),
            selector: Some(BTreeMap::from([("app".to_string(), "echo".to_string())])),
            ports: Some(vec![ServicePort { port: PORT, ..ServicePort::default() }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The echo server's worker and the client's, never the same one: a ClusterIP that only answers on the
/// server's own node would pass otherwise. None with fewer than two workers.
pub fn server_and_client(workers: &[String]) -> Option<(String, String)> {
    match workers {
        [server, .., client] => Some((server.clone(), client.clone())),
        _ => None,
    }
}

/// curl from the client pod: the exit status (None when kubectl itself failed to exec).
async fn curl(w: &World, ns: &str, url: &str) -> Result<Option<u32>, ScenarioError> {
    let out = w.exec_in(ns, "client", &format!("curl -sS -o /dev/null --max-time 5 {url}")).await?;
    // kubectl exec passes the command's exit status through; it says "command terminated with exit code N".
    if out.success() {
        return Ok(Some(0));
    }
    let err = out.stderr_lossy();
    Ok(err.split("exit code ").nth(1).and_then(|c| c.split_whitespace().next()?.parse().ok()))
}

/// The scenario; the module's documentation says what it shows and how.
pub struct ClusterIpNoKubeProxy;

impl Scenario for ClusterIpNoKubeProxy {
    fn name(&self) -> &'static str {
        "clusterip-no-kube-proxy"
    }

    fn shows(&self) -> &'static str {
        "no kube-proxy and no KUBE-* chains anywhere; ClusterIP (by IP and name) and NodePort answer through Cilium; a service scaled to zero refuses"
    }

    fn needs(&self) -> Needs {
        // Its client runs on another worker than its server: what crosses nodes is what Cilium routes.
        Needs::at(Phase::Ready).images(IMAGES).workers(2)
    }

    fn run<'a>(&'a self, w: &'a World, r: &'a mut Report) -> ScenarioFuture<'a> {
        Box::pin(act(w, r))
    }
}

async fn act(w: &World, r: &mut Report) -> Result<(), ScenarioError> {
    let kube = |what: &str| {
        let what = what.to_string();
        move |e| ScenarioError::Kube { scenario: w.name(), what, source: Box::new(e) }
    };
    no_kube_proxy(w, r).await?;

    let (server_node, client_node) = server_and_client(&w.workers()).ok_or_else(|| ScenarioError::Unfit {
        scenario: w.name(),
        why: format!("its client runs on another worker than its server, and the workers are {:?}", w.workers()),
    })?;
    w.preload(kthw::phase::Phase::Ready, IMAGES).await?;
    let ns = w.namespace().await?;
    let deployments: Api<Deployment> = Api::namespaced(w.client(), &ns);
    deployments
        .create(&PostParams::default(), &echo_deployment(w.spec().versions, &server_node, 1))
        .await
        .map_err(kube("create echo"))?;
    let services: Api<Service> = Api::namespaced(w.client(), &ns);
    let svc = services.create(&PostParams::default(), &echo_service()).await.map_err(kube("create service echo"))?;
    let spec = svc.spec.unwrap_or_default();
    let cluster_ip = spec.cluster_ip.unwrap_or_default();
    let node_port = spec.ports.unwrap_or_default().first().and_then(|p| p.node_port).unwrap_or_default();
    let client = pinned_pod(
        "client",
        &client_node,
        &pinned_image(w.spec().versions, "connectivity-curl"),
        Some(vec!["/usr/bin/pause".into()]),
        &[],
    );
    w.run_pod(&ns, &client).await?;
    let echo_ip = echo_pod_ip(w, &ns).await?;

    let server_address = w.spec().node(&server_node).map(|n| n.address.to_string()).unwrap_or_default();
    let dns = format!("echo.{ns}.svc.{}", w.spec().network.cluster_domain);
    let answers = w.scaled(Duration::from_secs(60));
    for (what, url) in [
        (
            format!("the ClusterIP {cluster_ip}:{PORT} answers a client on {client_node}"),
            format!("http://{cluster_ip}:{PORT}/"),
        ),
        (format!("the service's DNS name {dns} answers"), format!("http://{dns}:{PORT}/")),
        (format!("the NodePort answers at {server_node}'s address"), format!("http://{server_address}:{node_port}/")),
    ] {
        let got = w.wait_until(&what, answers, async || match curl(w, &ns, &url).await {
            Ok(Some(0)) => Ok(Some(())),
            Ok(code) => Err(format!("curl {url}: {}", curl_outcome(code))),
            Err(e) => Err(kthw::chain(&e)),
        });
        let result = got.await;
        r.check(
            what,
            result.is_ok(),
            result.err().map(|e| e.to_string()).unwrap_or_else(|| format!("curl {url}: 200")),
        );
    }
    let from_host = w
        .exec(
            &client_node,
            &format!("curl -sS -o /dev/null --max-time 5 http://{server_address}:{node_port}/"),
            answers,
        )
        .await?;
    r.check(
        format!("the NodePort answers {client_node}'s own host network at {server_address}:{node_port}"),
        from_host.success(),
        from_host.summary(),
    );

    let frontend = format!("{cluster_ip}:{PORT}");
    let table = service_table(w, &client_node).await?;
    let entry = table.iter().find(|e| e.frontend == frontend);
    r.check(
        format!("Cilium's service list has {frontend} with the echo pod {echo_ip}:{PORT} as its backend"),
        entry.is_some_and(|e| e.backends == [format!("{echo_ip}:{PORT}")]),
        format!("{entry:?}"),
    );

    // Scaled to zero: no backend, and a refusal rather than silence.
    let scale = |n: i32| Patch::Merge(serde_json::json!({"spec": {"replicas": n}}));
    deployments.patch("echo", &PatchParams::default(), &scale(0)).await.map_err(kube("scale echo to 0"))?;
    let emptied = w
        .wait_until("the echo service has no backend in Cilium", answers, async || {
            let t = service_table(w, &client_node).await.map_err(|e| kthw::chain(&e))?;
            match t.iter().find(|e| e.frontend == frontend) {
                Some(e) if e.backends.is_empty() => Ok(Some(())),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    r.check(
        "scaled to zero, the service has no backend",
        emptied.is_ok(),
        emptied.err().map(|e| e.to_string()).unwrap_or_default(),
    );
    let code = curl(w, &ns, &format!("http://{cluster_ip}:{PORT}/")).await?;
    r.check(
        "with no backend the ClusterIP refuses (serviceNoBackendResponse: reject)",
        code == Some(7),
        format!("curl: {} (exit {code:?})", curl_outcome(code)),
    );
    deployments.patch("echo", &PatchParams::default(), &scale(1)).await.map_err(kube("scale echo to 1"))?;
    let back = w
        .wait_until("the ClusterIP answers again", w.scaled(Duration::from_secs(120)), async || {
            match curl(w, &ns, &format!("http://{cluster_ip}:{PORT}/")).await {
                Ok(Some(0)) => Ok(Some(())),
                Ok(code) => Err(curl_outcome(code).to_string()),
                Err(e) => Err(kthw::chain(&e)),
            }
        })
        .await;
    r.check(
        "scaled back to one, it answers again",
        back.is_ok(),
        back.err().map(|e| e.to_string()).unwrap_or_default(),
    );
    w.delete_namespace(&ns).await
}

async fn echo_pod_ip(w: &World, ns: &str) -> Result<String, ScenarioError> {
    let pods: Api<Pod> = Api::namespaced(w.client(), ns);
    w.wait_until("the echo pod runs", w.scaled(Duration::from_secs(120)), async || {
        let list = pods.list(&ListParams::default().labels("app=echo")).await.map_err(|e| e.to_string())?;
        let ip = list.items.iter().find_map(|p| {
            let s = p.status.as_ref()?;
            (s.phase.as_deref() == Some("Running")).then(|| s.pod_ip.clone()).flatten()
        });
        Ok(ip)
    })
    .await
}

/// `cilium-dbg service list` from the agent on `node`.
async fn service_table(w: &World, node: &str) -> Result<Vec<ServiceEntry>, ScenarioError> {
    let agent = agent_on(w, node).await?;
    let out = w.kubectl(&format!("-n kube-system exec {agent} -c cilium-agent -- cilium-dbg service list")).await?;
    w.keep(&format!("service-list-{node}.txt"), &out.stdout_lossy())?;
    Ok(service_list(&out.stdout_lossy()))
}

/// The Cilium agent pod on `node`.
async fn agent_on(w: &World, node: &str) -> Result<String, ScenarioError> {
    let pods: Api<Pod> = Api::namespaced(w.client(), "kube-system");
    let lp = ListParams::default().labels("k8s-app=cilium").fields(&format!("spec.nodeName={node}"));
    let list = pods.list(&lp).await.map_err(|e| ScenarioError::Kube {
        scenario: w.name(),
        what: format!("find the Cilium agent on {node}"),
        source: Box::new(e),
    })?;
    list.items.first().and_then(|p| p.metadata.name.clone()).ok_or_else(|| ScenarioError::Command {
        scenario: w.name(),
        node: node.to_string(),
        cmd: "find the Cilium agent pod".into(),
        status: "none".into(),
        output: format!("no pod labelled k8s-app=cilium on {node}"),
    })
}

/// No kube-proxy in any form, and none of its rules.
async fn no_kube_proxy(w: &World, r: &mut Report) -> Result<(), ScenarioError> {
    let ds: Api<DaemonSet> = Api::namespaced(w.client(), "kube-system");
    let kube = |e| ScenarioError::Kube { scenario: w.name(), what: "look for kube-proxy".into(), source: Box::new(e) };
    let daemonset = ds.get_opt("kube-proxy").await.map_err(kube)?;
    r.check("no kube-proxy DaemonSet", daemonset.is_none(), format!("{:?}", daemonset.and_then(|d| d.metadata.name)));
    let pods: Api<Pod> = Api::all(w.client());
    let named: Vec<String> = pods
        .list(&ListParams::default())
        .await
        .map_err(kube)?
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .filter(|n| n.starts_with("kube-proxy"))
        .collect();
    r.check("no kube-proxy pod", named.is_empty(), format!("{named:?}"));
    let run_dir = w.cluster.cluster().run_dir();
    let local: Vec<String> = [run_dir.pki(), run_dir.kubeconfigs()]
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.contains("kube-proxy"))
        .collect();
    r.check("no kube-proxy certificate or kubeconfig was made", local.is_empty(), format!("{local:?}"));

    for node in w.spec().nodes.iter().map(|n| n.name.clone()).collect::<Vec<_>>() {
        let process = w.exec(&node, "pgrep -a -x kube-proxy", w.scaled(Duration::from_secs(30))).await?;
        r.check(format!("no kube-proxy process on {node}"), !process.success(), process.stdout_lossy());
        let files = w
            .succeed(
                &node,
                "find /etc/kubernetes /var/lib/kubelet /var/lib/kubernetes -name '*kube-proxy*' 2>/dev/null || true",
            )
            .await?;
        r.check(format!("no kube-proxy certificate or kubeconfig on {node}"), files.trim().is_empty(), files);
        let rules = w.succeed(&node, "iptables-save 2>&1; ip6tables-save 2>&1; nft list ruleset 2>&1; true").await?;
        w.keep(&format!("rules-{node}.txt"), &rules)?;
        let chains = kube_proxy_chains(&rules);
        r.check(
            format!("no KUBE-SERVICES, KUBE-SVC-* or KUBE-SEP-* on {node} (iptables-save and nft)"),
            chains.is_empty(),
            chains.join(", "),
        );
    }

    let status = w.kubectl("-n kube-system exec ds/cilium -c cilium-agent -- cilium-dbg status").await?;
    w.keep("cilium-dbg-status.txt", &status.stdout_lossy())?;
    let kpr = kube_proxy_replacement(&status.stdout_lossy());
    r.check(
        "Cilium reports KubeProxyReplacement: True",
        kpr.as_ref().is_some_and(|(v, _)| v == "True"),
        format!("{kpr:?}"),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by hand to exercise the chain finder: `iptables-save -t nat` as a node whose kube-proxy runs in
    /// iptables mode prints it, with kube-proxy's own names (kubernetes/kubernetes@v1.32.4:pkg/proxy/iptables/
    /// proxier.go: `KUBE-SERVICES`, `KUBE-SVC-` and `KUBE-SEP-` plus a hash of the service port's name;
    /// KUBE-SVC-NPX46M4PTMTKRN6Y is default/kubernetes:https in every cluster, as that name never changes).
    const KUBE_PROXY_IPTABLES: &str = "*nat
:PREROUTING ACCEPT [0:0]
:KUBE-KUBELET-CANARY - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-SEP-U7HH75UFG3U5VGYY - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-NPX46M4PTMTKRN6Y - [0:0]
-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m comment --comment \"default/kubernetes:https cluster IP\" -m tcp --dport 443 -j KUBE-SVC-NPX46M4PTMTKRN6Y
COMMIT
";

    /// Written by hand to exercise the negative: what a Cilium node has instead, Cilium's own chains and the
    /// kubelet's canary, none of kube-proxy's.
    const CILIUM_NODE_IPTABLES: &str = "*nat
:PREROUTING ACCEPT [0:0]
:CILIUM_POST_nat - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
-A POSTROUTING -m comment --comment \"cilium-feeder: CILIUM_POST_nat\" -j CILIUM_POST_nat
COMMIT
";

    /// Written by hand to exercise the nft case: `nft list ruleset` with kube-proxy in nftables mode, whose
    /// table is `kube-proxy` (kubernetes/kubernetes@v1.32.4:pkg/proxy/nftables/proxier.go).
    const KUBE_PROXY_NFT: &str = "table ip kube-proxy {
\tchain services {
\t}
}
";

    #[test]
    fn kube_proxys_chains_and_table_are_found_and_ciliums_are_not() {
        assert_eq!(
            kube_proxy_chains(KUBE_PROXY_IPTABLES),
            ["KUBE-SEP-U7HH75UFG3U5VGYY", "KUBE-SERVICES", "KUBE-SVC-NPX46M4PTMTKRN6Y"]
        );
        assert_eq!(kube_proxy_chains(CILIUM_NODE_IPTABLES), Vec::<String>::new());
        assert_eq!(kube_proxy_chains(KUBE_PROXY_NFT), ["nft table ip kube-proxy"]);
        // iptables-nft's own tables as nft prints them: a chain named like kube-proxy's is still kube-proxy's.
        assert_eq!(kube_proxy_chains("table ip nat {\n\tchain KUBE-SERVICES {\n\t}\n}\n"), ["KUBE-SERVICES"]);
    }

    #[test]
    fn the_kube_proxy_replacement_verdict_is_read_from_cilium_dbg_status() {
        // kubeproxy-free.rst, "Validate the Setup" (cilium/cilium at 011b49409877295e4f48ed9438a6a4a6e769d2f3).
        let status = "KVStore:                 Disabled\nKubeProxyReplacement:   True\t[eth0 (Direct Routing), eth1]\n";
        assert_eq!(kube_proxy_replacement(status), Some(("True".into(), "[eth0 (Direct Routing), eth1]".into())));
        assert_eq!(kube_proxy_replacement("KubeProxyReplacement:   False\n").unwrap().0, "False");
        assert_eq!(kube_proxy_replacement("nothing here"), None);
    }

    #[test]
    fn cilium_dbg_service_list_gives_each_frontend_its_backends() {
        // Written by hand to exercise the table reader: kubeproxy-free.rst's `cilium-dbg service list` (same
        // commit) plus a NodePort row and a frontend with no backend, which the doc lacks, in the columns
        // cilium/cilium@v1.17.4:cilium-dbg/cmd/service_list.go prints (a frontend per ID, further backends on
        // indented `N => ADDR` lines).
        let text = "ID   Frontend               Service Type   Backend
4    10.104.239.135:80/TCP      ClusterIP      1 => 10.217.0.107:80/TCP
                                               2 => 10.217.0.149:80/TCP
5    0.0.0.0:31940/TCP          NodePort       1 => 10.217.0.107:80/TCP
                                               2 => 10.217.0.149:80/TCP
9    10.32.0.77:8080/TCP        ClusterIP
";
        let t = service_list(text);
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].frontend, "10.104.239.135:80");
        assert_eq!(t[0].kind, "ClusterIP");
        assert_eq!(t[0].backends, ["10.217.0.107:80", "10.217.0.149:80"]);
        assert_eq!(t[1].kind, "NodePort");
        assert!(t[2].backends.is_empty(), "a service scaled to zero lists no backend");
        // Releases that print no protocol and a backend state parse the same.
        let old = "1    10.96.0.1:443      ClusterIP      1 => 10.0.0.4:6443 (active)\n";
        assert_eq!(service_list(old)[0].backends, ["10.0.0.4:6443"]);
    }

    #[test]
    fn the_client_runs_on_another_worker_than_the_server_or_the_scenario_refuses() {
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (server, client) = server_and_client(&names(&["worker-node-1", "worker-node-2"])).unwrap();
        assert_ne!(server, client);
        assert_eq!(server_and_client(&names(&["worker-node-1"])), None, "one worker cannot hold the claim");
        assert_eq!(server_and_client(&[]), None);
    }

    #[test]
    fn curl_exit_codes_tell_a_refusal_from_silence() {
        assert_eq!(curl_outcome(Some(7)), "refused");
        assert_eq!(curl_outcome(Some(28)), "timed out");
        assert_eq!(curl_outcome(None), "failed otherwise");
    }

    #[test]
    fn the_echo_server_listens_where_its_service_points_on_its_node() {
        let d = echo_deployment(kthw::spec::VersionSet::Seed, "worker-node-1", 1);
        let pod = d.spec.unwrap().template.spec.unwrap();
        let c = &pod.containers[0];
        assert_eq!(c.env.as_ref().unwrap()[0].value.as_deref(), Some("8080"), "json-mock listens on $PORT");
        assert!(c.image.as_deref().unwrap().starts_with("quay.io/cilium/json-mock:v1.3.8@sha256:"));
        assert_eq!(pod.node_selector.unwrap()["kubernetes.io/hostname"], "worker-node-1");
        let s = echo_service().spec.unwrap();
        assert_eq!(s.type_.as_deref(), Some("NodePort"), "a NodePort service has its ClusterIP too");
        assert_eq!(s.ports.unwrap()[0].port, PORT);
    }
}
