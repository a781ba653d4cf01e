//! The `pki` phase: the CA and every certificate, generated once into the run directory (reused when
//! present, so every run against a cluster installs the same CA) and installed on the nodes that use them,
//! nothing more: a worker gets its own kubelet identity and the CA certificate, never the CA key or another
//! node's key.

use crate::bootstrap::context::Ctx;
use crate::bootstrap::node::{install, Put};
use crate::bootstrap::{BootstrapError, Layout};
use crate::phase::Phase;
use crate::pki::{kubelet_stem, ClusterPki, CA_STEM, SERVICE_ACCOUNT_KEY, SERVICE_ACCOUNT_PUB};
use crate::rundir::RunDir;
use crate::spec::{ClusterSpec, NodeSpec, Role};

/// The PKI in `run_dir`, generated (and written) only if there is none yet.
pub fn load_or_generate(spec: &ClusterSpec, run_dir: &RunDir) -> Result<ClusterPki, BootstrapError> {
    let phase = Phase::Pki;
    let dir = run_dir.pki();
    if dir.exists() {
        return ClusterPki::load(&dir).map_err(|source| BootstrapError::Pki { phase, source });
    }
    let pki = ClusterPki::generate(spec).map_err(|source| BootstrapError::Pki { phase, source })?;
    // Written beside and renamed: an interrupted write never leaves a PKI that loads with leaves missing.
    let tmp = run_dir.pki_staging();
    let _ = std::fs::remove_dir_all(&tmp);
    pki.write(&tmp).map_err(|source| BootstrapError::Pki { phase, source })?;
    std::fs::rename(&tmp, &dir).map_err(|source| BootstrapError::Io {
        phase,
        action: "move into place",
        path: dir,
        source,
    })?;
    Ok(pki)
}

fn cert_and_key(pki: &ClusterPki, layout: &Layout, stem: &str) -> Result<[Put; 2], BootstrapError> {
    let ck = if stem == CA_STEM {
        &pki.ca
    } else {
        pki.leaf(stem).map_err(|source| BootstrapError::Pki { phase: Phase::Pki, source })?
    };
    Ok([
        Put::bytes(layout.cert(stem), ck.cert_pem.clone(), 0o644),
        Put::bytes(layout.key(stem), ck.key_pem.clone(), 0o600),
    ])
}

/// What `node` needs of the PKI, at the layout's paths; keys 0600.
pub fn pki_files(pki: &ClusterPki, layout: &Layout, node: &NodeSpec) -> Result<Vec<Put>, BootstrapError> {
    let mut files = Vec::new();
    match node.role {
        Role::ControlPlane => {
            // The CA key too: the controller manager signs with it (--cluster-signing-key-file).
            for stem in [CA_STEM, "kube-apiserver", "etcd-server", "etcd-peer", "etcd-client"] {
                files.extend(cert_and_key(pki, layout, stem)?);
            }
            let sa = &pki.service_account;
            files.push(Put::bytes(layout.pki_dir.join(SERVICE_ACCOUNT_KEY), sa.private_pem.clone(), 0o600));
            files.push(Put::bytes(layout.pki_dir.join(SERVICE_ACCOUNT_PUB), sa.public_pem.clone(), 0o644));
        }
        Role::Worker => {
            files.push(Put::bytes(layout.cert(CA_STEM), pki.ca.cert_pem.clone(), 0o644));
            files.extend(cert_and_key(pki, layout, &kubelet_stem(&node.name))?);
        }
    }
    Ok(files)
}

pub(super) async fn run(ctx: &Ctx<'_>) -> Result<Vec<String>, BootstrapError> {
    let spec = ctx.spec();
    let pki = load_or_generate(spec, ctx.cluster.run_dir())?;
    let work =
        spec.nodes.iter().map(|n| Ok((n.name.clone(), pki_files(&pki, ctx.layout(), n)?))).collect::<Result<_, _>>()?;
    ctx.per_node(work, |s, files: Vec<Put>| async move { install(Phase::Pki, &s, &files).await }).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(files: &[Put]) -> Vec<String> {
        files.iter().map(|f| f.remote.display().to_string()).collect()
    }

    #[test]
    fn a_worker_gets_its_own_identity_and_the_ca_certificate_only() {
        let spec = ClusterSpec::default();
        let pki = ClusterPki::generate(&spec).unwrap();
        let layout = Layout::default();
        let w1 = spec.node("worker-node-1").unwrap();
        let files = pki_files(&pki, &layout, w1).unwrap();
        assert_eq!(
            paths(&files),
            [
                "/etc/kubernetes/pki/ca.crt",
                "/etc/kubernetes/pki/kubelet-worker-node-1.crt",
                "/etc/kubernetes/pki/kubelet-worker-node-1.key"
            ]
        );
        assert_eq!(files.iter().map(|f| f.mode).collect::<Vec<_>>(), [0o644, 0o644, 0o600]);
    }

    #[test]
    fn the_control_plane_gets_the_ca_key_etcd_apiserver_and_service_account_keys_private() {
        let spec = ClusterSpec::default();
        let pki = ClusterPki::generate(&spec).unwrap();
        let files = pki_files(&pki, &Layout::default(), spec.control_plane()).unwrap();
        let p = paths(&files);
        for want in [
            "ca.key",
            "kube-apiserver.crt",
            "etcd-server.key",
            "etcd-peer.crt",
            "etcd-client.key",
            "service-account.key",
        ] {
            assert!(p.contains(&format!("/etc/kubernetes/pki/{want}")), "{want} missing from {p:?}");
        }
        assert!(!p.iter().any(|f| f.contains("kubelet-") || f.contains("admin")), "{p:?}");
        for f in &files {
            let key = f.remote.extension().is_some_and(|e| e == "key");
            assert_eq!(f.mode, if key { 0o600 } else { 0o644 }, "{}", f.remote.display());
        }
    }

    #[test]
    fn the_pki_is_generated_once_and_reused() {
        let spec = ClusterSpec::default();
        let dir = tempfile::tempdir().unwrap();
        let run_dir = RunDir::at(dir.path());
        let first = load_or_generate(&spec, &run_dir).unwrap();
        let again = load_or_generate(&spec, &run_dir).unwrap();
        assert_eq!(first, again);
        assert!(!run_dir.pki_staging().exists());
    }
}
