//! The `workers` phase: first every worker checked against what its kubelet and Cilium agent need at start
//! (`nodecheck`: a worker that lacks one fails the phase before anything starts), then on every worker, containerd with the rendered config (systemd cgroups, the pinned
//! sandbox image imported from the artifact directory, since guests have no egress) and the kubelet from the
//! pinned node tarball. Done when every kubelet runs and its worker is registered as a node (NotReady until a
//! CNI arrives, as in the seed). No kube-proxy anywhere.

use std::path::PathBuf;
use std::time::Duration;

use crate::accel::Accel;
use crate::bootstrap::configs::CNI_BIN_DIR;
use crate::bootstrap::context::Ctx;
use crate::bootstrap::node::{install, ssh, start, wait, wait_on, Put, Wait};
use crate::bootstrap::node_files::worker_files;
use crate::bootstrap::nodecheck::check_workers;
use crate::bootstrap::preload::remote_archive;
use crate::bootstrap::units::containerd_unit;
use crate::bootstrap::{BootstrapError, Layout};
use crate::events::Events;
use crate::oci::{self, ImageRef};
use crate::phase::Phase;
use crate::spec::Origin;
use crate::ssh::{shell_quote, Session};

const CONTAINERD_DEADLINE: Duration = Duration::from_secs(30);
const KUBELET_DEADLINE: Duration = Duration::from_secs(30);
const REGISTERED_DEADLINE: Duration = Duration::from_secs(90);

/// What one worker receives.
struct WorkerWork {
    files: Vec<Put>,
    layout: Layout,
    archive: PathBuf,
    image: ImageRef,
    /// The files whose change restarts containerd.
    containerd_files: Vec<PathBuf>,
    accel: Accel,
    events: Events,
}

/// Where the upstream runc goes (the hard way's place; /usr/local/sbin precedes Debian's /usr/sbin/runc on
/// PATH). The CNI plugins go where the rendered containerd config looks ([`CNI_BIN_DIR`]).
const RUNC: &str = "/usr/local/sbin/runc";

/// The upstream container runtime (`containerd_from = "upstream"`): containerd 1.7 or 2.x with its unit (which
/// shadows the Debian package's under the same name, as etcd's does), runc, and the CNI `loopback` plugin
/// containerd's CRI sets up every sandbox's loopback with (Cilium brings its own CNI plugin). Empty for
/// `"debian"`: the node image's containerd 1.6 and runc stay.
fn container_runtime(ctx: &Ctx<'_>) -> Result<Vec<Put>, BootstrapError> {
    let (phase, layout, b) = (ctx.phase, ctx.layout(), ctx.b);
    if ctx.spec().containerd_from == Origin::Debian {
        return Ok(Vec::new());
    }
    // Release tarball layouts: containerd's `bin/<binary>`, the CNI plugins' `./<plugin>`.
    let members = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let containerd =
        b.binaries(phase, "containerd", &members(&["bin/containerd", "bin/containerd-shim-runc-v2", "bin/ctr"]))?;
    let cni = b.binaries(phase, "cni-plugins", &members(&["./loopback"]))?;
    let (_, runc) = b.artifact(phase, "runc")?;
    let name = |p: &PathBuf| p.file_name().expect("a binary").to_os_string();
    let mut puts: Vec<Put> = containerd.iter().map(|p| Put::file(layout.bin_dir.join(name(p)), p, 0o755)).collect();
    puts.extend(cni.iter().map(|p| Put::file(PathBuf::from(CNI_BIN_DIR).join(name(p)), p, 0o755)));
    puts.push(Put::file(RUNC, runc, 0o755));
    let version = b.artifact(phase, "containerd")?.0.upstream_version.clone();
    puts.push(Put::bytes(layout.unit("containerd"), containerd_unit(layout, ctx.accel(), &version), 0o644));
    Ok(puts)
}

pub(super) async fn run(ctx: &Ctx<'_>) -> Result<Vec<String>, BootstrapError> {
    // What the kubelet and the Cilium agent check when they start, before anything is installed or started.
    check_workers(ctx).await?;
    let (phase, spec, layout, b) = (ctx.phase, ctx.spec(), ctx.layout(), ctx.b);
    let kubelet = b.binaries(phase, "kubernetes-node", &["kubernetes/node/bin/kubelet".to_string()])?.remove(0);
    let (pause, pause_archive) = b.artifact(phase, "pause")?;
    let reference = pause.locator().to_string();
    let image = ImageRef {
        reference: reference.clone(),
        digest: pause.sum().map_err(|e| BootstrapError::Spec { phase, detail: e.to_string() })?.to_string(),
    };
    let archive = remote_archive(pause);
    let runtime = container_runtime(ctx)?;
    let mut containerd_files: Vec<PathBuf> = runtime.iter().map(|p| p.remote.clone()).collect();
    containerd_files.push(layout.containerd_config.clone());

    let work = spec
        .workers()
        .map(|w| {
            let mut files = vec![
                Put::file(layout.bin_dir.join("kubelet"), &kubelet, 0o755),
                Put::file(&archive, &pause_archive, 0o644),
            ];
            files.extend(runtime.iter().cloned());
            files.extend(worker_files(spec, &w.name, layout, &reference).into_iter().map(Put::from));
            let work = WorkerWork {
                files,
                layout: layout.clone(),
                archive: archive.clone(),
                image: image.clone(),
                containerd_files: containerd_files.clone(),
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

    // containerd restarts when its config, its unit or a runtime binary changed, and only then.
    start(phase, s, &["containerd"], changed.iter().any(|p| w.containerd_files.contains(p))).await?;
    let containerd = Wait {
        what: "containerd to answer on its socket".into(),
        check: format!("{} version", layout.ctr()),
        unit: Some("containerd".into()),
        deadline: w.accel.scale(CONTAINERD_DEADLINE),
    };
    wait(phase, s, &containerd, &w.events).await?;
    oci::import(s, &layout.ctr(), &w.archive, std::slice::from_ref(&w.image))
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
