//! Which certificates the cluster has, and what each one says: subject, SANs and usages, all from the spec.
//! Deliberately there is no kube-proxy profile: Cilium replaces kube-proxy, so nothing would use it (the seed).

use std::net::{IpAddr, Ipv4Addr};

use crate::spec::ClusterSpec;

/// What a certificate is used for, which decides its extended key usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A TLS client only (kubeconfig identities, etcd client).
    Client,
    /// Both: servers that also dial out with the same identity (etcd peers; etcd's gateway dials its own server
    /// with the server certificate; kubelets; the apiserver to kubelets). Nothing here is a server only.
    ServerAndClient,
}

/// One leaf certificate to issue from the cluster CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// Stable file stem: `<stem>.crt` and `<stem>.key`.
    pub stem: String,
    pub common_name: String,
    pub organization: Option<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub usage: Usage,
}

impl Profile {
    fn client(stem: &str, cn: &str, org: Option<&str>) -> Profile {
        Profile {
            stem: stem.to_string(),
            common_name: cn.to_string(),
            organization: org.map(str::to_string),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            usage: Usage::Client,
        }
    }
}

/// The file stem of a worker's kubelet certificate.
pub fn kubelet_stem(node: &str) -> String {
    format!("kubelet-{node}")
}

/// Every leaf the cluster needs, in a stable order.
pub fn profiles(spec: &ClusterSpec) -> Vec<Profile> {
    let cp = spec.control_plane();
    let cp_addr = IpAddr::V4(cp.address);
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let domain = &spec.network.cluster_domain;

    let mut out = vec![
        Profile::client("admin", "admin", Some("system:masters")),
        Profile::client(
            "kube-controller-manager",
            "system:kube-controller-manager",
            Some("system:kube-controller-manager"),
        ),
        Profile::client("kube-scheduler", "system:kube-scheduler", Some("system:kube-scheduler")),
        // CN=kubernetes as in the hard way: the apiserver presents this certificate to kubelets too, and RBAC
        // grants that user the kubelet API.
        Profile {
            stem: "kube-apiserver".to_string(),
            common_name: "kubernetes".to_string(),
            organization: None,
            dns_names: vec![
                "kubernetes".to_string(),
                "kubernetes.default".to_string(),
                "kubernetes.default.svc".to_string(),
                format!("kubernetes.default.svc.{domain}"),
                cp.name.clone(),
            ],
            ip_addresses: vec![cp_addr, IpAddr::V4(spec.network.apiserver_service_ip), localhost],
            usage: Usage::ServerAndClient,
        },
        Profile {
            stem: "etcd-server".to_string(),
            common_name: "etcd-server".to_string(),
            organization: None,
            dns_names: vec![cp.name.clone(), "localhost".to_string()],
            ip_addresses: vec![cp_addr, localhost],
            usage: Usage::ServerAndClient,
        },
        Profile {
            stem: "etcd-peer".to_string(),
            common_name: "etcd-peer".to_string(),
            organization: None,
            dns_names: vec![cp.name.clone()],
            ip_addresses: vec![cp_addr, localhost],
            usage: Usage::ServerAndClient,
        },
        // The apiserver's identity towards etcd; also what etcdctl uses in tests.
        Profile::client("etcd-client", "kube-apiserver-etcd-client", None),
    ];
    for w in spec.workers() {
        out.push(Profile {
            stem: kubelet_stem(&w.name),
            common_name: format!("system:node:{}", w.name),
            organization: Some("system:nodes".to_string()),
            dns_names: vec![w.name.clone()],
            ip_addresses: vec![IpAddr::V4(w.address)],
            usage: Usage::ServerAndClient,
        });
    }
    out
}
