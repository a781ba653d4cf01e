//! The seed's steps 8 to 10 from the pinned artifacts: Cilium as CNI and kube-proxy replacement on both
//! workers, CoreDNS answering, every node Ready, each with the node's cluster address as its InternalIP.
//! Ignored by the default and ci profiles (the artifacts cannot be had there); `just e2e` runs it.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Node, Service};
use kthw::bootstrap::{Layout, CILIUM_STATUS_OUTPUT, READY_NODES_OUTPUT};
use kthw::phase::Phase;
use kthw_scenarios::clusterip::kube_proxy_replacement;
use kthw_tests::{artifacts_dir, host_prerequisite, unique_name, up, up_or_panic, vm_host_missing};
use kube::api::{Api, ListParams};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the pinned upstream artifacts (`kthw artifacts fetch`); the nightly profile runs it"]
async fn the_seeds_cluster_ends_with_cilium_coredns_and_every_node_ready() {
    let Some(()) = host_prerequisite("cluster", vm_host_missing()) else { return };
    let spec = kthw_tests::cluster_spec();
    let name = unique_name("cluster-ready");
    let running = up_or_panic(up(&spec, &name).await.until(Phase::Ready).artifacts_dir(artifacts_dir())).await;
    for r in &running.reports {
        eprintln!("phase {:<14} {:>6.1} s", r.phase.name(), r.took.as_secs_f64());
    }
    let cluster = &running.cluster;
    let api = kthw::access::client(cluster).await.unwrap_or_else(|e| panic!("{}", kthw::chain(&e)));

    let nodes = Api::<Node>::all(api.client.clone()).list(&ListParams::default()).await.unwrap();
    let mut names: Vec<String> = nodes.items.iter().filter_map(|n| n.metadata.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["worker-node-1", "worker-node-2"], "control-plane-1 runs no kubelet");
    for n in &nodes.items {
        let name = n.metadata.name.clone().unwrap_or_default();
        let status = n.status.clone().unwrap_or_default();
        let ready = status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
        assert!(ready, "{name} is not Ready: {:?}", status.conditions);
        let internal: Vec<String> =
            status.addresses.iter().flatten().filter(|a| a.type_ == "InternalIP").map(|a| a.address.clone()).collect();
        assert_eq!(
            internal,
            [spec.node(&name).unwrap().address.to_string()],
            "{name}: --node-ip is its cluster address"
        );
    }

    let ds = Api::<DaemonSet>::namespaced(api.client.clone(), "kube-system").get("cilium").await.unwrap();
    let s = ds.status.unwrap();
    assert_eq!((s.desired_number_scheduled, s.number_ready), (2, 2), "a Cilium agent on each worker");
    let coredns = Api::<Deployment>::namespaced(api.client.clone(), "kube-system").get("coredns").await.unwrap();
    assert!(coredns.status.and_then(|s| s.available_replicas).unwrap_or(0) >= 1, "CoreDNS available");
    let dns = Api::<Service>::namespaced(api.client.clone(), "kube-system").get("kube-dns").await.unwrap();
    assert_eq!(dns.spec.and_then(|s| s.cluster_ip), Some(spec.network.cluster_dns.to_string()));

    // The CLI's `cilium status` summary has no kube-proxy replacement line; each agent's `cilium-dbg status`
    // does, so ask both agents and read the verdict with the parser the clusterip scenario uses.
    let cli_status =
        std::fs::read_to_string(cluster.run_dir().phase_output(Phase::Cilium, CILIUM_STATUS_OUTPUT)).unwrap();
    assert!(!cli_status.trim().is_empty(), "the cilium phase kept the CLI's `cilium status --wait` output");
    let cp = cluster.session("control-plane-1").await.unwrap();
    let kubectl = Layout::default().kubectl();
    let agents = cp
        .succeed(&format!("{kubectl} -n kube-system get pods -l k8s-app=cilium -o name"))
        .await
        .unwrap_or_else(|e| panic!("{}", kthw::chain(&e)))
        .stdout_lossy();
    let agents: Vec<&str> = agents.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    assert_eq!(agents.len(), 2, "one Cilium agent per worker: {agents:?}");
    for agent in agents {
        let out = cp
            .succeed(&format!("{kubectl} -n kube-system exec {agent} -c cilium-agent -- cilium-dbg status"))
            .await
            .unwrap_or_else(|e| panic!("{}", kthw::chain(&e)))
            .stdout_lossy();
        let kpr = kube_proxy_replacement(&out);
        assert_eq!(kpr.as_ref().map(|(v, _)| v.as_str()), Some("True"), "{agent}: {kpr:?} in\n{out}");
    }
    let listed = std::fs::read_to_string(cluster.run_dir().phase_output(Phase::Ready, READY_NODES_OUTPUT)).unwrap();
    assert!(listed.contains("worker-node-1") && listed.contains("worker-node-2"), "{listed}");
}
