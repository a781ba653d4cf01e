//! The `workers` phase: on every worker, containerd with the rendered config (systemd cgroups, the pinned
//! sandbox image imported from the artifact directory, since guests have no egress) and the kubelet from the
//! pinned node tarball. Done when every kubelet runs and its worker is registered as a node (NotReady until a
//! CNI arrives, as in the seed). No kube-proxy anywhere.

use std::path::PathBuf;
use std::time::Duration;

use crate::accel::Accel;
use crate::bootstrap::context::Ctx;
use crate::bootstrap::node::{install, ssh, start, wait, wait_on, Put, Wait};
use crate::bootstrap::node_files::worker_files;
use crate::bootstrap::{BootstrapError, Layout};
use crate::events::Events;
use crate::oci;
use crate::phase::Phase;
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
    events: Events,
}

pub(super) async fn run(ctx: &Ctx<'_>) -> Result<Vec<String>, BootstrapError> {
    let (phase, spec, layout, b) = (ctx.phase, ctx.spec(), ctx.layout(), ctx.b);
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
                accel: ctx.accel(),
                events: ctx.events.clone(),
            };
            (w.name.clone(), work)
        })
        .collect();
    let changed = ctx.per_node(work, |s, w| async move { worker(&s, w).await }).await?;

    let cp = ctx.session(&spec.control_plane().name).await?;
    let kubectl = layout.kubectl();
    for w in spec.workers() {
        let registered = Wait {
            what: format!("{} to be registered as a node", w.name),
            check: format!("{kubectl} get node {} -o name", shell_quote(&w.name)),
            unit: Some("kubelet".into()),
            deadline: ctx.accel().scale(REGISTERED_DEADLINE),
        };
        wait_on(phase, &cp, &ctx.session(&w.name).await?, &registered, ctx.events).await?;
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
        check: format!("{} version", layout.ctr()),
        unit: Some("containerd".into()),
        deadline: w.accel.scale(CONTAINERD_DEADLINE),
    };
    wait(phase, s, &containerd, &w.events).await?;
    oci::import(s, &layout.ctr(), &w.archive, &w.reference)
        .await
        .map_err(|source| BootstrapError::Oci { phase, source: Box::new(source) })?;

    let kubelet_files = [layout.bin_dir.join("kubelet"), layout.kubelet_config(), layout.unit("kubelet")];
    start(phase, s, &["kubelet"], kubelet_files.iter().any(|f| changed.contains(f))).await?;
    let kubelet = Wait {
        what: "the kubelet to run".into(),
        check: "systemctl is-active kubelet".into(),
        unit: Some("kubelet".into()),
        deadline: w.accel.scale(KUBELET_DEADLINE),
    };
    wait(phase, s, &kubelet, &w.events).await?;
    Ok(changed)
}
