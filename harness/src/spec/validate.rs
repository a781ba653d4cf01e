//! The invariants a spec must hold before any VM starts. Each violation names the field, the values
//! involved and the fix; the seed's "must match exactly" lessons are among them.

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::derive::{cilium_derived, component_derived, helm_set_value, pod_blocks, Component};
use super::{ClusterSpec, Location, Role};

/// One broken invariant: the field (a path like `nodes[1].address`), what is wrong, and where in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    pub field: String,
    pub kind: ViolationKind,
    pub location: Option<Location>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some(l) => write!(f, "{} (line {}, column {}): {}", self.field, l.line, l.column, self.kind),
            None => write!(f, "{}: {}", self.field, self.kind),
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ViolationKind {
    #[error("the cluster has no nodes; give one control-plane node and at least one worker under [[nodes]]")]
    NoNodes,
    #[error("node name {name:?} is used by more than one node; node names become hostnames and must be unique")]
    DuplicateNodeName { name: String },
    #[error("node name {name:?} is not a valid DNS label ({reason}); use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit")]
    InvalidNodeName { name: String, reason: &'static str },
    #[error("the cluster needs exactly one control-plane node, found {} ({}); set role = \"control-plane\" on exactly one node", names.len(), if names.is_empty() { "none".to_string() } else { names.join(", ") })]
    ControlPlaneCount { names: Vec<String> },
    #[error("the cluster has no worker node; add a node with role = \"worker\" (Cilium and pods run on workers)")]
    NoWorkers,
    #[error("address {address} is given to both {first} and {second}; give each node its own address")]
    DuplicateAddress { address: Ipv4Addr, first: String, second: String },
    #[error(
        "{node}'s address {address} is outside the node network {network} (network.nodes); pick an address inside it"
    )]
    AddressOutsideNodeNetwork { node: String, address: Ipv4Addr, network: Ipv4Net },
    #[error("{node}'s address {address} is the {which} address of the node network {network}; pick a host address")]
    AddressNotAHost { node: String, address: Ipv4Addr, network: Ipv4Net, which: &'static str },
    #[error("{first_field} = {first} and {second_field} = {second} overlap; node, pod and service networks must be disjoint or routing is ambiguous")]
    NetworksOverlap { first_field: &'static str, first: Ipv4Net, second_field: &'static str, second: Ipv4Net },
    #[error("the node network {network} is a /{} and leaves no room for hosts; use a prefix of /30 or shorter", network.prefix_len())]
    NodeNetworkTooSmall { network: Ipv4Net },
    #[error("pod_mask_size = {mask} must be longer than the pod pool's prefix ({pool}) and at most 30 (Cilium's clusterPoolIPv4MaskSize carves per-node blocks out of the pool)")]
    MaskSizeNotInsidePool { mask: u8, pool: Ipv4Net },
    #[error("pod pool {pool} carved into /{mask} blocks gives {blocks} block(s) for {nodes} nodes; shorten the pool's prefix or lengthen pod_mask_size")]
    TooFewPodBlocks { pool: Ipv4Net, mask: u8, blocks: u64, nodes: usize },
    #[error("{ip} is not inside the service network {network} (network.services); pick an address inside it")]
    ServiceIpOutside { ip: Ipv4Addr, network: Ipv4Net },
    #[error("apiserver_service_ip = {ip}, but the apiserver's service IP is always the first address of network.services ({expected})")]
    ApiserverServiceIpNotFirst { ip: Ipv4Addr, expected: Ipv4Addr },
    #[error("cluster_dns = {ip} is the apiserver's service IP too; give CoreDNS its own ClusterIP (the seed uses 10.32.0.10)")]
    ClusterDnsIsApiserverIp { ip: Ipv4Addr },
    #[error("apiserver_port must not be 0")]
    ZeroPort,
    #[error("{what} = {value} is too small; the minimum is {min}")]
    TooSmall { what: &'static str, value: u32, min: u32 },
    #[error("{what} must not be empty")]
    Empty { what: &'static str },
    #[error("Cilium value {key} = {given} contradicts {derived}, which comes from {from}; remove it from cilium.values and change {from} instead (the seed: these must match exactly)")]
    CiliumValueContradicts { key: String, given: String, derived: String, from: &'static str },
    #[error("{component} flag --{flag}={given} contradicts --{flag}={derived}, which comes from {from}; remove it from [components.{component}] and change {from} instead")]
    ComponentFlagContradicts {
        component: &'static str,
        flag: String,
        given: String,
        derived: String,
        from: &'static str,
    },
    #[error(
        "{component} flag {flag:?} must be given without leading dashes and must not be empty, e.g. \"v\" = \"2\""
    )]
    MalformedFlag { component: &'static str, flag: String },
    #[error("{message}; {table} says so ({at})")]
    UnsupportedVersions { message: String, table: &'static str, at: &'static str },
}

fn v(field: impl Into<String>, kind: ViolationKind) -> Violation {
    Violation { field: field.into(), kind, location: None }
}

pub(super) fn violations(spec: &ClusterSpec) -> Vec<Violation> {
    let mut out = Vec::new();
    check_nodes(spec, &mut out);
    check_networks(spec, &mut out);
    check_cilium(spec, &mut out);
    check_components(spec, &mut out);
    let mut unsupported = super::support::check(&spec.versions.pins(), spec.etcd_from, spec.containerd_from);
    unsupported.extend(super::support::removed_flags(spec));
    for u in unsupported {
        out.push(v(
            u.field,
            ViolationKind::UnsupportedVersions { message: u.message, table: u.source.table, at: u.source.at },
        ));
    }
    if spec.name.is_empty() {
        out.push(v("name", ViolationKind::Empty { what: "name" }));
    } else if let Err(reason) = dns_label(&spec.name) {
        out.push(v("name", ViolationKind::InvalidNodeName { name: spec.name.clone(), reason }));
    }
    out
}

fn check_nodes(spec: &ClusterSpec, out: &mut Vec<Violation>) {
    if spec.nodes.is_empty() {
        out.push(v("nodes", ViolationKind::NoNodes));
        return;
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut addresses: HashMap<Ipv4Addr, usize> = HashMap::new();
    let net = spec.network.nodes;
    for (i, n) in spec.nodes.iter().enumerate() {
        if let Err(reason) = dns_label(&n.name) {
            out.push(v(format!("nodes[{i}].name"), ViolationKind::InvalidNodeName { name: n.name.clone(), reason }));
        }
        if names.insert(&n.name, i).is_some() {
            out.push(v(format!("nodes[{i}].name"), ViolationKind::DuplicateNodeName { name: n.name.clone() }));
        }
        if let Some(first) = addresses.insert(n.address, i) {
            out.push(v(
                format!("nodes[{i}].address"),
                ViolationKind::DuplicateAddress {
                    address: n.address,
                    first: spec.nodes[first].name.clone(),
                    second: n.name.clone(),
                },
            ));
        }
        if !net.contains(&n.address) {
            out.push(v(
                format!("nodes[{i}].address"),
                ViolationKind::AddressOutsideNodeNetwork { node: n.name.clone(), address: n.address, network: net },
            ));
        } else if net.prefix_len() < 31 && (n.address == net.network() || n.address == net.broadcast()) {
            let which = if n.address == net.network() { "network" } else { "broadcast" };
            out.push(v(
                format!("nodes[{i}].address"),
                ViolationKind::AddressNotAHost { node: n.name.clone(), address: n.address, network: net, which },
            ));
        }
        if n.vcpus < 1 {
            out.push(v(format!("nodes[{i}].vcpus"), ViolationKind::TooSmall { what: "vcpus", value: n.vcpus, min: 1 }));
        }
        if n.memory_mib < 512 {
            out.push(v(
                format!("nodes[{i}].memory_mib"),
                ViolationKind::TooSmall { what: "memory_mib", value: n.memory_mib, min: 512 },
            ));
        }
    }
    let cps: Vec<String> = spec.nodes.iter().filter(|n| n.role == Role::ControlPlane).map(|n| n.name.clone()).collect();
    if cps.len() != 1 {
        out.push(v("nodes", ViolationKind::ControlPlaneCount { names: cps }));
    }
    if !spec.nodes.iter().any(|n| n.role == Role::Worker) {
        out.push(v("nodes", ViolationKind::NoWorkers));
    }
}

fn check_networks(spec: &ClusterSpec, out: &mut Vec<Violation>) {
    let net = &spec.network;
    if net.nodes.prefix_len() > 30 {
        out.push(v("network.nodes", ViolationKind::NodeNetworkTooSmall { network: net.nodes }));
    }
    let named = [("network.nodes", net.nodes), ("network.pods", net.pods), ("network.services", net.services)];
    for (i, (af, a)) in named.iter().enumerate() {
        for (bf, b) in &named[i + 1..] {
            if a.contains(b) || b.contains(a) {
                out.push(v(
                    *bf,
                    ViolationKind::NetworksOverlap { first_field: af, first: *a, second_field: bf, second: *b },
                ));
            }
        }
    }
    if net.pod_mask_size <= net.pods.prefix_len() || net.pod_mask_size > 30 {
        out.push(v(
            "network.pod_mask_size",
            ViolationKind::MaskSizeNotInsidePool { mask: net.pod_mask_size, pool: net.pods },
        ));
    } else {
        let blocks = pod_blocks(spec);
        if blocks < spec.nodes.len() as u64 {
            out.push(v(
                "network.pod_mask_size",
                ViolationKind::TooFewPodBlocks {
                    pool: net.pods,
                    mask: net.pod_mask_size,
                    blocks,
                    nodes: spec.nodes.len(),
                },
            ));
        }
    }
    for (field, ip) in
        [("network.apiserver_service_ip", net.apiserver_service_ip), ("network.cluster_dns", net.cluster_dns)]
    {
        if !net.services.contains(&ip) {
            out.push(v(field, ViolationKind::ServiceIpOutside { ip, network: net.services }));
        }
    }
    let first = first_host(net.services);
    if net.services.contains(&net.apiserver_service_ip) && net.apiserver_service_ip != first {
        out.push(v(
            "network.apiserver_service_ip",
            ViolationKind::ApiserverServiceIpNotFirst { ip: net.apiserver_service_ip, expected: first },
        ));
    }
    if net.cluster_dns == net.apiserver_service_ip {
        out.push(v("network.cluster_dns", ViolationKind::ClusterDnsIsApiserverIp { ip: net.cluster_dns }));
    }
    if net.apiserver_port == 0 {
        out.push(v("network.apiserver_port", ViolationKind::ZeroPort));
    }
    if net.cluster_domain.is_empty() {
        out.push(v("network.cluster_domain", ViolationKind::Empty { what: "cluster_domain" }));
    }
}

fn first_host(net: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()).saturating_add(1))
}

fn check_cilium(spec: &ClusterSpec, out: &mut Vec<Violation>) {
    let derived = cilium_derived(spec);
    for (key, given) in &spec.cilium.values {
        let Some(d) = derived.get(key.as_str()) else { continue };
        let agrees = if key == "ipam.operator.clusterPoolIPv4PodCIDRList" {
            pool_list(given) == Some(vec![d.value.clone()])
        } else {
            helm_set_value(given) == d.value
        };
        if !agrees {
            out.push(v(
                format!("cilium.values.\"{key}\""),
                ViolationKind::CiliumValueContradicts {
                    key: key.clone(),
                    given: helm_set_value(given),
                    derived: d.value.clone(),
                    from: d.from,
                },
            ));
        }
    }
}

/// The pool as a list of normalised CIDRs, whether written as a string or an array.
fn pool_list(v: &toml::Value) -> Option<Vec<String>> {
    let norm = |s: &str| s.trim().parse::<Ipv4Net>().ok().map(|n| n.to_string());
    match v {
        toml::Value::String(s) => s.split(',').map(norm).collect(),
        toml::Value::Array(a) => a.iter().map(|i| i.as_str().and_then(norm)).collect(),
        _ => None,
    }
}

fn check_components(spec: &ClusterSpec, out: &mut Vec<Violation>) {
    for c in Component::ALL {
        let derived = component_derived(spec, c);
        for (flag, given) in spec.components.for_component(c) {
            let field = format!("components.{}.\"{flag}\"", c.name());
            if flag.is_empty() || flag.starts_with('-') {
                out.push(v(field, ViolationKind::MalformedFlag { component: c.name(), flag: flag.clone() }));
                continue;
            }
            if let Some(d) = derived.get(flag.as_str()) {
                if !flag_values_agree(given, &d.value) {
                    out.push(v(
                        field,
                        ViolationKind::ComponentFlagContradicts {
                            component: c.name(),
                            flag: flag.clone(),
                            given: given.clone(),
                            derived: d.value.clone(),
                            from: d.from,
                        },
                    ));
                }
            }
        }
    }
}

fn flag_values_agree(given: &str, derived: &str) -> bool {
    let as_net = |s: &str| s.parse::<Ipv4Net>().ok();
    given == derived || (as_net(given).is_some() && as_net(given) == as_net(derived))
}

/// RFC 1123 label: what a hostname, a Kubernetes node name and a libvirt-safe name all accept.
pub(super) fn dns_label(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty");
    }
    if name.len() > 63 {
        return Err("longer than 63 characters");
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err("only lowercase letters, digits and '-' are allowed");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err("starts or ends with '-'");
    }
    Ok(())
}
