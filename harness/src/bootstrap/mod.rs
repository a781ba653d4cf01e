//! One phase per seed step, each idempotent, timed and logged per node.
//!
//! What the phases install is rendered as pure functions of the spec: systemd units (`units`) and component
//! configuration files (`configs`); where things live on a node is `Layout`. [`Phase`] names the steps,
//! [`Bootstrap`] runs them against a [`crate::cluster::Cluster`] (`run`, with the node-side work in `node`
//! and one module per phase), [`check_artifacts`] says before any VM boots what the pinned artifacts lack,
//! and `forward` gives the host its way to the apiserver.

mod check;
mod cilium_install;
mod configs;
mod control_plane;
pub mod coredns_manifest;
mod error;
mod etcd;
pub mod forward;
mod node;
mod phase;
mod run;
mod secrets;
mod units;
mod unpack;
mod workers;

use std::path::{Path, PathBuf};

pub use check::{check_artifacts, debian_etcd_hint, reach, Lack, Reach};
pub use cilium_install::{
    device_values, install_argv, install_values, status_argv, validate_values, UnknownCiliumValue,
    CHART_TOP_LEVEL_KEYS, CHART_VERSION, CILIUM_CLI, CLUSTER_NIC,
};
pub use configs::{containerd_config, kube_scheduler_config, kubelet_config, KUBELET_RESOLV_CONF};
pub use control_plane::{apiserver_to_kubelet_rbac, kubectl};
pub use coredns_manifest::{coredns, corefile, CoreDns};
pub use error::{render_lacks, BootstrapError, WaitFailed};
pub use etcd::{etcdctl, etcdctl_as, etcdctl_binary};
pub use node::{Put, Source, JOURNAL_LINES};
pub use phase::{Phase, UnknownPhase};
pub use run::{Bootstrap, PhaseReport, TIMINGS_FILE};
pub use secrets::{kubeconfig_dir, kubeconfig_files, load_or_generate, pki_dir, pki_files, ROOT_KUBECONFIG};
pub use units::{
    containerd_unit, etcd_unit, kube_apiserver_unit, kube_controller_manager_unit, kube_scheduler_unit, kubelet_unit,
    start_timeout, SYSTEMD_DEFAULT_START_TIMEOUT,
};
pub use workers::import_image;

use crate::accel::Accel;
use crate::pki;
use crate::spec::{ClusterSpec, EtcdSource};

/// A file to install on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFile {
    pub path: PathBuf,
    pub contents: String,
    pub mode: u32,
}

/// Where the phases put things on a node. The default follows the hard way's layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Upstream binaries (kube-*, kubelet, etcd from the release tarball).
    pub bin_dir: PathBuf,
    /// Certificates and keys, with the file names of `pki`.
    pub pki_dir: PathBuf,
    /// Kubeconfigs (`<name>.kubeconfig`) and component configuration files.
    pub config_dir: PathBuf,
    pub etcd_data_dir: PathBuf,
    pub kubelet_dir: PathBuf,
    pub unit_dir: PathBuf,
    pub containerd_config: PathBuf,
    pub containerd_socket: PathBuf,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            bin_dir: "/usr/local/bin".into(),
            pki_dir: "/etc/kubernetes/pki".into(),
            config_dir: "/etc/kubernetes".into(),
            etcd_data_dir: "/var/lib/etcd".into(),
            kubelet_dir: "/var/lib/kubelet".into(),
            unit_dir: "/etc/systemd/system".into(),
            containerd_config: "/etc/containerd/config.toml".into(),
            containerd_socket: "/run/containerd/containerd.sock".into(),
        }
    }
}

impl Layout {
    pub fn cert(&self, stem: &str) -> PathBuf {
        pki::cert_path(&self.pki_dir, stem)
    }

    pub fn key(&self, stem: &str) -> PathBuf {
        pki::key_path(&self.pki_dir, stem)
    }

    pub fn kubeconfig(&self, name: &str) -> PathBuf {
        self.config_dir.join(format!("{name}.kubeconfig"))
    }

    /// etcd's binary: the release tarball's in `bin_dir`, or the Debian package's.
    pub fn etcd_binary(&self, spec: &ClusterSpec) -> PathBuf {
        match spec.etcd_from {
            EtcdSource::Upstream => self.bin_dir.join("etcd"),
            EtcdSource::Debian => "/usr/bin/etcd".into(),
        }
    }

    pub fn unit(&self, name: &str) -> PathBuf {
        self.unit_dir.join(format!("{name}.service"))
    }

    pub fn kube_scheduler_config(&self) -> PathBuf {
        self.config_dir.join("kube-scheduler.yaml")
    }

    pub fn kubelet_config(&self) -> PathBuf {
        self.kubelet_dir.join("kubelet-config.yaml")
    }
}

fn file(path: PathBuf, contents: String) -> NodeFile {
    NodeFile { path, contents, mode: 0o644 }
}

/// The units and configuration files the `etcd` phase installs on the control plane; `accel` scales the
/// unit's start timeout.
pub fn etcd_files(spec: &ClusterSpec, layout: &Layout, accel: Accel) -> Vec<NodeFile> {
    vec![file(layout.unit("etcd"), etcd_unit(spec, layout, accel))]
}

/// The units and configuration files the `control-plane` phase installs on the control plane; `accel`
/// scales the apiserver's start timeout.
pub fn control_plane_files(spec: &ClusterSpec, layout: &Layout, accel: Accel) -> Vec<NodeFile> {
    vec![
        file(layout.unit("kube-apiserver"), kube_apiserver_unit(spec, layout, accel)),
        file(layout.unit("kube-controller-manager"), kube_controller_manager_unit(spec, layout)),
        file(layout.unit("kube-scheduler"), kube_scheduler_unit(spec, layout)),
        file(layout.kube_scheduler_config(), kube_scheduler_config(layout)),
    ]
}

/// The units and configuration files the `workers` phase installs on `worker`. `sandbox_image` is the
/// pinned pause image (the artifact manifest's `pause` reference).
pub fn worker_files(spec: &ClusterSpec, worker: &str, layout: &Layout, sandbox_image: &str) -> Vec<NodeFile> {
    vec![
        file(layout.containerd_config.clone(), containerd_config(sandbox_image)),
        file(layout.kubelet_config(), kubelet_config(spec, worker, layout)),
        file(layout.unit("kubelet"), kubelet_unit(spec, worker, layout)),
    ]
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

#[cfg(test)]
mod tests;
