//! Component configuration files: the scheduler's and kubelet's (JSON, which both read as YAML) and
//! containerd's (TOML, with the systemd cgroup driver the kubelet is set to).

use serde_json::json;

use super::{path_str, Layout};
use crate::pki::kubelet_stem;
use crate::spec::{ClusterSpec, Component};

/// Kubelet flags the spec derives whose values go into the KubeletConfiguration instead of the command line.
pub(super) const KUBELET_FLAGS_IN_CONFIG: &[&str] = &["cluster-dns", "cluster-domain"];

/// The resolver configuration the kubelet gives `dnsPolicy: Default` pods (CoreDNS among them) and appends
/// to the others' search paths. The node image runs systemd-resolved, whose /etc/resolv.conf names only its
/// stub at 127.0.0.53, which is unreachable from a pod's network namespace and makes CoreDNS's `loop`
/// plugin halt when forwarded to. Kubernetes' own advice for this case: "With `systemd-resolved`, this is
/// `/run/systemd/resolve/resolv.conf`" (kubernetes/website content/en/docs/tasks/administer-cluster/
/// dns-debugging-resolution.md, "Known issues"), the file that lists resolved's real upstream servers;
/// kubeadm sets it the same way (kubernetes/kubernetes pull request #64665). Kubernetes the hard way keeps
/// the field's default, /etc/resolv.conf (configs/kubelet-config.yaml at commit 52eb26d), because its
/// Debian nodes run no systemd-resolved.
pub const KUBELET_RESOLV_CONF: &str = "/run/systemd/resolve/resolv.conf";

pub fn kube_scheduler_config(layout: &Layout) -> String {
    let v = json!({
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "clientConnection": { "kubeconfig": path_str(&layout.kubeconfig("kube-scheduler")) },
        "leaderElection": { "leaderElect": true },
    });
    serde_json::to_string_pretty(&v).expect("a JSON literal serializes") + "\n"
}

/// The kubelet of `worker`: cluster DNS and domain as `spec.derived()` gives them, TLS with its own
/// certificate, client certificates checked against the cluster CA, the systemd cgroup driver, and
/// systemd-resolved's upstream list as the pods' resolver configuration ([`KUBELET_RESOLV_CONF`]).
pub fn kubelet_config(spec: &ClusterSpec, worker: &str, layout: &Layout) -> String {
    let derived = spec.derived();
    let flags = derived.flags.get(Component::Kubelet.name());
    let flag = |name: &str| {
        flags.and_then(|f| f.get(name)).cloned().unwrap_or_else(|| panic!("the spec derives the kubelet's {name}"))
    };
    let stem = kubelet_stem(worker);
    let v = json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": "0.0.0.0",
        "authentication": {
            "anonymous": { "enabled": false },
            "webhook": { "enabled": true },
            "x509": { "clientCAFile": path_str(&layout.cert("ca")) },
        },
        "authorization": { "mode": "Webhook" },
        "cgroupDriver": "systemd",
        "clusterDNS": [flag("cluster-dns")],
        "clusterDomain": flag("cluster-domain"),
        "containerRuntimeEndpoint": format!("unix://{}", path_str(&layout.containerd_socket)),
        "resolvConf": KUBELET_RESOLV_CONF,
        "runtimeRequestTimeout": "15m",
        "tlsCertFile": path_str(&layout.cert(&stem)),
        "tlsPrivateKeyFile": path_str(&layout.key(&stem)),
    });
    serde_json::to_string_pretty(&v).expect("a JSON literal serializes") + "\n"
}

/// Where containerd's CRI looks for per-registry hosts (`<dir>/<registry>/hosts.toml`, read at each pull, so a
/// mirror can be added to a running node): containerd docs/hosts.md, "CRI", for config version 2:
/// `[plugins."io.containerd.grpc.v1.cri".registry] config_path = "/etc/containerd/certs.d"`. Nothing is there
/// unless a scenario puts a mirror there (cold-image-wait).
pub const REGISTRY_HOSTS_DIR: &str = "/etc/containerd/certs.d";

/// containerd's CRI settings (config version 2, which Debian's containerd 1.6 and upstream 1.7 read):
/// runc with `SystemdCgroup = true` to match the kubelet, the pinned sandbox image, CNI where Cilium puts it.
/// and registry hosts in [`REGISTRY_HOSTS_DIR`].
pub fn containerd_config(sandbox_image: &str) -> String {
    let cri = r#"plugins."io.containerd.grpc.v1.cri""#;
    format!(
        "version = 2\n\
         \n\
         [{cri}]\n\
         sandbox_image = \"{sandbox_image}\"\n\
         \n\
         [{cri}.containerd]\n\
         default_runtime_name = \"runc\"\n\
         \n\
         [{cri}.containerd.runtimes.runc]\n\
         runtime_type = \"io.containerd.runc.v2\"\n\
         \n\
         [{cri}.containerd.runtimes.runc.options]\n\
         SystemdCgroup = true\n\
         \n\
         [{cri}.cni]\n\
         bin_dir = \"/opt/cni/bin\"\n\
         conf_dir = \"/etc/cni/net.d\"\n\
         \n\
         [{cri}.registry]\n\
         config_path = \"{REGISTRY_HOSTS_DIR}\"\n"
    )
}
