//! Component configuration files: the scheduler's and kubelet's (JSON, which both read as YAML) and
//! containerd's (TOML, with the systemd cgroup driver the kubelet is set to, in the config version of the
//! containerd that reads it).

use serde_json::json;

use super::{path_str, Layout};
use crate::pki::kubelet_stem;
use crate::spec::{ClusterSpec, Component, Origin, Release};

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
/// mirror can be added to a running node): containerd docs/hosts.md, "CRI", at v2.1.9: the registry's
/// `config_path`, under `plugins."io.containerd.grpc.v1.cri".registry` in config version 2 and under
/// `plugins."io.containerd.cri.v1.images".registry` in version 3. Nothing is there unless a scenario puts a
/// mirror there (cold-image-wait).
pub const REGISTRY_HOSTS_DIR: &str = "/etc/containerd/certs.d";

/// Where the CNI plugins are (the hard way's place; Cilium installs its own there) and their configuration.
pub const CNI_BIN_DIR: &str = "/opt/cni/bin";
const CNI_CONF_DIR: &str = "/etc/cni/net.d";

/// The format of containerd's config file that a containerd reads as its own. containerd's RELEASES.md,
/// "Daemon Configuration" (containerd/containerd@v2.1.9, commit 926009266892): version 2 from v1.3.0, version
/// 3 from v2.0.0; 2.x still reads version 2 but migrates it "on each startup" and logs "Configuration migrated
/// from version 2, use `containerd config migrate` to avoid migration" (cmd/containerd/server/server.go).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerdConfig {
    /// Config version 2: containerd 1.x (Debian 12's 1.6, upstream 1.7).
    V2,
    /// Config version 3 as containerd 2.0 reads it: the CNI plugins in one `bin_dir`.
    V3,
    /// Config version 3 from containerd 2.1, where `bin_dir` is "DEPRECATED, use `bin_dirs` instead (since
    /// containerd v2.1)" (docs/cri/config.md at v2.1.9; containerd pull 11311, commit 71f593d4a), and a config
    /// that sets it gets the warning "`bin_dir` is deprecated, please use `bin_dirs` instead"
    /// (internal/cri/config/config.go ValidateRuntimeConfig, v2.1.9 and v2.2.7).
    V3BinDirs,
}

impl ContainerdConfig {
    /// The format of containerd `release`.
    pub fn for_release(release: Release) -> ContainerdConfig {
        match release.minor_version() {
            (0 | 1, _) => ContainerdConfig::V2,
            (2, 0) => ContainerdConfig::V3,
            _ => ContainerdConfig::V3BinDirs,
        }
    }

    /// The format of the containerd `spec` runs: the version it names, or the node image's Debian 12
    /// containerd 1.6.20 with `containerd_from = "debian"`.
    pub fn for_spec(spec: &ClusterSpec) -> ContainerdConfig {
        if spec.containerd_from == Origin::Debian {
            return ContainerdConfig::V2;
        }
        let pins = spec.versions.pins();
        let release = Release::parse(&pins.containerd)
            .unwrap_or_else(|| panic!("the spec's containerd {:?} is a release (its table says so)", pins.containerd));
        ContainerdConfig::for_release(release)
    }

    /// The file's `version`.
    pub fn version(self) -> i64 {
        match self {
            ContainerdConfig::V2 => 2,
            ContainerdConfig::V3 | ContainerdConfig::V3BinDirs => 3,
        }
    }
}

/// containerd's CRI settings, in the config format of the containerd that reads them: runc with
/// `SystemdCgroup = true` to match the kubelet, the pinned sandbox image, CNI where Cilium puts it, and
/// registry hosts in [`REGISTRY_HOSTS_DIR`]. The tables, per version, as containerd's docs/cri/config.md
/// gives them (v1.7.27 for version 2; v2.1.9, "Full configuration", for version 3): version 3 splits the one
/// CRI plugin of version 2 in two, `io.containerd.cri.v1.images` (the sandbox image, now
/// `pinned_images.sandbox`, and the registry) and `io.containerd.cri.v1.runtime` (runtimes and CNI), as
/// containerd's own migration of a version 2 file does (plugins/cri/images/plugin.go and
/// plugins/cri/runtime/plugin.go, `configMigration`, at v2.1.9).
pub fn containerd_config(format: ContainerdConfig, sandbox_image: &str) -> String {
    let (images, runtime) = match format {
        ContainerdConfig::V2 => (r#"plugins."io.containerd.grpc.v1.cri""#, r#"plugins."io.containerd.grpc.v1.cri""#),
        ContainerdConfig::V3 | ContainerdConfig::V3BinDirs => {
            (r#"plugins."io.containerd.cri.v1.images""#, r#"plugins."io.containerd.cri.v1.runtime""#)
        }
    };
    let sandbox = match format {
        ContainerdConfig::V2 => format!("[{images}]\nsandbox_image"),
        _ => format!("[{images}.pinned_images]\nsandbox"),
    };
    let bin = match format {
        ContainerdConfig::V3BinDirs => format!("bin_dirs = [\"{CNI_BIN_DIR}\"]"),
        _ => format!("bin_dir = \"{CNI_BIN_DIR}\""),
    };
    format!(
        "version = {}\n\
         \n\
         {sandbox} = \"{sandbox_image}\"\n\
         \n\
         [{images}.registry]\n\
         config_path = \"{REGISTRY_HOSTS_DIR}\"\n\
         \n\
         [{runtime}.containerd]\n\
         default_runtime_name = \"runc\"\n\
         \n\
         [{runtime}.containerd.runtimes.runc]\n\
         runtime_type = \"io.containerd.runc.v2\"\n\
         \n\
         [{runtime}.containerd.runtimes.runc.options]\n\
         SystemdCgroup = true\n\
         \n\
         [{runtime}.cni]\n\
         {bin}\n\
         conf_dir = \"{CNI_CONF_DIR}\"\n",
        format.version()
    )
}

/// What a containerd config file sets of the CRI settings kthw renders, read from version 2 or 3 alike, with
/// containerd's CRI defaults for what it leaves unset (docs/cri/config.md: `SystemdCgroup = false`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriSettings {
    pub version: i64,
    pub sandbox_image: Option<String>,
    pub systemd_cgroup: bool,
    pub default_runtime: Option<String>,
    pub runc_runtime_type: Option<String>,
    /// `bin_dirs`, or `bin_dir` as the one entry (containerd 2.1 moves it there the same way).
    pub cni_bin_dirs: Vec<String>,
    pub cni_conf_dir: Option<String>,
    pub registry_config_path: Option<String>,
}

impl CriSettings {
    /// Reads `text` (a file we render, or what `containerd config migrate`/`dump` prints).
    pub fn read(text: &str) -> Result<CriSettings, String> {
        let v: toml::Value = toml::from_str(text).map_err(|e| format!("not TOML: {e}"))?;
        let version = v.get("version").and_then(|v| v.as_integer()).unwrap_or(1);
        let (images, runtime) = if version >= 3 {
            ("io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime")
        } else {
            ("io.containerd.grpc.v1.cri", "io.containerd.grpc.v1.cri")
        };
        let at = |plugin: &str, path: &[&str]| {
            let plugin = v.get("plugins").and_then(|p| p.get(plugin));
            path.iter().try_fold(plugin?, |v, k| v.get(k))
        };
        let text = |plugin: &str, path: &[&str]| at(plugin, path).and_then(|v| v.as_str()).map(str::to_string);
        let sandbox_image =
            if version >= 3 { text(images, &["pinned_images", "sandbox"]) } else { text(images, &["sandbox_image"]) };
        let mut cni_bin_dirs: Vec<String> = at(runtime, &["cni", "bin_dirs"])
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|d| d.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        cni_bin_dirs.extend(text(runtime, &["cni", "bin_dir"]).filter(|d| !d.is_empty()));
        const RUNC: [&str; 3] = ["containerd", "runtimes", "runc"];
        Ok(CriSettings {
            version,
            sandbox_image,
            systemd_cgroup: at(runtime, &[RUNC[0], RUNC[1], RUNC[2], "options", "SystemdCgroup"])
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            default_runtime: text(runtime, &["containerd", "default_runtime_name"]),
            runc_runtime_type: text(runtime, &[RUNC[0], RUNC[1], RUNC[2], "runtime_type"]),
            cni_bin_dirs,
            cni_conf_dir: text(runtime, &["cni", "conf_dir"]),
            registry_config_path: text(images, &["registry", "config_path"]),
        })
    }
}
