//! A `cilium sysdump` archive as a bug report carries it, read for what kthw can stand up again: its
//! Kubernetes and Cilium versions and its Helm values, and what it cannot (another CNI configuration, a kernel
//! kthw's nodes do not run, host-specific values).
//!
//! The archive's layout is cilium-cli's (vendor/github.com/cilium/cilium/cilium-cli/sysdump/, v0.18.4 and
//! v0.19.7): a zip of one directory `cilium-sysdump-<ts>` (defaults.go `DefaultOutputFileName`, sysdump.go
//! `.zip`), `<ts>` the time as `20060102-150405` (constants.go `timeFormat`), holding among others
//! `k8s-version-<ts>.txt` (the API server's `version.Info` printed with Go's `%#v`, client.go `GetVersion`),
//! `cilium-helm-metadata-<ts>.yaml` and `cilium-helm-values-<ts>.yaml` (Helm's `get metadata` and
//! `get values` of the release, YAML), `k8s-nodes-<ts>.yaml` (the Node list) and `cniconf-<pod>-<file>-<ts>.txt`
//! (each node's CNI configuration files). An extracted directory reads the same.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::spec::support::CONTAINERD;
use crate::spec::{ClusterSpec, Release, VersionKey, VersionSet, VersionSpec};

/// The files a sysdump must hold for kthw to read it, by the prefix and suffix around `<ts>`.
const VERSION_FILE: (&str, &str) = ("k8s-version-", ".txt");
const HELM_METADATA: (&str, &str) = ("cilium-helm-metadata-", ".yaml");
const HELM_VALUES: (&str, &str) = ("cilium-helm-values-", ".yaml");
const NODES: (&str, &str) = ("k8s-nodes-", ".yaml");
const CNI_CONF: (&str, &str) = ("cniconf-", ".txt");

/// The kernel kthw's nodes run (the node image is Debian 12's; images/README.md).
pub const NODE_KERNEL: &str = "Debian 12's 6.1";

#[derive(Debug, thiserror::Error)]
pub enum SysdumpError {
    #[error("cannot read {}: {why}", path.display())]
    Read { path: PathBuf, why: String },
    #[error(
        "{} is not a cilium sysdump: it holds no {what} (cilium sysdump writes k8s-version-<ts>.txt, \
         cilium-helm-metadata-<ts>.yaml and cilium-helm-values-<ts>.yaml into cilium-sysdump-<ts>/); give the \
         .zip `cilium sysdump` wrote, or its extracted directory",
        path.display()
    )]
    NotASysdump { path: PathBuf, what: String },
    #[error("{}: {file}: {why}", path.display())]
    Malformed { path: PathBuf, file: String, why: String },
}

/// What a sysdump says about the cluster it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Sysdump {
    pub path: PathBuf,
    /// The API server's `GitVersion` (`v1.32.4`).
    pub kubernetes: String,
    /// The Helm release's chart version (Cilium's version).
    pub cilium: String,
    /// The release's user-supplied values (`helm get values`), as a tree.
    pub values: Value,
    /// Each node's name and `status.nodeInfo.kernelVersion`.
    pub kernels: Vec<(String, String)>,
    /// Each CNI configuration file the sysdump holds: its sysdump file name and content.
    pub cni_confs: Vec<(String, String)>,
}

/// Whether `path` looks like a sysdump rather than a kthw bundle or a spec: a `.zip`, or a directory holding
/// a `k8s-version-<ts>.txt`.
pub fn looks_like(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "zip")
        || (path.is_dir()
            && std::fs::read_dir(path)
                .is_ok_and(|d| d.flatten().any(|e| matches(&e.file_name().to_string_lossy(), VERSION_FILE))))
}

fn matches(name: &str, (prefix, suffix): (&str, &str)) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    base.starts_with(prefix) && base.ends_with(suffix)
}

/// The sysdump's files by name, read from the zip (with Debian's `unzip`) or the directory.
fn files(path: &Path) -> Result<BTreeMap<String, String>, SysdumpError> {
    let read_err = |why: String| SysdumpError::Read { path: path.to_path_buf(), why };
    let wanted = |n: &str| [VERSION_FILE, HELM_METADATA, HELM_VALUES, NODES, CNI_CONF].iter().any(|p| matches(n, *p));
    let mut out = BTreeMap::new();
    if path.is_dir() {
        for e in std::fs::read_dir(path).map_err(|e| read_err(e.to_string()))?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if wanted(&name) {
                out.insert(name, std::fs::read_to_string(e.path()).map_err(|e| read_err(e.to_string()))?);
            }
        }
        return Ok(out);
    }
    let unzip = |args: &[&str]| -> Result<String, SysdumpError> {
        let o = Command::new("unzip").args(args).arg(path).output().map_err(|e| {
            read_err(format!("cannot run unzip ({e}); install it (`apt-get install unzip`) or extract the archive"))
        })?;
        if !o.status.success() {
            return Err(read_err(format!(
                "it is not a zip archive (unzip: {})",
                String::from_utf8_lossy(&o.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    };
    for name in unzip(&["-Z1"])?.lines().filter(|n| wanted(n)) {
        let o = Command::new("unzip").arg("-p").arg(path).arg(name).output().map_err(|e| read_err(e.to_string()))?;
        out.insert(
            name.rsplit('/').next().unwrap_or(name).to_string(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        );
    }
    Ok(out)
}

fn yaml(path: &Path, file: &str, text: &str) -> Result<Value, SysdumpError> {
    serde_saphyr::from_str::<Value>(text).map_err(|e| SysdumpError::Malformed {
        path: path.to_path_buf(),
        file: file.to_string(),
        why: format!("not YAML: {e}"),
    })
}

impl Sysdump {
    pub fn read(path: &Path) -> Result<Sysdump, SysdumpError> {
        let files = files(path)?;
        let one = |p: (&str, &str), what: &str| -> Result<(&String, &String), SysdumpError> {
            files
                .iter()
                .find(|(n, _)| matches(n, p))
                .ok_or_else(|| SysdumpError::NotASysdump { path: path.to_path_buf(), what: what.to_string() })
        };
        let (vname, vtext) = one(VERSION_FILE, "k8s-version-<ts>.txt (the Kubernetes version)")?;
        let kubernetes = vtext
            .split("GitVersion:\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .filter(|v| Release::parse(v).is_some())
            .ok_or_else(|| SysdumpError::Malformed {
                path: path.to_path_buf(),
                file: vname.clone(),
                why: format!("no GitVersion:\"vX.Y.Z\" in {:?}", vtext.chars().take(120).collect::<String>()),
            })?
            .to_string();
        let (mname, mtext) = one(HELM_METADATA, "cilium-helm-metadata-<ts>.yaml (the Cilium release)")?;
        let meta = yaml(path, mname, mtext)?;
        let cilium =
            meta["version"].as_str().filter(|v| Release::parse(v).is_some()).map(str::to_string).ok_or_else(|| {
                SysdumpError::Malformed {
                    path: path.to_path_buf(),
                    file: mname.clone(),
                    why: "no chart version".into(),
                }
            })?;
        let (valname, valtext) = one(HELM_VALUES, "cilium-helm-values-<ts>.yaml (the Helm values)")?;
        let values = match yaml(path, valname, valtext)? {
            Value::Null => Value::Object(Default::default()),
            v => v,
        };
        let mut kernels = Vec::new();
        if let Some((nname, ntext)) = files.iter().find(|(n, _)| matches(n, NODES)) {
            for node in yaml(path, nname, ntext)?["items"].as_array().into_iter().flatten() {
                let name = node["metadata"]["name"].as_str().unwrap_or("?").to_string();
                let kernel = node["status"]["nodeInfo"]["kernelVersion"].as_str().unwrap_or("?").to_string();
                kernels.push((name, kernel));
            }
        }
        let cni_confs =
            files.iter().filter(|(n, _)| matches(n, CNI_CONF)).map(|(n, t)| (n.clone(), t.clone())).collect();
        Ok(Sysdump { path: path.to_path_buf(), kubernetes, cilium, values, kernels, cni_confs })
    }
}

/// The spec a sysdump becomes, what of it was carried over and what was not (each with why).
#[derive(Debug, Clone, PartialEq)]
pub struct Carried {
    pub spec: ClusterSpec,
    pub carried: Vec<String>,
    pub not_carried: Vec<String>,
}

/// Helm values that name the reporter's hosts, not the cluster's behaviour: kthw's cluster has its own.
const HOST_SPECIFIC: [&str; 3] = ["k8sServiceHost", "k8sServicePort", "devices"];

fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, child) in map {
                let key = k.replace('.', "\\.");
                flatten(&if prefix.is_empty() { key } else { format!("{prefix}.{key}") }, child, out);
            }
        }
        _ => out.push((prefix.to_string(), v.clone())),
    }
}

fn toml_value(v: &Value) -> Option<toml::Value> {
    Some(match v {
        Value::Bool(b) => toml::Value::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Float(n.as_f64()?),
        },
        Value::String(s) => toml::Value::String(s.clone()),
        Value::Array(items) => toml::Value::Array(items.iter().map(toml_value).collect::<Option<_>>()?),
        _ => return None,
    })
}

impl Sysdump {
    /// The kthw spec closest to the sysdump's cluster: its Kubernetes and Cilium versions (over the current
    /// preset, whose cilium CLI installs Cilium 1.16 and newer; containerd the preset's when containerd's
    /// table recommends it for that Kubernetes, else that table's newest floor), its Helm values as
    /// `cilium.values` (those kthw derives mapped onto the fields they come from), and the rest said.
    pub fn to_spec(&self, name: &str) -> Carried {
        let mut spec = ClusterSpec { name: name.to_string(), ..ClusterSpec::default() };
        let (mut carried, mut not_carried) = (Vec::new(), Vec::new());
        let mut versions = VersionSpec::from(VersionSet::Current);
        let k8s = Release::parse(&self.kubernetes).expect("read checked it");
        versions.named.insert(VersionKey::Kubernetes, k8s.to_string());
        versions.named.insert(VersionKey::Cilium, Release::parse(&self.cilium).expect("read checked it").to_string());
        if let Some(row) = CONTAINERD.iter().find(|r| r.kubernetes == k8s.minor_version()) {
            let preset = Release::parse(&VersionSet::Current.pins().containerd).expect("a preset's version parses");
            if !row.containerd.iter().any(|f| f.minor_version() == preset.minor_version() && preset >= *f) {
                versions.named.insert(VersionKey::Containerd, row.containerd[0].to_string());
            }
        }
        carried.push(format!("Kubernetes {} and Cilium {}", self.kubernetes, self.cilium));
        spec.versions = versions;

        let mut leaves = Vec::new();
        flatten("", &self.values, &mut leaves);
        for (key, value) in leaves.into_iter().filter(|(k, _)| !k.is_empty()) {
            let shown = format!("{key} = {value}");
            match key.as_str() {
                k if HOST_SPECIFIC.contains(&k) => {
                    not_carried.push(format!("{shown}: names the reporter's hosts; kthw's cluster derives its own"))
                }
                "kubeProxyReplacement" => match value.as_bool().or_else(|| value.as_str().map(|s| s == "true")) {
                    Some(b) => {
                        spec.cilium.kube_proxy_replacement = b;
                        carried.push(format!("{shown} as cilium.kube_proxy_replacement"));
                    }
                    None => not_carried.push(format!("{shown}: kthw takes true or false")),
                },
                "ipam.mode" if value.as_str() != Some(crate::spec::CILIUM_IPAM_MODE) => {
                    not_carried.push(format!("{shown}: kthw's clusters use cluster-pool IPAM"))
                }
                "ipam.mode" => carried.push(shown),
                "ipam.operator.clusterPoolIPv4PodCIDRList" => {
                    let first = value.as_array().and_then(|a| a.first()).unwrap_or(&value);
                    match first.as_str().and_then(|s| s.parse().ok()) {
                        Some(pool) => {
                            spec.network.pods = pool;
                            carried.push(format!("{shown} as network.pods"));
                        }
                        None => not_carried.push(format!("{shown}: not one IPv4 pool")),
                    }
                }
                "ipam.operator.clusterPoolIPv4MaskSize" => match value.as_u64().and_then(|m| u8::try_from(m).ok()) {
                    Some(m) => {
                        spec.network.pod_mask_size = m;
                        carried.push(format!("{shown} as network.pod_mask_size"));
                    }
                    None => not_carried.push(format!("{shown}: not a prefix length")),
                },
                _ => match toml_value(&value) {
                    Some(t) => {
                        spec.cilium.values.insert(key.clone(), t);
                        carried.push(format!("{shown} as cilium.values"));
                    }
                    None => not_carried.push(format!("{shown}: not a value `--set` can pass")),
                },
            }
        }
        for (node, kernel) in &self.kernels {
            not_carried.push(format!("node {node} ran kernel {kernel}; kthw's nodes run {NODE_KERNEL}"));
        }
        for (file, text) in &self.cni_confs {
            if !text.contains("cilium-cni") {
                not_carried
                    .push(format!("{file}: a CNI configuration that is not Cilium's; kthw installs Cilium's only"));
            }
        }
        for v in spec.violations() {
            not_carried.push(format!("{} is not valid here: {}", v.field, v.kind));
        }
        Carried { spec, carried, not_carried }
    }
}

#[cfg(test)]
mod tests;
