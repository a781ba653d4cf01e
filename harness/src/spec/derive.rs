//! Values the spec implies for other components: Cilium's Helm values and each component's flags.
//! Computed in one place so that the pod pool, the service range and the apiserver address cannot drift.

use std::collections::BTreeMap;

use serde::Serialize;

use super::ClusterSpec;

/// Cilium allocates pod CIDRs from one pool the harness carves; no other IPAM mode fits the seed.
pub const CILIUM_IPAM_MODE: &str = "cluster-pool";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Component {
    KubeApiserver,
    KubeControllerManager,
    KubeScheduler,
    Kubelet,
    Etcd,
}

impl Component {
    pub const ALL: [Component; 5] = [
        Component::KubeApiserver,
        Component::KubeControllerManager,
        Component::KubeScheduler,
        Component::Kubelet,
        Component::Etcd,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Component::KubeApiserver => "kube-apiserver",
            Component::KubeControllerManager => "kube-controller-manager",
            Component::KubeScheduler => "kube-scheduler",
            Component::Kubelet => "kubelet",
            Component::Etcd => "etcd",
        }
    }
}

/// A value derived from the spec, with the spec field it comes from (named in contradiction errors).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DerivedValue {
    pub value: String,
    #[serde(skip)]
    pub from: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Derived {
    /// Passed to `cilium install` as `--set key=value`, in this order.
    pub cilium_values: BTreeMap<String, String>,
    /// Component flags (without leading dashes) that come from the spec.
    pub flags: BTreeMap<&'static str, BTreeMap<String, String>>,
    /// How many per-node blocks the pod pool holds.
    pub pod_blocks: u64,
}

impl Derived {
    pub fn from_spec(spec: &ClusterSpec) -> Self {
        let mut cilium_values: BTreeMap<String, String> =
            cilium_derived(spec).into_iter().map(|(k, v)| (k.to_string(), v.value)).collect();
        for (k, v) in &spec.cilium.values {
            cilium_values.entry(k.clone()).or_insert_with(|| helm_set_value(v));
        }
        let flags = Component::ALL
            .into_iter()
            .map(|c| {
                let mut f: BTreeMap<String, String> =
                    component_derived(spec, c).into_iter().map(|(k, v)| (k.to_string(), v.value)).collect();
                for (k, v) in spec.components.for_component(c) {
                    f.entry(k.clone()).or_insert_with(|| v.clone());
                }
                (c.name(), f)
            })
            .collect();
        Derived { cilium_values, flags, pod_blocks: pod_blocks(spec) }
    }
}

pub(super) fn pod_blocks(spec: &ClusterSpec) -> u64 {
    let pool = spec.network.pods.prefix_len();
    let mask = spec.network.pod_mask_size;
    if mask <= pool || mask > 32 {
        0
    } else {
        1u64 << (mask - pool)
    }
}

fn dv(value: impl ToString, from: &'static str) -> DerivedValue {
    DerivedValue { value: value.to_string(), from }
}

/// Where etcd serves its clients: loopback on the control plane, beside the apiserver.
pub const ETCD_CLIENT_URL: &str = "https://127.0.0.1:2379";

/// The keys of the Cilium values the spec fixes ([`cilium_derived`]): the seed's, passed as the seed did.
pub fn cilium_derived_keys(spec: &ClusterSpec) -> Vec<&'static str> {
    cilium_derived(spec).into_keys().collect()
}

/// The Cilium values the spec fixes. An extra value may not contradict one of these.
pub(super) fn cilium_derived(spec: &ClusterSpec) -> BTreeMap<&'static str, DerivedValue> {
    let cp = spec.nodes.iter().find(|n| n.role == super::Role::ControlPlane);
    let mut m = BTreeMap::new();
    m.insert("kubeProxyReplacement", dv(spec.cilium.kube_proxy_replacement, "cilium.kube_proxy_replacement"));
    if let Some(cp) = cp {
        m.insert("k8sServiceHost", dv(cp.address, "the control plane's nodes[].address"));
    }
    m.insert("k8sServicePort", dv(spec.network.apiserver_port, "network.apiserver_port"));
    m.insert("ipam.mode", dv(CILIUM_IPAM_MODE, "the harness (cluster-pool IPAM)"));
    m.insert("ipam.operator.clusterPoolIPv4PodCIDRList", dv(spec.network.pods, "network.pods"));
    m.insert("ipam.operator.clusterPoolIPv4MaskSize", dv(spec.network.pod_mask_size, "network.pod_mask_size"));
    m
}

/// The flags of `component` that the spec fixes. An extra flag may not contradict one of these.
pub(super) fn component_derived(spec: &ClusterSpec, component: Component) -> BTreeMap<&'static str, DerivedValue> {
    let net = &spec.network;
    let cp_addr = spec.nodes.iter().find(|n| n.role == super::Role::ControlPlane).map(|n| n.address.to_string());
    let mut m = BTreeMap::new();
    match component {
        Component::KubeApiserver => {
            if let Some(a) = &cp_addr {
                m.insert("advertise-address", dv(a, "the control plane's nodes[].address"));
            }
            // etcd trusts the whole cluster CA, so any kubelet's certificate would be an etcd client on a
            // network address; the apiserver shares the node, so etcd serves clients on loopback only, as in
            // Kubernetes the hard way (kelseyhightower/kubernetes-the-hard-way units/etcd.service,
            // units/kube-apiserver.service: --etcd-servers=http://127.0.0.1:2379).
            m.insert("etcd-servers", dv(ETCD_CLIENT_URL, "the harness (etcd serves clients on loopback)"));
            m.insert("secure-port", dv(net.apiserver_port, "network.apiserver_port"));
            m.insert("service-cluster-ip-range", dv(net.services, "network.services"));
        }
        Component::KubeControllerManager => {
            // With `ipam.mode=cluster-pool` Cilium's operator carves the pool itself and ignores
            // Node.spec.podCIDR; `--allocate-node-cidrs` is what Cilium documents for `ipam: kubernetes` only
            // (cilium/cilium Documentation/network/concepts/ipam/cluster-pool.rst and kubernetes.rst). One
            // allocator, not two handing out different blocks; --cluster-cidr stays the pool, as the seed asks.
            m.insert("allocate-node-cidrs", dv(false, "the harness (Cilium's cluster-pool IPAM allocates)"));
            m.insert("cluster-cidr", dv(net.pods, "network.pods"));
            m.insert("node-cidr-mask-size", dv(net.pod_mask_size, "network.pod_mask_size"));
            m.insert("service-cluster-ip-range", dv(net.services, "network.services"));
        }
        Component::KubeScheduler => {}
        Component::Kubelet => {
            m.insert("cluster-dns", dv(net.cluster_dns, "network.cluster_dns"));
            m.insert("cluster-domain", dv(&net.cluster_domain, "network.cluster_domain"));
        }
        Component::Etcd => {
            m.insert("advertise-client-urls", dv(ETCD_CLIENT_URL, "the harness (etcd serves clients on loopback)"));
            m.insert("listen-client-urls", dv(ETCD_CLIENT_URL, "the harness (etcd serves clients on loopback)"));
        }
    }
    m
}

/// A TOML value as the cilium CLI's `--set` takes it: lists as `{a,b}`, everything else as written.
pub(super) fn helm_set_value(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(items) => {
            format!("{{{}}}", items.iter().map(helm_set_value).collect::<Vec<_>>().join(","))
        }
        other => other.to_string(),
    }
}
