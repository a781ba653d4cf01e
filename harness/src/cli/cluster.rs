//! `kthw up`, `list`, `down`, `gc` and `ssh`: clusters as a person drives them.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use kthw::bootstrap::Phase;
use kthw::cluster::{self, Cluster, UpOptions};
use kthw::image::{self, BuildOptions};
use kthw::paths::Paths;
use kthw::spec::ClusterSpec;
use kthw::virt;
use tokio::signal::unix::{signal, SignalKind};

use super::bootstrap;

#[derive(Debug, Args)]
pub struct UpArgs {
    /// The last phase to run: nodes, pki, kubeconfigs, etcd, control-plane or workers; every phase when absent.
    #[arg(long, value_name = "PHASE")]
    until: Option<Phase>,
    #[command(flatten)]
    bootstrap: bootstrap::BootstrapArgs,
    /// Cluster spec (TOML); the seed's cluster when absent.
    #[arg(long)]
    spec: Option<PathBuf>,
    /// Name of the cluster (its run directory); the spec's `name` when absent.
    #[arg(long)]
    name: Option<String>,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// The cluster to remove.
    name: String,
}

#[derive(Debug, Args)]
pub struct SshArgs {
    /// The cluster.
    name: String,
    /// The node, e.g. control-plane-1.
    node: String,
    /// Run this instead of a shell, and exit with its status.
    #[arg(last = true)]
    command: Vec<String>,
}

/// A command run by `kthw ssh NAME NODE -- CMD` may take as long as a person lets it.
const SSH_COMMAND_DEADLINE: Duration = Duration::from_secs(24 * 3600);

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("cannot start the async runtime")
}

pub fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    let paths = Paths::from_env();
    let spec = ClusterSpec::load_or_default(args.spec.as_deref())?;
    let name = args.name.unwrap_or_else(|| spec.name.clone());
    let plan = match bootstrap::preflight(&spec, &paths, args.until.unwrap_or(Phase::LAST), &args.bootstrap) {
        Ok(plan) => plan,
        Err(code) => return Ok(code),
    };
    runtime()?.block_on(async {
        let image = match image::cached(&paths)? {
            Some(i) => i,
            None => {
                eprintln!("no node image yet: building it first (`kthw image build`)");
                image::build(&paths, &BuildOptions::default()).await?
            }
        };
        let options = UpOptions { image: Some(image), ..UpOptions::default() };
        let mut cluster = tokio::select! {
            up = Cluster::up(&spec, &name, &paths, options) => up?,
            // Dropping the `up` future drops its teardown guard: what was created is removed before we exit.
            got = interrupted() => anyhow::bail!("interrupted by {got}: cluster {name} was torn down"),
        };
        cluster.keep()?;
        print_nodes(&cluster);
        let code = bootstrap::run(&cluster, &plan, interrupted()).await;
        println!("\ncluster {name} is up ({:?}); run directory {}", cluster.accel(), cluster.run_dir().display());
        println!("  kthw ssh {name} {}        a shell on a node", cluster.nodes()[0].name);
        println!("  kthw down {name}                      remove it");
        Ok(code)
    })
}

async fn interrupted() -> &'static str {
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

fn print_nodes(cluster: &Cluster) {
    println!("{:<20} {:<16} {:<17} {:>8}", "NODE", "ADDRESS", "SSH FORWARD", "BOOT");
    for n in cluster.nodes() {
        let boot = n.boot_ms.map_or("-".to_string(), |ms| format!("{:.1} s", ms as f64 / 1000.0));
        println!("{:<20} {:<16} {:<17} {:>8}", n.name, n.address, format!("127.0.0.1:{}", n.ssh_port), boot);
    }
}

pub fn list() -> anyhow::Result<ExitCode> {
    let paths = Paths::from_env();
    let clusters = cluster::list(&paths);
    if clusters.is_empty() {
        println!("no clusters under {}", paths.runs().display());
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<20} {:<9} {:>5}  {:<28} CREATED", "NAME", "ID", "NODES", "STATE");
    for c in clusters {
        match c {
            Ok(s) => {
                let state = if s.kept {
                    "kept (kthw down removes)".to_string()
                } else if s.owner.is_alive() {
                    format!("owned by pid {}", s.owner.pid)
                } else {
                    "owner gone (kthw gc removes)".to_string()
                };
                let age = virt::metadata::unix_now().saturating_sub(s.created);
                println!("{:<20} {:<9} {:>5}  {:<28} {} min ago", s.name, s.id, s.nodes.len(), state, age / 60);
            }
            Err(e) => println!("?  {e}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn down(args: DownArgs) -> anyhow::Result<ExitCode> {
    let paths = Paths::from_env();
    let cluster = Cluster::open(&args.name, &paths)?;
    let nodes = cluster.nodes().len();
    runtime()?.block_on(cluster.down())?;
    println!("cluster {} removed ({nodes} nodes, its network and run directory)", args.name);
    Ok(ExitCode::SUCCESS)
}

pub fn gc() -> anyhow::Result<ExitCode> {
    let paths = Paths::from_env();
    let reaped = runtime()?.block_on(cluster::gc(&paths, &virt::connect::uri()))?;
    for o in &reaped.objects {
        println!(
            "removed {:?} {} (cluster {} {}, owner pid {} gone)",
            o.kind, o.name, o.ownership.cluster_name, o.ownership.cluster_id, o.ownership.owner.pid
        );
    }
    for d in &reaped.run_dirs {
        println!("removed run directory {}", d.display());
    }
    println!("{} libvirt objects and {} run directories removed", reaped.objects.len(), reaped.run_dirs.len());
    Ok(ExitCode::SUCCESS)
}

pub fn ssh(args: SshArgs) -> anyhow::Result<ExitCode> {
    let paths = Paths::from_env();
    let cluster = Cluster::open(&args.name, &paths)?;
    let status = runtime()?.block_on(async {
        let session = cluster.session(&args.node).await?;
        if args.command.is_empty() {
            return anyhow::Ok(session.interactive().await?);
        }
        let out = session.exec(&args.command.join(" "), SSH_COMMAND_DEADLINE).await?;
        std::io::stdout().write_all(&out.stdout)?;
        std::io::stderr().write_all(&out.stderr)?;
        // OpenSSH's convention when the command died of a signal or no status came back.
        Ok(out.status.unwrap_or(255))
    })?;
    Ok(ExitCode::from(u8::try_from(status).unwrap_or(255)))
}
