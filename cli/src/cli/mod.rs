//! Argument parsing and dispatch; each command group lives in its own file.

mod artifacts;
mod bundle;
mod cluster;
mod doctor;
mod fault;
mod golden;
mod image;
mod kubeconfig;
mod load;
mod render;
mod repro;
mod repro_sysdump;
mod scenario;
mod spec;
mod versions;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "kthw",
    version,
    long_version = kthw::VERSION,
    about = "Stand up and test a Kubernetes-the-hard-way cluster with Cilium on libvirt/QEMU"
)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show or check a cluster spec.
    #[command(subcommand)]
    Spec(spec::SpecCommand),
    /// Check this host's prerequisites and say how to fix what is missing.
    Doctor,
    /// Bring a cluster up: boot every node, then run each phase (`--until PHASE` stops after one).
    Up(cluster::UpArgs),
    /// List the clusters in the state directory.
    List,
    /// Remove a cluster: its domains, network and run directory.
    Down(cluster::DownArgs),
    /// Remove what killed runs left behind (never a live or kept cluster), and failure bundles past their
    /// time to live or over the size budget.
    Gc(cluster::GcArgs),
    /// A shell on a node, or `-- CMD` run there with its exit status.
    Ssh(cluster::SshArgs),
    /// Print the path of a kubeconfig for this host's kubectl, through an SSH forward kept while the cluster is up.
    Kubeconfig(kubeconfig::KubeconfigArgs),
    /// Serve the forward `kthw kubeconfig` needs (started by it, detached).
    #[command(hide = true)]
    ForwardApiserver(kubeconfig::ForwardArgs),
    /// Put images (OCI archives, or references to pull) into every node's containerd, digests preserved.
    Load(load::LoadArgs),
    /// List, fetch and verify the pinned upstream artifacts.
    #[command(subcommand)]
    Artifacts(artifacts::ArtifactsCommand),
    /// Collect everything that explains a cluster's state (spec, logs, journals, kubectl dumps) into one
    /// directory and .tar.gz under the state directory's bundles/; `kthw bundle --list` lists them.
    Bundle(bundle::BundleArgs),
    /// Stand the cluster of a failure bundle (or a spec, or a cilium sysdump) up again through the phase it
    /// failed in, and keep it.
    Repro(repro::ReproArgs),
    /// Make a node misbehave: link-down, link-up, delay MS, loss PERCENT, pause, resume, reset, stop-unit UNIT,
    /// kill-unit UNIT.
    Fault(fault::FaultArgs),
    /// Build, list and prune node images.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// List the scenarios, or run one on a fresh or kept cluster.
    #[command(subcommand)]
    Scenario(scenario::ScenarioCommand),
    /// List and prune golden snapshots (saved clusters that `up` restores instead of booting).
    #[command(subcommand)]
    Golden(golden::GoldenCommand),
    /// Lock a spec's versions from the publishers' own sums, show them, and show the supported ranges.
    #[command(subcommand)]
    Versions(versions::VersionsCommand),
}

impl Cli {
    /// A command whose work is a listing, short and over no long-held libvirt or SSH session: a reader that
    /// stops early (`| head`) may end it.
    pub fn is_a_listing(&self) -> bool {
        match &self.command {
            Command::Spec(_) | Command::Doctor | Command::List | Command::Gc(_) | Command::Golden(_) => true,
            Command::Versions(c) => !matches!(c, versions::VersionsCommand::Lock { .. }),
            Command::Artifacts(c) => matches!(c, artifacts::ArtifactsCommand::List { .. }),
            Command::Image(c) => matches!(c, image::ImageCommand::List | image::ImageCommand::Prune),
            Command::Scenario(c) => matches!(c, scenario::ScenarioCommand::List),
            Command::Bundle(a) => a.is_a_listing(),
            _ => false,
        }
    }
}

pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Colour codes only for a person at a terminal: logs piped into files and CI output stay readable.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // The same lines are kept in memory for a failure bundle's harness.log.
    let bundle_log = tracing_subscriber::fmt::layer()
        .with_writer(kthw::bundle::harness_log::capture())
        .with_target(false)
        .with_ansi(false);
    let stderr = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(false).with_ansi(ansi);
    tracing_subscriber::registry().with(filter).with(stderr).with(bundle_log).init();
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Spec(c) => spec::run(c),
        Command::Doctor => doctor::run(),
        Command::Up(a) => cluster::up(a),
        Command::List => cluster::list(),
        Command::Down(a) => cluster::down(a),
        Command::Gc(a) => cluster::gc(a),
        Command::Ssh(a) => cluster::ssh(a),
        Command::Kubeconfig(a) => kubeconfig::kubeconfig(a),
        Command::ForwardApiserver(a) => kubeconfig::forward_apiserver(a),
        Command::Load(a) => load::load(a),
        Command::Artifacts(c) => artifacts::run(c),
        Command::Image(c) => image::run(c),
        Command::Scenario(c) => scenario::run(c),
        Command::Golden(c) => golden::run(c),
        Command::Fault(a) => fault::fault(a),
        Command::Bundle(a) => bundle::bundle(a),
        Command::Repro(a) => repro::repro(a),
        Command::Versions(c) => versions::run(c),
    }
}
