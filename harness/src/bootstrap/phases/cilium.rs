//! The `cilium` phase, the seed's step 8, as the seed did it: the pinned cilium CLI installed on
//! control-plane-1 and run there as root (whose kubeconfig is admin-internal), `cilium install` with the
//! values the spec derives, then `cilium status --wait`. Around it, what the seed lacked: the images put on
//! every worker first (`images.preload`), and a wait of the harness's own through the Kubernetes API that
//! says what each pod is doing, so that a timeout names its cause (still pulling, crash-looping, ...) instead
//! of only expiring. Both outputs are kept in the run directory.

use std::path::PathBuf;
use std::time::Duration;

use crate::access;
use crate::bootstrap::cilium_install::{install_argv_from, status_argv, validate_values_with, CILIUM_CLI};
use crate::bootstrap::context::Ctx;
use crate::bootstrap::node::{install, Put};
use crate::bootstrap::preload::preload;
use crate::bootstrap::rollout::{self, Workload};
use crate::bootstrap::BootstrapError;
use crate::diagnosis;
use crate::ssh::{shell_quote, Output};

/// The images `cilium install` of the pinned chart deploys (the artifact manifest's names).
pub const IMAGES: [&str; 3] = ["cilium", "cilium-operator-generic", "cilium-envoy"];

/// What the chart deploys into kube-system: the agent and Envoy on every node, the operator once.
pub fn workloads() -> Vec<Workload> {
    let ns = || "kube-system".to_string();
    vec![
        Workload::DaemonSet { namespace: ns(), name: "cilium".into() },
        Workload::DaemonSet { namespace: ns(), name: "cilium-envoy".into() },
        Workload::Deployment { namespace: ns(), name: "cilium-operator".into() },
    ]
}

/// Where the locked chart archive (the `cilium-chart` artifact, which only a lock of versions other than a
/// preset's holds) goes on control-plane-1, and where it is unpacked: `cilium install --chart-directory` takes
/// the chart's directory, as Helm packages it (`cilium/Chart.yaml`, `cilium/values.yaml`, ...).
pub const CHART_ARCHIVE: &str = "/var/lib/kthw/cilium-chart.tgz";
pub const CHART_PARENT: &str = "/var/lib/kthw/cilium-chart";

/// Written for KVM: `cilium install` renders the chart and creates its objects in seconds; scaled under TCG.
const INSTALL_DEADLINE: Duration = Duration::from_secs(120);
/// `cilium status --wait` waits `cilium.status_wait` itself; this is the slack around it.
const STATUS_SLACK: Duration = Duration::from_secs(60);

/// The run directory's files of this phase (`phases/cilium/`).
pub const INSTALL_OUTPUT: &str = "install.txt";
pub const ROLLOUT_OUTPUT: &str = "rollout.txt";
pub const STATUS_OUTPUT: &str = "status.txt";

pub(super) async fn run(ctx: &Ctx<'_>) -> Result<Vec<String>, BootstrapError> {
    let (phase, spec, layout, b) = (ctx.phase, ctx.spec(), ctx.layout(), ctx.b);
    validate_values_with(spec, &b.chart_keys).map_err(|e| BootstrapError::Spec { phase, detail: e.to_string() })?;
    let cp = &spec.control_plane().name;
    let s = ctx.session(cp).await?;

    let cli = b.binaries(phase, "cilium-cli", &["cilium".to_string()])?.remove(0);
    let mut changed: Vec<String> = install(phase, &s, &[Put::file(CILIUM_CLI, cli, 0o755)])
        .await?
        .into_iter()
        .map(|p| format!("{cp}:{}", p.display()))
        .collect();
    if spec.images.preload {
        changed.extend(preload(ctx, &IMAGES).await?);
    }
    let chart_dir = match b.manifest.get("cilium-chart") {
        None => None,
        Some(_) => {
            let (_, archive) = b.artifact(phase, "cilium-chart")?;
            changed.extend(
                install(phase, &s, &[Put::file(CHART_ARCHIVE, archive, 0o644)])
                    .await?
                    .into_iter()
                    .map(|p| format!("{cp}:{}", p.display())),
            );
            let unpack = format!(
                "rm -rf {CHART_PARENT} && mkdir -p {CHART_PARENT} && tar -xzf {CHART_ARCHIVE} -C {CHART_PARENT}"
            );
            let out = ctx.ssh(s.exec(&unpack, ctx.accel().scale(Duration::from_secs(30))).await)?;
            if !out.success() {
                return Err(BootstrapError::Node {
                    phase,
                    detail: format!("cannot unpack the locked Cilium chart on {cp} ({unpack}): {}", out.stderr_lossy()),
                });
            }
            Some(PathBuf::from(CHART_PARENT).join("cilium"))
        }
    };

    // `cilium install` refuses a release that exists: a second run leaves the installed one alone.
    let kubectl = layout.kubectl();
    let installed = ctx.ssh(
        s.exec(
            &format!("{kubectl} -n kube-system get daemonset cilium -o name"),
            ctx.accel().scale(Duration::from_secs(30)),
        )
        .await,
    )?;
    if !installed.success() {
        let argv = install_argv_from(spec, &layout.root_kubeconfig, chart_dir.as_deref());
        let out = ctx.ssh(s.exec(&join(&argv), ctx.accel().scale(INSTALL_DEADLINE)).await)?;
        let kept = keep(ctx, INSTALL_OUTPUT, &argv, &out)?;
        if !out.success() {
            return Err(diagnosed(ctx, "cilium install", kept, &out));
        }
    }

    // The harness's own wait, bounded as the seed's `status --wait` was.
    let api = access::client(ctx.cluster).await.map_err(|e| BootstrapError::Access { phase, source: Box::new(e) })?;
    let waited = rollout::wait(&api.client, &workloads(), spec.cilium.status_wait, phase, ctx.events).await;
    let summary = match &waited {
        Ok(()) => "every pod of cilium, cilium-envoy and cilium-operator ready\n".to_string(),
        Err(stalled) => format!("{stalled}\n"),
    };
    ctx.keep_output(ROLLOUT_OUTPUT, &summary)?;
    waited.map_err(|stalled| BootstrapError::Rollout { phase, source: Box::new(stalled) })?;

    let argv = status_argv(spec, &layout.root_kubeconfig);
    let out = ctx.ssh(s.exec(&join(&argv), spec.cilium.status_wait + ctx.accel().scale(STATUS_SLACK)).await)?;
    let kept = keep(ctx, STATUS_OUTPUT, &argv, &out)?;
    if !out.success() {
        return Err(diagnosed(ctx, "cilium status --wait", kept, &out));
    }
    Ok(changed)
}

fn join(argv: &[String]) -> String {
    argv.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ")
}

/// Keeps a command's output in the run directory; returns where.
fn keep(ctx: &Ctx<'_>, file: &str, argv: &[String], out: &Output) -> Result<PathBuf, BootstrapError> {
    let text = format!("$ {}\n{}{}\n({})\n", join(argv), out.stdout_lossy(), out.stderr_lossy(), out.describe_status());
    ctx.keep_output(file, &text)
}

/// A failed command, its cause named by the shared classifier.
fn diagnosed(ctx: &Ctx<'_>, what: &str, kept: PathBuf, out: &Output) -> BootstrapError {
    let text = format!("{}{}", out.stdout_lossy(), out.stderr_lossy());
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(20)..].join("\n");
    BootstrapError::Diagnosed {
        phase: ctx.phase,
        what: what.to_string(),
        explained: diagnosis::explain(&diagnosis::diagnose(&text)),
        kept,
        tail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifacts::{Kind, Manifest};

    #[test]
    fn every_image_the_phase_preloads_is_a_pinned_image_of_the_pinned_cilium() {
        for set in crate::spec::VersionSet::ALL {
            let m = Manifest::pinned().for_set(set);
            for name in IMAGES {
                let a = m.get(name).unwrap_or_else(|| panic!("{name} is pinned"));
                assert_eq!(a.kind, Kind::Image);
                assert_eq!(a.component, "cilium", "{name}");
                assert!(a.phases.contains(&crate::phase::Phase::Cilium), "{name}");
            }
            let pinned: Vec<&str> = m
                .artifacts
                .iter()
                .filter(|a| a.kind == Kind::Image && a.component == "cilium")
                .map(|a| a.name.as_str())
                .collect();
            assert_eq!(pinned, IMAGES, "every pinned Cilium image of {set} is preloaded");
        }
    }

    #[test]
    fn a_command_line_is_quoted_word_by_word() {
        let argv = ["cilium", "install", "--set", "a=b c"].map(String::from);
        assert_eq!(join(&argv), "cilium install --set 'a=b c'");
    }
}
