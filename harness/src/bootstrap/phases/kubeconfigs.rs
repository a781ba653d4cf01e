//! The `kubeconfigs` phase: admin, admin-internal, the controller manager, the scheduler and each kubelet,
//! written once into the run directory and installed where each is used: the control plane its components'
//! and root's (admin-internal, the seed's RBAC fix), a worker its own kubelet's only.

use crate::bootstrap::context::Ctx;
use crate::bootstrap::node::{install, Put};
use crate::bootstrap::{BootstrapError, Layout};
use crate::kubeconfig::{self, Kubeconfig};
use crate::phase::Phase;
use crate::pki::{kubelet_stem, ClusterPki};
use crate::spec::{NodeSpec, Role};

/// What `node` needs of the kubeconfigs: the control plane its components' and root's (admin-internal), a
/// worker its kubelet's. All 0600: each embeds a private key.
pub fn kubeconfig_files(configs: &[Kubeconfig], layout: &Layout, node: &NodeSpec) -> Vec<Put> {
    let by_name =
        |name: &str| configs.iter().find(|k| k.name == name).unwrap_or_else(|| panic!("kubeconfig::all makes {name}"));
    let put = |name: &str| Put::bytes(layout.kubeconfig(name), by_name(name).yaml.clone(), 0o600);
    match node.role {
        Role::ControlPlane => vec![
            put("kube-controller-manager"),
            put("kube-scheduler"),
            put("admin-internal"),
            Put::bytes(&layout.root_kubeconfig, by_name("admin-internal").yaml.clone(), 0o600),
        ],
        Role::Worker => vec![put(&kubelet_stem(&node.name))],
    }
}

pub(super) async fn run(ctx: &Ctx<'_>) -> Result<Vec<String>, BootstrapError> {
    let phase = Phase::Kubeconfigs;
    let spec = ctx.spec();
    let dir = ctx.cluster.run_dir().pki();
    if !dir.exists() {
        return Err(BootstrapError::Node {
            phase,
            detail: format!("no PKI in {}: run the pki phase first", dir.display()),
        });
    }
    let pki = ClusterPki::load(&dir).map_err(|source| BootstrapError::Pki { phase, source })?;
    let configs = kubeconfig::all(spec, &pki).map_err(|source| BootstrapError::Kubeconfig { phase, source })?;
    kubeconfig::write_all(&ctx.cluster.run_dir().kubeconfigs(), &configs)
        .map_err(|source| BootstrapError::Kubeconfig { phase, source })?;
    let work = spec.nodes.iter().map(|n| (n.name.clone(), kubeconfig_files(&configs, ctx.layout(), n))).collect();
    ctx.per_node(work, |s, files: Vec<Put>| async move { install(phase, &s, &files).await }).await
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::spec::ClusterSpec;

    fn paths(files: &[Put]) -> Vec<String> {
        files.iter().map(|f| f.remote.display().to_string()).collect()
    }

    #[test]
    fn roots_kubeconfig_on_the_control_plane_is_admin_at_the_control_plane_address() {
        let spec = ClusterSpec::default();
        let pki = ClusterPki::generate(&spec).unwrap();
        let configs = kubeconfig::all(&spec, &pki).unwrap();
        let files = kubeconfig_files(&configs, &Layout::default(), spec.control_plane());
        let root = files.iter().find(|f| f.remote == Path::new("/root/.kube/config")).expect("root's kubeconfig");
        let crate::bootstrap::node::Source::Bytes(yaml) = &root.source else { panic!("inline") };
        let yaml = String::from_utf8_lossy(yaml);
        assert!(yaml.contains("server: https://10.0.0.4:6443"), "{yaml}");
        assert!(yaml.contains("name: \"admin\""), "{yaml}");
        assert!(files.iter().all(|f| f.mode == 0o600));
        let worker = kubeconfig_files(&configs, &Layout::default(), spec.node("worker-node-2").unwrap());
        assert_eq!(paths(&worker), ["/etc/kubernetes/kubelet-worker-node-2.kubeconfig"]);
    }
}
