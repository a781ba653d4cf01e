//! systemd units for etcd, the control plane and the kubelet. Each command line is the component's base flags
//! (paths from the layout), then every flag `spec.derived()` gives the component (spec values and the extra
//! flags of `spec.components`), which win over a base flag of the same name. There is no kube-proxy unit.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{path_str, Layout};
use crate::accel::Accel;
use crate::pki::{kubelet_stem, SERVICE_ACCOUNT_KEY, SERVICE_ACCOUNT_PUB};
use crate::spec::{ClusterSpec, Component};

const ETCD_PEER_PORT: u16 = 2380;

/// systemd's start timeout when a unit sets none: `DefaultTimeoutStartSec=` (systemd-system.conf(5)), which
/// Debian 12's systemd package ships commented out at its compiled-in value, `#DefaultTimeoutStartSec=90s`
/// in /etc/systemd/system.conf. A `Type=notify` service that has not said READY=1 by then is killed and, with
/// `Restart=on-failure`, started again from scratch: under TCG etcd and the apiserver can take longer.
pub const SYSTEMD_DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(90);

/// The start timeout of our `Type=notify` units: systemd's default, written for KVM, scaled like every
/// other deadline of the harness.
pub fn start_timeout(accel: Accel) -> Duration {
    accel.scale(SYSTEMD_DEFAULT_START_TIMEOUT)
}

struct Unit<'a> {
    description: &'a str,
    documentation: &'a str,
    after: &'a str,
    requires: Option<&'a str>,
    service_type: &'a str,
    /// `TimeoutStartSec=`, for units that report readiness (`Type=notify`).
    start_timeout: Option<Duration>,
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
        let timeout = self.start_timeout.map(|t| format!("TimeoutStartSec={}\n", t.as_secs())).unwrap_or_default();
        format!(
            "[Unit]\n\
             Description={}\n\
             Documentation={}\n\
             After={}\n\
             Wants=network-online.target\n\
             {requires}\n\
             [Service]\n\
             Type={}\n\
             {timeout}\
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

/// etcd on the control plane. Peers listen on loopback only: there is one member (as in Kubernetes the hard
/// way, whose units/etcd.service at commit 52eb26d puts both its peer and client URLs on 127.0.0.1), and
/// every certificate of the cluster CA is a valid peer certificate, so a peer port on the node address would
/// let any kubelet's certificate speak raft to etcd. The etcd-peer certificate names 127.0.0.1 (`pki`).
pub fn etcd_unit(spec: &ClusterSpec, layout: &Layout, accel: Accel) -> String {
    let cp = spec.control_plane();
    let peer = format!("https://127.0.0.1:{ETCD_PEER_PORT}");
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
        start_timeout: Some(start_timeout(accel)),
        binary: path_str(&layout.etcd_binary(spec)),
        flags: flags(spec, Component::Etcd, &base),
    }
    .render()
}

pub fn kube_apiserver_unit(spec: &ClusterSpec, layout: &Layout, accel: Accel) -> String {
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
        start_timeout: Some(start_timeout(accel)),
        binary: path_str(&layout.bin_dir.join("kube-apiserver")),
        flags: flags(spec, Component::KubeApiserver, &base),
    }
    .render()
}

/// kube-controller-manager. Its pod-network flags come from `spec::derive`: `--cluster-cidr` is Cilium's pool
/// (the seed's invariant). Which of the two allocates per-node blocks is Cilium's to say: with
/// `ipam.mode=cluster-pool` "CIDR Configuration" is done by Cilium, with `ipam: kubernetes` by Kubernetes
/// (Cilium's IPAM overview, https://docs.cilium.io/en/stable/network/concepts/ipam/, the modes table), and
/// only the Kubernetes host-scope page asks to "run the kube-controller-manager with the flag
/// --allocate-node-cidrs" (https://docs.cilium.io/en/latest/network/concepts/ipam/kubernetes/). Kubernetes
/// the hard way passes `--cluster-cidr` without it (units/kube-controller-manager.service at commit 52eb26d).
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
        start_timeout: None,
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
        start_timeout: None,
        binary: path_str(&layout.bin_dir.join("kube-scheduler")),
        flags: flags(spec, Component::KubeScheduler, &base),
    }
    .render()
}

/// The kubelet's settings live in its KubeletConfiguration (`configs::kubelet_config`, which takes the
/// cluster DNS and domain the spec derives); only the other derived/extra flags go on the command line.
///
/// `--node-ip` is the worker's cluster address. Unset, the kubelet "will use the node's default IPv4
/// address" (kubernetes/kubernetes cmd/kubelet/app/options/options.go, KubeletFlags.AddFlags, v1.32):
/// the address of the NIC with the default route, which on our nodes is the user-mode management NIC (or
/// none without egress). The InternalIP must be the cluster address whether or not node names resolve. It
/// is a command-line flag only: KubeletConfiguration has no field for it.
pub fn kubelet_unit(spec: &ClusterSpec, worker: &str, layout: &Layout) -> String {
    let address =
        spec.workers().find(|w| w.name == worker).unwrap_or_else(|| panic!("{worker} is a worker of the spec")).address;
    let base = [
        ("config", path_str(&layout.kubelet_config())),
        ("kubeconfig", path_str(&layout.kubeconfig(&kubelet_stem(worker)))),
        ("node-ip", address.to_string()),
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
        start_timeout: None,
        binary: path_str(&layout.bin_dir.join("kubelet")),
        flags: f,
    }
    .render()
}

/// containerd's unit for the upstream release in `layout.bin_dir` (`upstream_version`, e.g. `v1.7.27`), as
/// containerd ships it (containerd/containerd containerd.service at tag v1.7.27, commit
/// 05044ec0a9a75232cad458027ca83437aae3f4da, and at v2.2.7): overlay loaded first, `Type=notify`, its own
/// cgroup delegated, only the daemon killed on stop so that running containers survive a restart. It replaces
/// Debian's /lib/systemd/system/containerd.service (same name, /etc wins); `containerd`,
/// `containerd-shim-runc-v2` and runc are found through systemd's PATH, where /usr/local comes before /usr.
///
/// Per major, as each ships it: 1.x has `LimitNOFILE=infinity` and `After=... local-fs.target ...`; 2.x has
/// neither. Commit 3ca39ef01 ("fix: Remove `LimitNOFILE` from `containerd.service`", first in v2.0.0) leaves
/// the limit to systemd's default (1024:524288 since v240) because with `infinity` "software may experience
/// significantly increased resource usage, resulting in a performance regression or runtime failures".
pub fn containerd_unit(layout: &Layout, accel: Accel, upstream_version: &str) -> String {
    let major: u32 =
        upstream_version.trim_start_matches('v').split('.').next().and_then(|m| m.parse().ok()).unwrap_or(1);
    let (after, nofile) = if major >= 2 {
        ("network.target dbus.service", "")
    } else {
        ("network.target local-fs.target dbus.service", "LimitNOFILE=infinity\n")
    };
    format!(
        "[Unit]\n\
         Description=containerd container runtime\n\
         Documentation=https://containerd.io\n\
         After={after}\n\
         \n\
         [Service]\n\
         ExecStartPre=-/sbin/modprobe overlay\n\
         ExecStart={}\n\
         Type=notify\n\
         TimeoutStartSec={}\n\
         Delegate=yes\n\
         KillMode=process\n\
         Restart=always\n\
         RestartSec=5\n\
         LimitNPROC=infinity\n\
         LimitCORE=infinity\n\
         {nofile}\
         TasksMax=infinity\n\
         OOMScoreAdjust=-999\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        escape(&path_str(&layout.bin_dir.join("containerd"))),
        start_timeout(accel).as_secs(),
    )
}
