//! Where the phases put things on a node (the hard way's layout), and the node-side commands that follow
//! from it: kubectl as root's admin-internal identity, etcdctl as a given etcd client.

use std::path::{Path, PathBuf};

use crate::pki;
use crate::spec::{ClusterSpec, Origin};
use crate::ssh::shell_quote;

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
    /// root's kubeconfig on the control plane: admin-internal, the seed's RBAC fix (never a component's
    /// identity).
    pub root_kubeconfig: PathBuf,
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
            root_kubeconfig: "/root/.kube/config".into(),
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
            Origin::Upstream => self.bin_dir.join("etcd"),
            Origin::Debian => "/usr/bin/etcd".into(),
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

    /// kubectl on the control plane, as root's admin-internal kubeconfig.
    pub fn kubectl(&self) -> String {
        format!("{} --kubeconfig={}", q(&self.bin_dir.join("kubectl")), q(&self.root_kubeconfig))
    }

    /// etcdctl beside the etcd binary the spec chooses.
    pub fn etcdctl_binary(&self, spec: &ClusterSpec) -> PathBuf {
        self.etcd_binary(spec).with_file_name("etcdctl")
    }

    /// An etcdctl command line against etcd's client URL (loopback on the control plane) over TLS, as the
    /// client whose certificate and key are at `cert` and `key`. No `ETCDCTL_API=3`: v3 is etcdctl's default
    /// since etcd 3.4 (etcd-io/etcd@v3.4.0:etcdctl/main.go runs ctlv3 when the variable is empty), and 3.6's
    /// etcdctl, which has only v3, warns "unrecognized environment variable" for any `ETCDCTL_` it does not
    /// know (etcd-io/etcd@v3.6.0:pkg/flags/flag.go `verifyEnv`), noise in every output we keep.
    pub fn etcdctl_as(&self, spec: &ClusterSpec, cert: &Path, key: &Path) -> String {
        format!(
            "{} --endpoints={} --cacert={} --cert={} --key={}",
            q(&self.etcdctl_binary(spec)),
            crate::spec::ETCD_CLIENT_URL,
            q(&self.cert("ca")),
            q(cert),
            q(key),
        )
    }

    /// etcdctl as the apiserver's etcd client (`etcd-client`).
    pub fn etcdctl(&self, spec: &ClusterSpec) -> String {
        self.etcdctl_as(spec, &self.cert("etcd-client"), &self.key("etcd-client"))
    }

    /// `ctr` against containerd's socket.
    pub fn ctr(&self) -> String {
        format!("ctr --address {}", q(&self.containerd_socket))
    }
}

fn q(p: &Path) -> String {
    shell_quote(&p.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcdctl_runs_over_tls_to_the_control_plane_with_the_chosen_binary_and_no_api_variable() {
        let mut spec = ClusterSpec { etcd_from: Origin::Debian, ..ClusterSpec::default() };
        let cmd = Layout::default().etcdctl(&spec);
        assert_eq!(
            cmd,
            "/usr/bin/etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/ca.crt \
             --cert=/etc/kubernetes/pki/etcd-client.crt --key=/etc/kubernetes/pki/etcd-client.key"
        );
        spec.etcd_from = Origin::Upstream;
        assert!(Layout::default().etcdctl(&spec).starts_with("/usr/local/bin/etcdctl "));
        assert!(!cmd.contains("ETCDCTL_"), "3.6 warns about every ETCDCTL_ variable it does not know: {cmd}");
    }

    #[test]
    fn kubectl_is_roots_admin_internal_identity() {
        assert_eq!(Layout::default().kubectl(), "/usr/local/bin/kubectl --kubeconfig=/root/.kube/config");
    }
}
