//! The `control-plane` phase: kube-apiserver, kube-controller-manager and kube-scheduler from the pinned
//! server tarball, with kubectl for root (whose kubeconfig is admin-internal). Done when the apiserver's
//! /healthz answers the admin identity, the apiserver may reach kubelets (the hard way's RBAC for
//! `kubectl exec`/`logs`, which `cilium status` relies on), and both the controller manager and the scheduler
//! hold their leader leases: proof that each runs and is authorised.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use crate::bootstrap::context::Ctx;
use crate::bootstrap::node::{install, start, wait, Put, Wait};
use crate::bootstrap::node_files::control_plane_files;
use crate::bootstrap::{BootstrapError, Layout};
use crate::pki;
use crate::spec::ClusterSpec;
use crate::ssh::shell_quote;

const HEALTHZ_DEADLINE: Duration = Duration::from_secs(60);
const LEASE_DEADLINE: Duration = Duration::from_secs(60);

const BINARIES: [&str; 4] = ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"];
const UNITS: [&str; 3] = ["kube-apiserver", "kube-controller-manager", "kube-scheduler"];

/// The ClusterRole that lets the apiserver use the kubelet API, bound to the apiserver's client identity
/// (its certificate's CN), as a kubectl-applicable list.
pub fn apiserver_to_kubelet_rbac(spec: &ClusterSpec) -> String {
    let user = pki::profiles(spec)
        .into_iter()
        .find(|p| p.stem == "kube-apiserver")
        .expect("the PKI has an apiserver certificate")
        .common_name;
    let role = "system:kube-apiserver-to-kubelet";
    let v = json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {
                    "name": role,
                    "annotations": { "rbac.authorization.kubernetes.io/autoupdate": "true" },
                    "labels": { "kubernetes.io/bootstrapping": "rbac-defaults" },
                },
                "rules": [{
                    "apiGroups": [""],
                    "resources": ["nodes/proxy", "nodes/stats", "nodes/log", "nodes/spec", "nodes/metrics"],
                    "verbs": ["*"],
                }],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": { "name": "system:kube-apiserver" },
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role },
                "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user }],
            },
        ],
    });
    serde_json::to_string_pretty(&v).expect("a JSON literal serializes") + "\n"
}

fn rbac_path(layout: &Layout) -> PathBuf {
    layout.config_dir.join("kube-apiserver-to-kubelet.json")
}

/// Each unit restarts when its binary, unit file or configuration changed, and only then.
fn restarts(changed: &[PathBuf], files: &[(&str, Vec<PathBuf>)]) -> Vec<String> {
    files.iter().filter(|(_, paths)| paths.iter().any(|p| changed.contains(p))).map(|(u, _)| u.to_string()).collect()
}

pub(super) async fn run(ctx: &Ctx<'_>) -> Result<Vec<String>, BootstrapError> {
    let (phase, spec, layout) = (ctx.phase, ctx.spec(), ctx.layout());
    let cp = &spec.control_plane().name;
    let members: Vec<String> = BINARIES.iter().map(|n| format!("kubernetes/server/bin/{n}")).collect();
    let bins = ctx.b.binaries(phase, "kubernetes-server", &members)?;
    let s = ctx.session(cp).await?;

    let bin = |name: &str| layout.bin_dir.join(name);
    let mut files: Vec<Put> =
        bins.iter().map(|p| Put::file(bin(&p.file_name().expect("a binary").to_string_lossy()), p, 0o755)).collect();
    files.extend(control_plane_files(spec, layout, ctx.accel()).into_iter().map(Put::from));
    files.push(Put::bytes(rbac_path(layout), apiserver_to_kubelet_rbac(spec), 0o644));
    let changed = install(phase, &s, &files).await?;

    let per_unit: Vec<(&str, Vec<PathBuf>)> = UNITS
        .iter()
        .map(|u| {
            let mut paths = vec![bin(u), layout.unit(u)];
            if *u == "kube-scheduler" {
                paths.push(layout.kube_scheduler_config());
            }
            (*u, paths)
        })
        .collect();
    let restart = restarts(&changed, &per_unit);
    let unchanged: Vec<&str> = UNITS.iter().copied().filter(|u| !restart.iter().any(|r| r == u)).collect();
    if !restart.is_empty() {
        start(phase, &s, &restart.iter().map(String::as_str).collect::<Vec<_>>(), true).await?;
    }
    if !unchanged.is_empty() {
        start(phase, &s, &unchanged, false).await?;
    }

    let kubectl = layout.kubectl();
    let healthz = Wait {
        what: "the apiserver's /healthz to answer ok to the admin identity".into(),
        check: format!("{kubectl} get --raw /healthz"),
        unit: Some("kube-apiserver".into()),
        deadline: ctx.accel().scale(HEALTHZ_DEADLINE),
    };
    wait(phase, &s, &healthz, ctx.events).await?;
    ctx.ssh(s.succeed(&format!("{kubectl} apply -f {}", shell_quote(&rbac_path(layout).display().to_string()))).await)?;
    for unit in ["kube-controller-manager", "kube-scheduler"] {
        let lease = Wait {
            what: format!("{unit} to hold its leader lease (running, and authorised by the apiserver)"),
            check: format!("{kubectl} -n kube-system get lease {unit} -o name"),
            unit: Some(unit.into()),
            deadline: ctx.accel().scale(LEASE_DEADLINE),
        };
        wait(phase, &s, &lease, ctx.events).await?;
    }
    Ok(changed.into_iter().map(|p| format!("{cp}:{}", p.display())).collect())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn the_apiserver_to_kubelet_binding_names_the_apiservers_certificate_user() {
        let rbac: serde_json::Value =
            serde_json::from_str(&apiserver_to_kubelet_rbac(&ClusterSpec::default())).unwrap();
        let binding = &rbac["items"][1];
        assert_eq!(binding["subjects"][0]["name"], "kubernetes");
        assert_eq!(binding["roleRef"]["name"], rbac["items"][0]["metadata"]["name"]);
        let resources = rbac["items"][0]["rules"][0]["resources"].as_array().unwrap();
        assert!(resources.iter().any(|r| r == "nodes/proxy"), "exec and logs go through nodes/proxy");
    }

    #[test]
    fn only_units_whose_files_changed_restart() {
        let layout = Layout::default();
        let per_unit = vec![
            ("kube-apiserver", vec![layout.bin_dir.join("kube-apiserver"), layout.unit("kube-apiserver")]),
            ("kube-scheduler", vec![layout.unit("kube-scheduler"), layout.kube_scheduler_config()]),
        ];
        assert!(restarts(&[], &per_unit).is_empty());
        assert_eq!(restarts(&[layout.kube_scheduler_config()], &per_unit), ["kube-scheduler"]);
        assert_eq!(restarts(&[Path::new("/elsewhere").to_path_buf()], &per_unit), Vec::<String>::new());
    }
}
