//! The units and configuration files each phase installs, rendered from the spec (`units`, `configs`).

use std::path::PathBuf;

use super::configs::{containerd_config, kube_scheduler_config, kubelet_config, ContainerdConfig};
use super::units::{etcd_unit, kube_apiserver_unit, kube_controller_manager_unit, kube_scheduler_unit, kubelet_unit};
use super::Layout;
use crate::accel::Accel;
use crate::spec::ClusterSpec;

/// A file to install on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFile {
    pub path: PathBuf,
    pub contents: String,
    pub mode: u32,
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
/// pinned pause image (the artifact manifest's `pause` reference); containerd's config is in the format of
/// the containerd the spec runs.
pub fn worker_files(spec: &ClusterSpec, worker: &str, layout: &Layout, sandbox_image: &str) -> Vec<NodeFile> {
    vec![
        file(layout.containerd_config.clone(), containerd_config(ContainerdConfig::for_spec(spec), sandbox_image)),
        file(layout.kubelet_config(), kubelet_config(spec, worker, layout)),
        file(layout.unit("kubelet"), kubelet_unit(spec, worker, layout)),
    ]
}
