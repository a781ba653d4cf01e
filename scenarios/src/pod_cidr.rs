//! pod-cidr: the seed's pod ranges as they are. Every node that runs a Cilium agent holds exactly one block
//! of the spec's mask size inside the pool, no two overlap, and a pod placed on each worker gets an address in
//! its node's block; the pool as deployed (cilium-config, and kube-controller-manager's `--cluster-cidr` read
//! from the running process) equals the spec's. Which node gets which block is not guaranteed (the operator
//! allocates in no fixed order), so the seed's "worker-node-1 gets 10.200.0.0/24" is reported, not asserted,
//! as is `Node.spec.podCIDR` beside Cilium's allocation.
//!
//! Sources: a CiliumNode's blocks are `.spec.ipam.podCIDRs` (cilium/cilium pkg/ipam/types/types.go,
//! `IPAMSpec.PodCIDRs json:"podCIDRs"`; Documentation/network/concepts/ipam/cluster-pool.rst reads them with
//! `kubectl get ciliumnodes`); the chart renders the pool into cilium-config as `cluster-pool-ipv4-cidr`
//! (space-separated) and `cluster-pool-ipv4-mask-size` (cilium-1.17.4.tgz, templates/cilium-configmap.yaml).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{Api, ApiResource, DynamicObject, ListParams};

use crate::{Needs, Report, Scenario, ScenarioError, ScenarioFuture, World};
use kthw::phase::Phase;
use kthw::testkit::{pinned_image, pinned_pod};

/// The CiliumNode resource (cilium.io/v2), read as a dynamic object: kthw does not vendor Cilium's CRDs.
pub fn cilium_node_resource() -> ApiResource {
    ApiResource {
        group: "cilium.io".into(),
        version: "v2".into(),
        api_version: "cilium.io/v2".into(),
        kind: "CiliumNode".into(),
        plural: "ciliumnodes".into(),
    }
}

/// A CiliumNode's name and the blocks in its `.spec.ipam.podCIDRs`; an entry that is not an IPv4 network
/// is an error naming it.
pub fn cilium_blocks(node: &serde_json::Value) -> Result<(String, Vec<Ipv4Net>), String> {
    let name = node["metadata"]["name"].as_str().ok_or("a CiliumNode without a name")?.to_string();
    let cidrs = node["spec"]["ipam"]["podCIDRs"].as_array().cloned().unwrap_or_default();
    let blocks = cidrs
        .iter()
        .map(|c| {
            let s = c.as_str().unwrap_or_default();
            s.parse::<Ipv4Net>().map_err(|_| format!("{name}: podCIDRs entry {c} is not an IPv4 network"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((name, blocks))
}

/// The checks on Cilium's allocation: every agent's node has exactly one block, of `mask` bits, inside
/// `pool`, and no two blocks overlap. `(what, ok, detail)` each.
pub fn check_blocks(
    pool: Ipv4Net,
    mask: u8,
    agents: &[String],
    blocks: &BTreeMap<String, Vec<Ipv4Net>>,
) -> Vec<(String, bool, String)> {
    let mut out = Vec::new();
    for node in agents {
        let got = blocks.get(node).cloned().unwrap_or_default();
        let ok = got.len() == 1 && got[0].prefix_len() == mask && pool.contains(&got[0]);
        out.push((
            format!("{node} holds exactly one /{mask} block inside {pool}"),
            ok,
            format!("CiliumNode {node} .spec.ipam.podCIDRs = {}", list(&got)),
        ));
    }
    let all: Vec<(&String, &Ipv4Net)> = blocks.iter().flat_map(|(n, v)| v.iter().map(move |b| (n, b))).collect();
    let mut overlaps = Vec::new();
    for (i, (na, a)) in all.iter().enumerate() {
        for (nb, b) in &all[i + 1..] {
            if a.contains(*b) || b.contains(*a) {
                overlaps.push(format!("{na} {a} and {nb} {b}"));
            }
        }
    }
    let detail = if overlaps.is_empty() { format!("{} blocks, all distinct", all.len()) } else { overlaps.join("; ") };
    out.push(("no two nodes' blocks overlap".into(), overlaps.is_empty(), detail));
    out
}

/// The value of `--flag` in a process's argv (`/proc/PID/cmdline` split at NULs), in either the
/// `--flag=value` or the `--flag value` form.
pub fn flag_value(argv: &[&str], flag: &str) -> Option<String> {
    let long = format!("--{flag}");
    argv.iter().enumerate().find_map(|(i, a)| {
        if let Some(v) = a.strip_prefix(&format!("{long}=")) {
            return Some(v.to_string());
        }
        (*a == long).then(|| argv.get(i + 1).map(|v| v.to_string())).flatten()
    })
}

/// The pool and mask cilium-config says the operator carves.
pub fn config_pool(data: &BTreeMap<String, String>) -> (Option<String>, Option<String>) {
    (data.get("cluster-pool-ipv4-cidr").cloned(), data.get("cluster-pool-ipv4-mask-size").cloned())
}

fn list(v: &[Ipv4Net]) -> String {
    if v.is_empty() {
        return "(none)".into();
    }
    v.iter().map(|b| b.to_string()).collect::<Vec<_>>().join(", ")
}

/// The scenario; the module's documentation says what it shows and how.
pub struct PodCidr;

impl Scenario for PodCidr {
    fn name(&self) -> &'static str {
        "pod-cidr"
    }

    fn shows(&self) -> &'static str {
        "each Cilium node has one distinct block of the pool; pods get addresses in their node's block; the deployed pool equals the spec's"
    }

    fn needs(&self) -> Needs {
        Needs::at(Phase::Ready)
    }

    fn run<'a>(&'a self, w: &'a World, r: &'a mut Report) -> ScenarioFuture<'a> {
        Box::pin(act(w, r))
    }
}

async fn act(w: &World, r: &mut Report) -> Result<(), ScenarioError> {
    let spec = w.spec();
    let (pool, mask) = (spec.network.pods, spec.network.pod_mask_size);
    let kube = |what: &str| {
        let what = what.to_string();
        move |e| ScenarioError::Kube { scenario: w.name(), what, source: Box::new(e) }
    };

    // Which nodes run an agent: the chart labels the agent's pods k8s-app=cilium.
    let pods: Api<Pod> = Api::namespaced(w.client(), "kube-system");
    let agents =
        pods.list(&ListParams::default().labels("k8s-app=cilium")).await.map_err(kube("list Cilium agents"))?;
    let mut agent_nodes: Vec<String> = agents.items.iter().filter_map(|p| p.spec.as_ref()?.node_name.clone()).collect();
    agent_nodes.sort();
    let mut workers = w.workers();
    workers.sort();
    r.check("a Cilium agent runs on every worker", agent_nodes == workers, format!("agents on {agent_nodes:?}"));

    let cn: Api<DynamicObject> = Api::all_with(w.client(), &cilium_node_resource());
    let listed = cn.list(&ListParams::default()).await.map_err(kube("list CiliumNodes"))?;
    let mut blocks = BTreeMap::new();
    for obj in &listed.items {
        let value = serde_json::to_value(obj).unwrap_or_default();
        match cilium_blocks(&value) {
            Ok((name, b)) => {
                blocks.insert(name, b);
            }
            Err(e) => {
                r.check("every CiliumNode's podCIDRs parse", false, e);
            }
        }
    }
    w.keep("ciliumnodes.json", &serde_json::to_string_pretty(&listed.items).unwrap_or_default())?;
    for (what, ok, detail) in check_blocks(pool, mask, &agent_nodes, &blocks) {
        r.check(what, ok, detail);
    }

    // Node.spec.podCIDR beside Cilium's block: reported (with allocate-node-cidrs=false it is empty).
    let nodes: Api<Node> = Api::all(w.client());
    for n in nodes.list(&ListParams::default()).await.map_err(kube("list nodes"))?.items {
        let name = n.metadata.name.clone().unwrap_or_default();
        let node_cidr = n.spec.and_then(|s| s.pod_cidr);
        let cilium = blocks.get(&name).map(|b| list(b)).unwrap_or_else(|| "(no CiliumNode)".into());
        let agree = match &node_cidr {
            None => "Node.spec.podCIDR unset; Cilium's cluster-pool does not use it".to_string(),
            Some(c) if *c == cilium => "they agree".to_string(),
            Some(_) => "they DIFFER: two allocators hold different blocks for this node".to_string(),
        };
        r.fact(format!("{name} blocks"), format!("Cilium {cilium}; Node.spec.podCIDR {node_cidr:?}: {agree}"));
    }
    let seed = blocks.get("worker-node-1").map(|b| list(b));
    r.fact(
        "the seed's \"worker-node-1 gets 10.200.0.0/24\"",
        match seed.as_deref() {
            Some("10.200.0.0/24") => "held this time (the operator does not promise it)".to_string(),
            Some(other) => format!("did not hold: worker-node-1 got {other} (allocation order is not guaranteed)"),
            None => "worker-node-1 has no CiliumNode".to_string(),
        },
    );

    // A pod on each worker gets an address in its node's block.
    let ns = w.namespace().await?;
    let image = pinned_image(w.spec().versions, "pause");
    for node in &workers {
        let pod = w.run_pod(&ns, &pinned_pod(&format!("on-{node}"), node, &image, None, &[])).await?;
        let ip = pod.status.and_then(|s| s.pod_ip).unwrap_or_default();
        let block = blocks.get(node).and_then(|b| b.first().copied());
        let inside = match (ip.parse::<Ipv4Addr>(), block) {
            (Ok(a), Some(b)) => b.contains(&a),
            _ => false,
        };
        r.check(
            format!("a pod on {node} gets an address in {node}'s block"),
            inside,
            format!("pod IP {ip}, block {}", block.map(|b| b.to_string()).unwrap_or_else(|| "(none)".into())),
        );
    }
    w.delete_namespace(&ns).await?;

    // The pool as deployed.
    let cms: Api<ConfigMap> = Api::namespaced(w.client(), "kube-system");
    let config = cms.get("cilium-config").await.map_err(kube("get cilium-config"))?;
    let (cfg_pool, cfg_mask) = config_pool(&config.data.unwrap_or_default());
    r.check(
        "cilium-config's pool is the spec's",
        cfg_pool.as_deref() == Some(pool.to_string().as_str())
            && cfg_mask.as_deref() == Some(mask.to_string().as_str()),
        format!("cluster-pool-ipv4-cidr {cfg_pool:?}, cluster-pool-ipv4-mask-size {cfg_mask:?}; spec {pool} /{mask}"),
    );
    let cp = w.cp();
    let argv = w
        .succeed(&cp, "tr '\\0' '\\n' < /proc/$(systemctl show -p MainPID --value kube-controller-manager)/cmdline")
        .await?;
    let argv: Vec<&str> = argv.lines().collect();
    let cluster_cidr = flag_value(&argv, "cluster-cidr");
    r.check(
        "the running kube-controller-manager's --cluster-cidr is the spec's pool",
        cluster_cidr.as_deref() == Some(pool.to_string().as_str()),
        format!("--cluster-cidr {cluster_cidr:?}, allocate-node-cidrs {:?}", flag_value(&argv, "allocate-node-cidrs")),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    /// A CiliumNode as `kubectl get ciliumnode -o json` prints it in cluster-pool mode, cut to the fields read
    /// here: the shape of cilium/cilium Documentation/network/concepts/ipam/cluster-pool.rst's example
    /// (`spec.ipam.podCIDRs: ["10.0.0.0/24"]`) with this cluster's values: written by hand to exercise the
    /// reader.
    const CILIUM_NODE: &str = r#"{"apiVersion":"cilium.io/v2","kind":"CiliumNode",
        "metadata":{"name":"worker-node-2"},
        "spec":{"addresses":[{"ip":"10.0.0.6","type":"InternalIP"}],
                "ipam":{"podCIDRs":["10.200.1.0/24"],"pools":{}}}}"#;

    #[test]
    fn a_cilium_nodes_blocks_come_from_spec_ipam_pod_cidrs() {
        let (name, blocks) = cilium_blocks(&serde_json::from_str(CILIUM_NODE).unwrap()).unwrap();
        assert_eq!((name.as_str(), blocks), ("worker-node-2", vec![net("10.200.1.0/24")]));
        let bad = serde_json::json!({"metadata":{"name":"n"},"spec":{"ipam":{"podCIDRs":["fd00::/64"]}}});
        assert!(cilium_blocks(&bad).unwrap_err().contains("not an IPv4 network"));
        let none = serde_json::json!({"metadata":{"name":"n"},"spec":{}});
        assert_eq!(cilium_blocks(&none).unwrap().1, vec![]);
    }

    #[test]
    fn blocks_are_one_per_agent_of_the_mask_inside_the_pool_and_disjoint_whichever_node_gets_which() {
        let agents = vec!["worker-node-1".to_string(), "worker-node-2".to_string()];
        let pool = net("10.200.0.0/16");
        // The operator gave worker-node-1 the second block: still correct.
        let good = BTreeMap::from([
            ("worker-node-1".to_string(), vec![net("10.200.1.0/24")]),
            ("worker-node-2".to_string(), vec![net("10.200.0.0/24")]),
        ]);
        assert!(check_blocks(pool, 24, &agents, &good).iter().all(|c| c.1));

        let overlapping = BTreeMap::from([
            ("worker-node-1".to_string(), vec![net("10.200.0.0/24")]),
            ("worker-node-2".to_string(), vec![net("10.200.0.0/24")]),
        ]);
        let checks = check_blocks(pool, 24, &agents, &overlapping);
        let overlap = checks.last().unwrap();
        assert!(!overlap.1 && overlap.2.contains("worker-node-1 10.200.0.0/24 and worker-node-2"), "{overlap:?}");

        let wrong = BTreeMap::from([
            ("worker-node-1".to_string(), vec![net("10.201.0.0/24")]),
            ("worker-node-2".to_string(), vec![net("10.200.2.0/25")]),
        ]);
        let checks = check_blocks(pool, 24, &agents, &wrong);
        assert!(!checks[0].1, "outside the pool");
        assert!(!checks[1].1, "not the mask size");

        let missing = BTreeMap::from([("worker-node-1".to_string(), vec![net("10.200.0.0/24")])]);
        let checks = check_blocks(pool, 24, &agents, &missing);
        assert!(!checks[1].1 && checks[1].2.contains("(none)"), "{:?}", checks[1]);
    }

    #[test]
    fn flags_are_read_from_argv_in_either_form() {
        // /proc/PID/cmdline of kube-controller-manager as the control-plane phase starts it (units.rs).
        let argv = [
            "/usr/local/bin/kube-controller-manager",
            "--allocate-node-cidrs=false",
            "--cluster-cidr=10.200.0.0/16",
            "--service-cluster-ip-range",
            "10.32.0.0/24",
        ];
        assert_eq!(flag_value(&argv, "cluster-cidr").as_deref(), Some("10.200.0.0/16"));
        assert_eq!(flag_value(&argv, "service-cluster-ip-range").as_deref(), Some("10.32.0.0/24"));
        assert_eq!(flag_value(&argv, "cluster"), None, "a prefix is not the flag");
    }

    /// cilium/cilium-cli@v0.18.4:vendor/github.com/cilium/charts/cilium-1.17.4.tgz, cilium/templates/
    /// cilium-configmap.yaml lines 1064-1065 (the same two lines stand at 1192-1193 of cilium-1.19.5.tgz in
    /// cilium-cli v0.19.7): the keys the chart writes the pool under, and the values it writes there.
    const CHART_POOL_LINES: &str =
        "  cluster-pool-ipv4-cidr: {{ .Values.ipam.operator.clusterPoolIPv4PodCIDRList | join \" \" | quote }}
  cluster-pool-ipv4-mask-size: {{ .Values.ipam.operator.clusterPoolIPv4MaskSize | quote }}
";

    #[test]
    fn the_pool_is_read_from_the_keys_the_chart_renders_it_under() {
        // The chart's two lines rendered with the spec's Helm values, as `helm template` would: each key
        // with the value its template names (a list joined by spaces; a quoted scalar).
        let spec = kthw::spec::ClusterSpec::default();
        let values = spec.derived().cilium_values;
        let data: BTreeMap<String, String> = CHART_POOL_LINES
            .lines()
            .map(|l| {
                let (key, template) = l.trim().split_once(": ").unwrap();
                let value = template.split_whitespace().find_map(|w| w.strip_prefix(".Values.")).unwrap();
                (key.to_string(), values[value].to_string())
            })
            .collect();
        assert_eq!(data.len(), 2, "{data:?}");
        let (pool, mask) = config_pool(&data);
        assert_eq!(pool, Some(spec.network.pods.to_string()), "{data:?}");
        assert_eq!(mask, Some(spec.network.pod_mask_size.to_string()), "{data:?}");
    }
}
