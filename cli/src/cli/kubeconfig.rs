//! `kthw kubeconfig NAME`: a kubeconfig for the host's kubectl, through an SSH forward to the apiserver that
//! a detached `kthw forward-apiserver NAME` serves for as long as the cluster is up.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use kthw::access;
use kthw::cluster::Cluster;
use kthw::paths::Paths;
use kthw::phase::Phase;
use tokio::signal::unix::{signal, SignalKind};

#[derive(Debug, Args)]
pub struct KubeconfigArgs {
    /// The cluster.
    name: String,
}

pub fn kubeconfig(args: KubeconfigArgs) -> anyhow::Result<ExitCode> {
    let paths = Paths::from_env();
    let cluster = Cluster::open(&args.name, &paths)?;
    let exe = std::env::current_exe().context("cannot find the kthw binary to start the forwarder")?;
    let record = access::start_forwarder(&cluster, &exe)?;
    let path = access::write_host_kubeconfig(&cluster, record.port)?;
    if !cluster.run_dir().phase_done(Phase::ControlPlane) {
        eprintln!(
            "note: the control-plane phase has not completed on {}: nothing answers on the apiserver port yet",
            args.name
        );
    }
    println!("{}", path.display());
    Ok(ExitCode::SUCCESS)
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
        anyhow::Ok(access::serve(&cluster, stop).await?)
    })?;
    tracing::info!(cluster = %args.name, "forwarder ends: {why}");
    Ok(ExitCode::SUCCESS)
}
