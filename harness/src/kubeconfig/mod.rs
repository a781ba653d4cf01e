//! Kubeconfigs for admin (host and in-cluster), the controller manager, the scheduler and each kubelet.
//!
//! Each embeds the CA and its client certificate, so one file is all a component needs. Where each points
//! follows the seed: `admin` at `https://127.0.0.1:<port>` (the host's end of the SSH tunnel); `admin-internal`
//! at the control plane's address (root's `~/.kube/config` on the control plane: the seed's RBAC fix);
//! controller-manager and scheduler at `https://127.0.0.1:<port>` on the control plane itself, as the hard way
//! does; each kubelet at the control plane's address.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::pki::{kubelet_stem, CertKey, ClusterPki, PkiError};
use crate::spec::ClusterSpec;

/// The cluster's name inside every kubeconfig.
pub const CLUSTER_NAME: &str = "kubernetes-the-hard-way";

/// One kubeconfig: its file name, the identity it carries and where it points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kubeconfig {
    /// `<name>.kubeconfig`: `admin`, `admin-internal`, `kube-controller-manager`, `kube-scheduler`, or
    /// `kubelet-<worker>`.
    pub name: String,
    /// The user name inside the file (the certificate's CN).
    pub user: String,
    pub server: String,
    /// The YAML text.
    pub yaml: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("cannot build the {name} kubeconfig")]
    Pki {
        name: String,
        #[source]
        source: PkiError,
    },
    #[error("cannot write kubeconfig {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn https(host: Ipv4Addr, port: u16) -> String {
    format!("https://{host}:{port}")
}

/// Every kubeconfig the cluster needs, in a stable order.
pub fn all(spec: &ClusterSpec, pki: &ClusterPki) -> Result<Vec<Kubeconfig>, KubeconfigError> {
    let port = spec.network.apiserver_port;
    let local = https(Ipv4Addr::LOCALHOST, port);
    let internal = https(spec.control_plane().address, port);
    let mut out = vec![
        render(pki, "admin", "admin", "admin", &local)?,
        render(pki, "admin-internal", "admin", "admin", &internal)?,
        render(pki, "kube-controller-manager", "kube-controller-manager", "system:kube-controller-manager", &local)?,
        render(pki, "kube-scheduler", "kube-scheduler", "system:kube-scheduler", &local)?,
    ];
    for w in spec.workers() {
        let stem = kubelet_stem(&w.name);
        out.push(render(pki, &stem, &stem, &format!("system:node:{}", w.name), &internal)?);
    }
    Ok(out)
}

/// Writes each kubeconfig as `<dir>/<name>.kubeconfig`, mode 0600 (they hold private keys).
pub fn write_all(dir: &Path, configs: &[Kubeconfig]) -> Result<Vec<PathBuf>, KubeconfigError> {
    let werr = |path: &Path| {
        let path = path.to_path_buf();
        move |source| KubeconfigError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(werr(dir))?;
    configs
        .iter()
        .map(|k| {
            let path = dir.join(format!("{}.kubeconfig", k.name));
            crate::files::write_atomic(&path, k.yaml.as_bytes(), 0o600).map_err(werr(&path))?;
            Ok(path)
        })
        .collect()
}

fn render(pki: &ClusterPki, name: &str, stem: &str, user: &str, server: &str) -> Result<Kubeconfig, KubeconfigError> {
    let CertKey { cert_pem, key_pem } =
        pki.leaf(stem).map_err(|source| KubeconfigError::Pki { name: name.to_string(), source })?;
    // Every value is either base64 or a name/URL we built, none needing YAML quoting beyond what is used here.
    let yaml = format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: {CLUSTER_NAME}\n  \
           cluster:\n    \
             certificate-authority-data: {ca}\n    \
             server: {server}\n\
         users:\n\
         - name: \"{user}\"\n  \
           user:\n    \
             client-certificate-data: {cert}\n    \
             client-key-data: {key}\n\
         contexts:\n\
         - name: default\n  \
           context:\n    \
             cluster: {CLUSTER_NAME}\n    \
             user: \"{user}\"\n\
         current-context: default\n",
        ca = base64(pki.ca.cert_pem.as_bytes()),
        cert = base64(cert_pem.as_bytes()),
        key = base64(key_pem.as_bytes()),
    );
    Ok(Kubeconfig { name: name.to_string(), user: user.to_string(), server: server.to_string(), yaml })
}

/// Standard base64 with padding, as kubeconfig's `*-data` fields take it.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
