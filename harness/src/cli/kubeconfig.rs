//! `kthw kubeconfig NAME`: a kubeconfig for the host's kubectl, through an SSH forward to the apiserver that
//! a detached `kthw forward-apiserver NAME` serves for as long as the cluster is up.

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use kthw::bootstrap::forward::{self, ForwarderRecord};
use kthw::bootstrap::{Phase, TIMINGS_FILE};
use kthw::cluster::{console_tail, Cluster};
use kthw::paths::Paths;
use tokio::signal::unix::{signal, SignalKind};

#[derive(Debug, Args)]
pub struct KubeconfigArgs {
    /// The cluster.
    name: String,
}

/// Written for KVM: the forwarder only opens one SSH connection to a node that is up; scaled under TCG.
const FORWARDER_START: Duration = Duration::from_secs(15);

pub fn kubeconfig(args: KubeconfigArgs) -> anyhow::Result<ExitCode> {
    let paths = Paths::from_env();
    let cluster = Cluster::open(&args.name, &paths)?;
    let record = match forward::live_forwarder(cluster.run_dir(), cluster.id()) {
        Some(r) => r,
        None => spawn_forwarder(&cluster)?,
    };
    let path = forward::write_host_kubeconfig(&cluster, record.port)?;
    if !phase_done(&cluster, Phase::ControlPlane) {
        eprintln!(
            "note: the control-plane phase has not completed on {}: nothing answers on the apiserver port yet",
            args.name
        );
    }
    println!("{}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// Whether the run directory's phase record has `phase` succeeding.
fn phase_done(cluster: &Cluster, phase: Phase) -> bool {
    let timings = std::fs::read_to_string(cluster.run_dir().join(TIMINGS_FILE)).unwrap_or_default();
    timings.lines().any(|l| l.split('\t').next() == Some(phase.name()) && l.split('\t').nth(2) == Some("ok"))
}

/// Starts `kthw forward-apiserver NAME` detached (its own process group, so a terminal's ^C does not reach it;
/// no terminal for stdio) and waits until it records itself.
fn spawn_forwarder(cluster: &Cluster) -> anyhow::Result<ForwarderRecord> {
    let run_dir = cluster.run_dir();
    let log_path = run_dir.join(forward::LOG);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let exe = std::env::current_exe().context("cannot find the kthw binary to start the forwarder")?;
    let mut child = Command::new(exe)
        .args(["forward-apiserver", cluster.name()])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("cannot start the forwarder")?;
    let deadline = cluster.accel().scale(FORWARDER_START);
    let start = Instant::now();
    loop {
        if let Some(r) = forward::read_record(run_dir).filter(|r| r.owner.pid == child.id()) {
            return Ok(r);
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "the forwarder exited with {status} before forwarding; its log ({}):\n{}",
                log_path.display(),
                console_tail(&log_path, 20)
            );
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            bail!(
                "the forwarder did not start forwarding within {deadline:?}; its log ({}):\n{}",
                log_path.display(),
                console_tail(&log_path, 20)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[derive(Debug, Args)]
pub struct ForwardArgs {
    /// The cluster.
    name: String,
}

/// The forwarder itself (hidden; `kthw kubeconfig` starts it): serves until the cluster is gone.
pub fn forward_apiserver(args: ForwardArgs) -> anyhow::Result<ExitCode> {
    let paths = Paths::from_env();
    let cluster = Cluster::open(&args.name, &paths)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let why = runtime.block_on(async {
        // A terminal hanging up is no reason to stop: the forward outlives the command that started it.
        let mut hup = signal(SignalKind::hangup())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let stop = async move {
            loop {
                tokio::select! {
                    _ = hup.recv() => continue,
                    _ = term.recv() => break,
                    _ = int.recv() => break,
                }
            }
        };
        anyhow::Ok(forward::serve(&cluster, stop).await?)
    })?;
    tracing::info!(cluster = %args.name, "forwarder ends: {why}");
    Ok(ExitCode::SUCCESS)
}
