//! systemd units for etcd, the control plane and the kubelet. Each command line is the component's base flags
//! (paths from the layout), then every flag `spec.derived()` gives the component (spec values and the extra
//! flags of `spec.components`), which win over a base flag of the same name. There is no kube-proxy unit.

use std::collections::BTreeMap;

use super::{path_str, Layout};
use crate::pki::{kubelet_stem, SERVICE_ACCOUNT_KEY, SERVICE_ACCOUNT_PUB};
use crate::spec::{ClusterSpec, Component};

const ETCD_PEER_PORT: u16 = 2380;

struct Unit<'a> {
    description: &'a str,
    documentation: &'a str,
    after: &'a str,
    requires: Option<&'a str>,
    service_type: &'a str,
    binary: String,
    flags: BTreeMap<String, String>,
}

/// systemd expands `%` specifiers and `$` variables in ExecStart; flag values are literal.
fn escape(v: &str) -> String {
    v.replace('%', "%%").replace('$', "$$")
}

impl Unit<'_> {
    fn render(self) -> String {
        let mut exec = escape(&self.binary);
        for (k, v) in &self.flags {
            exec.push_str(&format!(" \\\n  --{k}={}", escape(v)));
        }
        let requires = self.requires.map(|r| format!("Requires={r}\n")).unwrap_or_default();
        format!(
            "[Unit]\n\
             Description={}\n\
             Documentation={}\n\
             After={}\n\
             Wants=network-online.target\n\
             {requires}\n\
             [Service]\n\
             Type={}\n\
             ExecStart={exec}\n\
             Restart=on-failure\n\
             RestartSec=5\n\
             LimitNOFILE=65536\n\
             \n\
             [Install]\n\
             WantedBy=multi-user.target\n",
            self.description, self.documentation, self.after, self.service_type,
        )
    }
}

/// Base flags, overridden and extended by what the spec derives for `component`.
fn flags(spec: &ClusterSpec, component: Component, base: &[(&str, String)]) -> BTreeMap<String, String> {
    let mut f: BTreeMap<String, String> = base.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    if let Some(derived) = spec.derived().flags.get(component.name()) {
        f.extend(derived.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    f
}

pub fn etcd_unit(spec: &ClusterSpec, layout: &Layout) -> String {
    let cp = spec.control_plane();
    let peer = format!("https://{}:{ETCD_PEER_PORT}", cp.address);
    let p = |s: &str| path_str(&layout.cert(s));
    let k = |s: &str| path_str(&layout.key(s));
    let base = [
        ("name", cp.name.clone()),
        ("data-dir", path_str(&layout.etcd_data_dir)),
        ("cert-file", p("etcd-server")),
        ("key-file", k("etcd-server")),
        ("trusted-ca-file", p("ca")),
        ("client-cert-auth", "true".to_string()),
        ("peer-cert-file", p("etcd-peer")),
        ("peer-key-file", k("etcd-peer")),
        ("peer-trusted-ca-file", p("ca")),
        ("peer-client-cert-auth", "true".to_string()),
        ("listen-peer-urls", peer.clone()),
        ("initial-advertise-peer-urls", peer.clone()),
        ("initial-cluster", format!("{}={peer}", cp.name)),
        ("initial-cluster-state", "new".to_string()),
        ("initial-cluster-token", format!("{}-etcd", spec.name)),
    ];
    Unit {
        description: "etcd: the cluster's key-value store",
        documentation: "https://etcd.io/docs/",
        after: "network-online.target",
        requires: None,
        service_type: "notify",
        binary: path_str(&layout.etcd_binary(spec)),
        flags: flags(spec, Component::Etcd, &base),
    }
    .render()
}

pub fn kube_apiserver_unit(spec: &ClusterSpec, layout: &Layout) -> String {
    let cp = spec.control_plane();
    let p = |s: &str| path_str(&layout.cert(s));
    let k = |s: &str| path_str(&layout.key(s));
    let sa = |f: &str| path_str(&layout.pki_dir.join(f));
    let base = [
        ("allow-privileged", "true".to_string()),
        ("authorization-mode", "Node,RBAC".to_string()),
        ("bind-address", "0.0.0.0".to_string()),
        ("client-ca-file", p("ca")),
        (
            "enable-admission-plugins",
            "NamespaceLifecycle,NodeRestriction,LimitRanger,ServiceAccount,DefaultStorageClass,ResourceQuota"
                .to_string(),
        ),
        ("etcd-cafile", p("ca")),
        ("etcd-certfile", p("etcd-client")),
        ("etcd-keyfile", k("etcd-client")),
        ("event-ttl", "1h".to_string()),
        ("kubelet-certificate-authority", p("ca")),
        ("kubelet-client-certificate", p("kube-apiserver")),
        ("kubelet-client-key", k("kube-apiserver")),
        ("runtime-config", "api/all=true".to_string()),
        ("service-account-issuer", format!("https://{}:{}", cp.address, spec.network.apiserver_port)),
        ("service-account-key-file", sa(SERVICE_ACCOUNT_PUB)),
        ("service-account-signing-key-file", sa(SERVICE_ACCOUNT_KEY)),
        ("service-node-port-range", "30000-32767".to_string()),
        ("tls-cert-file", p("kube-apiserver")),
        ("tls-private-key-file", k("kube-apiserver")),
        ("v", "2".to_string()),
    ];
    Unit {
        description: "Kubernetes API Server",
        documentation: "https://kubernetes.io/docs/reference/command-line-tools-reference/kube-apiserver/",
        after: "network-online.target etcd.service",
        requires: None,
        service_type: "notify",
        binary: path_str(&layout.bin_dir.join("kube-apiserver")),
        flags: flags(spec, Component::KubeApiserver, &base),
    }
    .render()
}

pub fn kube_controller_manager_unit(spec: &ClusterSpec, layout: &Layout) -> String {
    let p = |s: &str| path_str(&layout.cert(s));
    let base = [
        ("bind-address", "0.0.0.0".to_string()),
        ("cluster-name", "kubernetes".to_string()),
        ("cluster-signing-cert-file", p("ca")),
        ("cluster-signing-key-file", path_str(&layout.key("ca"))),
        ("kubeconfig", path_str(&layout.kubeconfig("kube-controller-manager"))),
        ("leader-elect", "true".to_string()),
        ("root-ca-file", p("ca")),
        ("service-account-private-key-file", path_str(&layout.pki_dir.join(SERVICE_ACCOUNT_KEY))),
        ("use-service-account-credentials", "true".to_string()),
        ("v", "2".to_string()),
    ];
    Unit {
        description: "Kubernetes Controller Manager",
        documentation: "https://kubernetes.io/docs/reference/command-line-tools-reference/kube-controller-manager/",
        after: "network-online.target kube-apiserver.service",
        requires: None,
        service_type: "simple",
        binary: path_str(&layout.bin_dir.join("kube-controller-manager")),
        flags: flags(spec, Component::KubeControllerManager, &base),
    }
    .render()
}

pub fn kube_scheduler_unit(spec: &ClusterSpec, layout: &Layout) -> String {
    let base = [("config", path_str(&layout.kube_scheduler_config())), ("v", "2".to_string())];
    Unit {
        description: "Kubernetes Scheduler",
        documentation: "https://kubernetes.io/docs/reference/command-line-tools-reference/kube-scheduler/",
        after: "network-online.target kube-apiserver.service",
        requires: None,
        service_type: "simple",
        binary: path_str(&layout.bin_dir.join("kube-scheduler")),
        flags: flags(spec, Component::KubeScheduler, &base),
    }
    .render()
}

/// The kubelet's settings live in its KubeletConfiguration (`configs::kubelet_config`, which takes the
/// cluster DNS and domain the spec derives); only the other derived/extra flags go on the command line.
pub fn kubelet_unit(spec: &ClusterSpec, worker: &str, layout: &Layout) -> String {
    let base = [
        ("config", path_str(&layout.kubelet_config())),
        ("kubeconfig", path_str(&layout.kubeconfig(&kubelet_stem(worker)))),
        ("v", "2".to_string()),
    ];
    let mut f = flags(spec, Component::Kubelet, &base);
    for in_config in super::configs::KUBELET_FLAGS_IN_CONFIG {
        f.remove(*in_config);
    }
    Unit {
        description: "Kubernetes Kubelet",
        documentation: "https://kubernetes.io/docs/reference/command-line-tools-reference/kubelet/",
        after: "containerd.service",
        requires: Some("containerd.service"),
        service_type: "simple",
        binary: path_str(&layout.bin_dir.join("kubelet")),
        flags: f,
    }
    .render()
}
