//! The cluster description: one `ClusterSpec`, read from TOML, whose default is the seed's cluster.
//!
//! Every address, CIDR, name, version and Cilium value the harness uses comes from here; `derive` computes
//! the values other components receive, and `validate` enforces the invariants the seed learned the hard way
//! before any VM starts.

mod derive;
mod duration;
mod location;
pub mod support;
mod validate;
mod versions;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

pub use derive::{cilium_derived_keys, Component, Derived, CILIUM_IPAM_MODE, ETCD_CLIENT_URL};
pub use duration::parse as parse_duration;
pub use location::Location;
pub use validate::{Violation, ViolationKind};
pub use versions::{Release, UnknownVersionSet, VersionKey, VersionSet, VersionSpec, Versions};

/// The whole cluster: topology, networks, Cilium, versions, and the switches scenarios flip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSpec {
    /// Used in libvirt object names and the run directory when `kthw up` is given no `--name`.
    pub name: String,
    /// May guests reach beyond their cluster network through the user-mode NIC. False in tests.
    pub egress: bool,
    /// Write every node's name into every node's /etc/hosts, so the apiserver reaches kubelets by name.
    pub resolve_node_names: bool,
    /// Where etcd comes from: the pinned upstream release, or the node image's Debian package.
    pub etcd_from: Origin,
    /// Where containerd, runc and the CNI plugins come from: the pinned upstream releases (containerd's
    /// support table asks 1.7.24+ for Kubernetes 1.32; Debian 12 has 1.6.20), or the node image's packages.
    pub containerd_from: Origin,
    pub images: ImagesSpec,
    pub network: NetworkSpec,
    pub nodes: Vec<NodeSpec>,
    pub cilium: CiliumSpec,
    /// The versions the cluster runs: a preset (`"seed"`, the default, or `"current"`), or a `[versions]` table
    /// naming any component's version over a preset; [`support`] says which combinations upstream supports.
    pub versions: VersionSpec,
    /// Extra command-line flags per component, by flag name without the leading dashes.
    pub components: ComponentFlags,
}

/// Where a component's binaries come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// The pinned upstream release (an artifact).
    Upstream,
    /// The node image's Debian package: no download, so it runs where upstream cannot be fetched.
    Debian,
}

/// How container images reach the nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImagesSpec {
    /// Put every image a phase deploys into each worker's containerd from the host's artifact cache before
    /// the phase, by its multi-arch index digest, so pods start with no pull. False reproduces the seed's cold
    /// pulls (which need `egress = true`).
    pub preload: bool,
    /// Images of the user's own, put into every node's containerd by digest once `kthw up` brought the cluster
    /// up, or a test's cluster started (`kthw::testkit`), as `kthw load` does: OCI archives (paths) or
    /// references to pull first (from a registry on loopback; nodes have no egress).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<String>,
}

impl Default for ImagesSpec {
    fn default() -> Self {
        ImagesSpec { preload: true, extra: Vec::new() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkSpec {
    /// The isolated node network every node's first NIC is on.
    pub nodes: Ipv4Net,
    /// The pod pool: kube-controller-manager's `--cluster-cidr` and Cilium's cluster-pool list, both.
    pub pods: Ipv4Net,
    /// Prefix length of the block each node gets from the pod pool.
    pub pod_mask_size: u8,
    /// The service network (`--service-cluster-ip-range`).
    pub services: Ipv4Net,
    /// The `kubernetes` service's ClusterIP: the first address of the service network.
    pub apiserver_service_ip: Ipv4Addr,
    /// The ClusterIP kubelets hand pods as their DNS server.
    pub cluster_dns: Ipv4Addr,
    pub cluster_domain: String,
    pub apiserver_port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    ControlPlane,
    Worker,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub name: String,
    pub role: Role,
    pub address: Ipv4Addr,
    #[serde(default = "NodeSpec::default_vcpus")]
    pub vcpus: u32,
    #[serde(default = "NodeSpec::default_memory_mib")]
    pub memory_mib: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CiliumSpec {
    /// Cilium replaces kube-proxy: there is no kube-proxy anywhere in the cluster.
    pub kube_proxy_replacement: bool,
    /// How long `cilium status --wait` waits; the seed's cold-image timeout is about this.
    #[serde(with = "duration")]
    pub status_wait: Duration,
    /// Further Helm values passed with `--set`, by dotted key. A value the spec derives may not be overridden.
    pub values: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ComponentFlags {
    #[serde(rename = "kube-apiserver")]
    pub kube_apiserver: BTreeMap<String, String>,
    #[serde(rename = "kube-controller-manager")]
    pub kube_controller_manager: BTreeMap<String, String>,
    #[serde(rename = "kube-scheduler")]
    pub kube_scheduler: BTreeMap<String, String>,
    pub kubelet: BTreeMap<String, String>,
    pub etcd: BTreeMap<String, String>,
}

/// Why a spec could not be read or used. Each variant says where and what to do.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read cluster spec {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", origin_at(origin, location))]
    Parse { origin: String, location: Option<Location>, message: String },
    #[error("{} is not a valid cluster spec ({} problem{}):\n{}", origin, violations.len(),
        if violations.len() == 1 { "" } else { "s" }, render_violations(violations))]
    Invalid { origin: String, violations: Vec<Violation> },
}

fn origin_at(origin: &str, location: &Option<Location>) -> String {
    match location {
        Some(l) => format!("{origin}:{}:{}", l.line, l.column),
        None => origin.to_string(),
    }
}

fn render_violations(violations: &[Violation]) -> String {
    violations.iter().map(|v| format!("  - {v}")).collect::<Vec<_>>().join("\n")
}

impl SpecError {
    /// The violations of an `Invalid` spec; empty for read and parse errors.
    pub fn violations(&self) -> &[Violation] {
        match self {
            SpecError::Invalid { violations, .. } => violations,
            _ => &[],
        }
    }
}

impl ClusterSpec {
    /// Parses TOML text; fields it omits keep the seed's defaults. `origin` names the text in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, SpecError> {
        toml::from_str(text).map_err(|e| SpecError::Parse {
            origin: origin.to_string(),
            location: e.span().map(|s| Location::of_offset(text, s.start)),
            message: match e.span().and_then(|span| location::describe_span(text, span)) {
                Some(what) => format!("{what}: {}", e.message().trim_end()),
                None => e.message().trim_end().to_string(),
            },
        })
    }

    /// Parses and validates: the spec every command works from. Violations carry line and column.
    pub fn from_toml_validated(text: &str, origin: &str) -> Result<Self, SpecError> {
        let spec = Self::from_toml(text, origin)?;
        let mut violations = spec.violations();
        if violations.is_empty() {
            return Ok(spec);
        }
        for v in &mut violations {
            v.location = location::locate(text, &v.field);
        }
        Err(SpecError::Invalid { origin: origin.to_string(), violations })
    }

    /// Reads, parses and validates a spec file.
    pub fn load(path: &Path) -> Result<Self, SpecError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| SpecError::Read { path: path.to_path_buf(), source })?;
        Self::from_toml_validated(&text, &path.display().to_string())
    }

    /// The spec from `path`, or the seed's default when there is none.
    pub fn load_or_default(path: Option<&Path>) -> Result<Self, SpecError> {
        match path {
            Some(p) => Self::load(p),
            None => Ok(Self::default()),
        }
    }

    /// Checks the invariants; an empty list means the spec is usable.
    pub fn violations(&self) -> Vec<Violation> {
        validate::violations(self)
    }

    pub fn validate(&self, origin: &str) -> Result<(), SpecError> {
        let violations = self.violations();
        if violations.is_empty() {
            Ok(())
        } else {
            Err(SpecError::Invalid { origin: origin.to_string(), violations })
        }
    }

    /// The one control-plane node. Validation guarantees there is exactly one.
    pub fn control_plane(&self) -> &NodeSpec {
        self.nodes
            .iter()
            .find(|n| n.role == Role::ControlPlane)
            .expect("a validated spec has exactly one control plane")
    }

    pub fn workers(&self) -> impl Iterator<Item = &NodeSpec> {
        self.nodes.iter().filter(|n| n.role == Role::Worker)
    }

    pub fn node(&self, name: &str) -> Option<&NodeSpec> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Every value other components receive from this spec.
    pub fn derived(&self) -> Derived {
        Derived::from_spec(self)
    }

    /// The spec as TOML, followed by every Cilium value and component flag it implies as comments: the output
    /// is itself a valid spec (`kthw spec show > lab.toml`, edit, `kthw spec validate lab.toml`).
    pub fn to_effective_toml(&self) -> String {
        #[derive(Serialize)]
        struct Effective {
            derived: Derived,
        }
        let spec = toml::to_string(self).expect("a ClusterSpec always serializes to TOML");
        let derived = toml::to_string(&Effective { derived: self.derived() }).expect("derived values serialize");
        let commented: String =
            derived.lines().map(|l| if l.is_empty() { "#\n".to_string() } else { format!("# {l}\n") }).collect();
        format!(
            "{spec}\n# What the fields above derive, for reading: set the fields, not these. `cilium.values` and\n\
             # `components` may repeat a derived value unchanged, never contradict it.\n{commented}"
        )
    }
}

impl NodeSpec {
    fn default_vcpus() -> u32 {
        2
    }
    fn default_memory_mib() -> u32 {
        2048
    }
    fn seed(name: &str, role: Role, last_octet: u8) -> Self {
        NodeSpec {
            name: name.to_string(),
            role,
            address: Ipv4Addr::new(10, 0, 0, last_octet),
            vcpus: Self::default_vcpus(),
            memory_mib: Self::default_memory_mib(),
        }
    }
}

impl Default for ClusterSpec {
    /// The seed's cluster: control-plane-1 at 10.0.0.4 and two workers, Cilium replacing kube-proxy.
    fn default() -> Self {
        ClusterSpec {
            name: "kthw".to_string(),
            egress: false,
            resolve_node_names: true,
            etcd_from: Origin::Upstream,
            containerd_from: Origin::Upstream,
            images: ImagesSpec::default(),
            network: NetworkSpec::default(),
            nodes: vec![
                NodeSpec::seed("control-plane-1", Role::ControlPlane, 4),
                NodeSpec::seed("worker-node-1", Role::Worker, 5),
                NodeSpec::seed("worker-node-2", Role::Worker, 6),
            ],
            cilium: CiliumSpec::default(),
            versions: VersionSpec::default(),
            components: ComponentFlags::default(),
        }
    }
}

impl Default for NetworkSpec {
    fn default() -> Self {
        NetworkSpec {
            nodes: "10.0.0.0/24".parse().expect("literal CIDR"),
            pods: "10.200.0.0/16".parse().expect("literal CIDR"),
            pod_mask_size: 24,
            services: "10.32.0.0/24".parse().expect("literal CIDR"),
            apiserver_service_ip: Ipv4Addr::new(10, 32, 0, 1),
            cluster_dns: Ipv4Addr::new(10, 32, 0, 10),
            cluster_domain: "cluster.local".to_string(),
            apiserver_port: 6443,
        }
    }
}

impl Default for CiliumSpec {
    fn default() -> Self {
        CiliumSpec {
            kube_proxy_replacement: true,
            // The seed's bootstrap script waited "up to 3 minutes".
            status_wait: Duration::from_secs(180),
            values: BTreeMap::new(),
        }
    }
}

impl ComponentFlags {
    pub fn for_component(&self, c: Component) -> &BTreeMap<String, String> {
        match c {
            Component::KubeApiserver => &self.kube_apiserver,
            Component::KubeControllerManager => &self.kube_controller_manager,
            Component::KubeScheduler => &self.kube_scheduler,
            Component::Kubelet => &self.kubelet,
            Component::Etcd => &self.etcd,
        }
    }
}

#[cfg(test)]
mod support_tests;
#[cfg(test)]
mod tests;
