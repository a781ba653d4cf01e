//! The `workers` phase: on every worker, containerd with the rendered config (systemd cgroups, the pinned
//! sandbox image imported from the artifact directory, since guests have no egress) and the kubelet from the
//! pinned node tarball. Done when every kubelet runs and its worker is registered as a node (NotReady until a
//! CNI arrives, as in the seed). No kube-proxy anywhere.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::control_plane::kubectl;
use super::node::{install, ssh, start, wait, wait_on, Put, Wait};
use super::run::{per_node, session};
use super::{worker_files, Bootstrap, BootstrapError, Layout, Phase};
use crate::accel::Accel;
use crate::cluster::Cluster;
use crate::ssh::{shell_quote, Session};

const CONTAINERD_DEADLINE: Duration = Duration::from_secs(30);
const KUBELET_DEADLINE: Duration = Duration::from_secs(30);
const REGISTERED_DEADLINE: Duration = Duration::from_secs(90);

/// Where the sandbox image's archive is kept on a worker (kept, so that a second run sees it unchanged).
const IMAGE_DIR: &str = "/var/lib/kthw/images";

/// What one worker receives.
struct WorkerWork {
    files: Vec<Put>,
    layout: Layout,
    archive: PathBuf,
    reference: String,
    accel: Accel,
}

pub(super) async fn run(b: &Bootstrap, cluster: &Cluster) -> Result<Vec<String>, BootstrapError> {
    let phase = Phase::Workers;
    let spec = cluster.spec();
    let layout = &b.layout;
    let kubelet = b.binaries(phase, "kubernetes-node", &["kubernetes/node/bin/kubelet".to_string()])?.remove(0);
    let (pause, pause_archive) = b.artifact(phase, "pause")?;
    let reference = pause.locator().to_string();
    let archive = PathBuf::from(IMAGE_DIR).join(format!("{}-{}.oci.tar", pause.name, pause.upstream_version));

    let work = spec
        .workers()
        .map(|w| {
            let mut files = vec![
                Put::file(layout.bin_dir.join("kubelet"), &kubelet, 0o755),
                Put::file(&archive, &pause_archive, 0o644),
            ];
            files.extend(worker_files(spec, &w.name, layout, &reference).into_iter().map(Put::from));
            let work = WorkerWork {
                files,
                layout: layout.clone(),
                archive: archive.clone(),
                reference: reference.clone(),
                accel: cluster.accel(),
            };
            (w.name.clone(), work)
        })
        .collect();
    let changed = per_node(cluster, phase, work, |s, w| async move { worker(&s, w).await }).await?;

    let cp = session(cluster, phase, &spec.control_plane().name).await?;
    let kubectl = kubectl(layout);
    for w in spec.workers() {
        let registered = Wait {
            what: format!("{} to be registered as a node", w.name),
            check: format!("{kubectl} get node {} -o name", shell_quote(&w.name)),
            unit: Some("kubelet".into()),
            deadline: cluster.accel().scale(REGISTERED_DEADLINE),
        };
        wait_on(phase, &cp, &session(cluster, phase, &w.name).await?, &registered).await?;
    }
    Ok(changed)
}

async fn worker(s: &Session, w: WorkerWork) -> Result<Vec<PathBuf>, BootstrapError> {
    let phase = Phase::Workers;
    let layout = &w.layout;
    let changed = install(phase, s, &w.files).await?;
    let kubelet_dir = shell_quote(&layout.kubelet_dir.display().to_string());
    ssh(phase, s.succeed(&format!("install -d {kubelet_dir}")).await)?;

    start(phase, s, &["containerd"], changed.contains(&layout.containerd_config)).await?;
    let containerd = Wait {
        what: "containerd to answer on its socket".into(),
        check: format!("{} version", ctr(layout)),
        unit: Some("containerd".into()),
        deadline: w.accel.scale(CONTAINERD_DEADLINE),
    };
    wait(phase, s, &containerd).await?;
    import_image(s, layout, &w.archive, &w.reference).await?;

    let kubelet_files = [layout.bin_dir.join("kubelet"), layout.kubelet_config(), layout.unit("kubelet")];
    start(phase, s, &["kubelet"], kubelet_files.iter().any(|f| changed.contains(f))).await?;
    let kubelet = Wait {
        what: "the kubelet to run".into(),
        check: "systemctl is-active kubelet".into(),
        unit: Some("kubelet".into()),
        deadline: w.accel.scale(KUBELET_DEADLINE),
    };
    wait(phase, s, &kubelet).await?;
    Ok(changed)
}

fn ctr(layout: &Layout) -> String {
    format!("ctr --address {}", shell_quote(&layout.containerd_socket.display().to_string()))
}

/// Imports the OCI archive at `archive` on the node into containerd's Kubernetes namespace as `reference`
/// (the name the archive's index gives it), unless an image of that name is there already. Guests have no
/// egress: this is how the sandbox image gets to a worker.
pub async fn import_image(s: &Session, layout: &Layout, archive: &Path, reference: &str) -> Result<(), BootstrapError> {
    let phase = Phase::Workers;
    let ctr = ctr(layout);
    let listed = |out: &str| out.lines().any(|l| l.trim() == reference);
    let list = format!("{ctr} -n k8s.io images ls -q");
    if listed(&ssh(phase, s.succeed(&list).await)?.stdout_lossy()) {
        return Ok(());
    }
    // Names in the archive that lack a registry part get this one; full names must begin with it.
    let base = reference.rsplit_once(':').map_or(reference, |(repo, _)| repo);
    let import = format!(
        "{ctr} -n k8s.io images import --base-name {} --platform linux/amd64 {}",
        shell_quote(base),
        shell_quote(&archive.display().to_string())
    );
    ssh(phase, s.succeed(&import).await)?;
    let after = ssh(phase, s.succeed(&list).await)?.stdout_lossy();
    if !listed(&after) {
        return Err(BootstrapError::Node {
            phase,
            detail: format!(
                "{}: importing {} did not make {reference}; containerd lists:\n{after}",
                s.node(),
                archive.display()
            ),
        });
    }
    Ok(())
}
