//! `kthw up`, `list`, `down`, `gc` and `ssh`: clusters as a person drives them.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use kthw::bootstrap::{render_lacks, READY_NODES_OUTPUT, READY_PODS_OUTPUT};
use kthw::bundle::prune;
use kthw::cluster::{self, Cluster};
use kthw::events::{Event, Events};
use kthw::paths::Paths;
use kthw::phase::Phase;
use kthw::signals::interrupted;
use kthw::spec::ClusterSpec;
use kthw::ssh::Stream;
use kthw::up::{Keep, Running, Up, UpError};
use kthw::virt;
use tokio::sync::mpsc::UnboundedReceiver;

use super::render;

#[derive(Debug, Args)]
pub struct UpArgs {
    /// The last phase to run: nodes, pki, kubeconfigs, etcd, control-plane, workers, cilium, coredns or
    /// ready; every phase when absent.
    #[arg(long, value_name = "PHASE")]
    until: Option<Phase>,
    /// Run every phase whose artifacts are at hand and stop before the first that lacks one; the cluster stays
    /// up and the output says what is missing and the command that provides it.
    #[arg(long)]
    partial: bool,
    /// Use only the artifacts in DIR (air-gapped: nothing is downloaded; `kthw artifacts fetch --dir DIR`
    /// fills one where the internet is reachable).
    #[arg(long, value_name = "DIR")]
    artifacts_dir: Option<PathBuf>,
    /// Cluster spec (TOML); the seed's cluster when absent.
    #[arg(long)]
    spec: Option<PathBuf>,
    /// Name of the cluster (its run directory); the spec's `name` when absent.
    #[arg(long)]
    name: Option<String>,
    /// Boot and bootstrap even when a golden snapshot of the same state exists (one is used by default).
    #[arg(long)]
    fresh: bool,
    /// When no golden snapshot matches, save one after the phases, so the next `up` restores in seconds.
    #[arg(long, conflicts_with = "fresh")]
    golden: bool,
    /// Keep the cluster after this command: always (the default), on-failure (only when a phase fails), never.
    #[arg(long, env = "KTHW_KEEP", default_value = "always", value_parser = parse_keep)]
    keep: Keep,
    /// How long a kept cluster stays before `kthw gc` removes it, e.g. 2h or 90m.
    #[arg(long, env = "KTHW_KEEP_TTL", default_value = "24h", value_parser = kthw::keep::parse_ttl)]
    ttl: Duration,
}

fn parse_keep(s: &str) -> Result<Keep, String> {
    s.parse()
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Remove failure bundles older than this, e.g. 7d or 36h.
    #[arg(long, env = "KTHW_BUNDLE_TTL", default_value = "7d", value_parser = kthw::bundle::prune::parse_ttl)]
    bundle_ttl: Duration,
    /// Then remove the oldest bundles until all of them take at most this much, e.g. 2GiB or 500M; the newest
    /// and any being written stay.
    #[arg(long, env = "KTHW_BUNDLE_BUDGET", default_value = "2GiB", value_parser = kthw::bundle::prune::parse_size)]
    bundle_budget: u64,
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

/// The shell's convention for a command ended by SIGINT (128 + 2).
pub(super) const INTERRUPTED: u8 = 130;

pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("cannot start the async runtime")
}

pub fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    let spec = ClusterSpec::load_or_default(args.spec.as_deref())?;
    // The artifacts the versions pin: a preset's shipped lock, else the lock beside the spec (refused when
    // missing or stale, before anything boots).
    let lock = kthw::lock::for_spec(&spec.versions, args.spec.as_deref())?;
    let (events, rx) = Events::channel();
    let mut up = Up::new(spec.clone())
        .partial(args.partial)
        .artifacts_dir(args.artifacts_dir)
        .keep(args.keep)
        .keep_ttl(args.ttl)
        .fresh(args.fresh)
        .save_golden(args.golden)
        .lock(lock)
        .events(events);
    if let Some(until) = args.until {
        up = up.until(until);
    }
    if let Some(name) = args.name {
        up = up.name(name);
    }
    drive(up, rx, &spec)
}

/// Runs a prepared `up` (its events going to `rx`) with the live display, and reports how to get in.
pub(super) fn drive(up: Up, rx: UnboundedReceiver<Event>, spec: &ClusterSpec) -> anyhow::Result<ExitCode> {
    let plan = match up.plan() {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if let Some((phase, _)) = &plan.blocked {
        println!("--partial: running through phase {}; phase {phase} lacks artifacts (listed at the end)", plan.last);
    }
    runtime()?.block_on(async {
        let renderer = tokio::spawn(render::render(rx));
        let result = up.run_until(interrupted()).await;
        // Every sender is gone once `up` is: the renderer drains what is left and ends.
        let _ = renderer.await;
        match result {
            Ok(running) => {
                // The spec's own images, as `kthw load` puts them (a test's cluster gets them from testkit).
                if !spec.images.extra.is_empty() {
                    println!("loading the spec's images.extra into every node's containerd");
                    for line in kthw::oci::load_given(&running.cluster, &spec.images.extra).await? {
                        println!("loaded {line}");
                    }
                }
                report(&running, spec);
                Ok(ExitCode::SUCCESS)
            }
            Err(e @ UpError::Interrupted { .. }) => {
                eprintln!("\n{e}");
                Ok(ExitCode::from(INTERRUPTED))
            }
            Err(e) => Err(anyhow::Error::new(e)),
        }
    })
}

/// What a person needs once the cluster is up: its nodes, its phases, what is missing, and how to get in.
fn report(running: &Running, spec: &ClusterSpec) {
    let cluster = &running.cluster;
    let name = cluster.name();
    println!("\n{:<20} {:<16} {:<17} {:>8}", "NODE", "ADDRESS", "SSH FORWARD", "BOOT");
    for n in cluster.nodes() {
        let boot = n.boot_ms.map_or("-".to_string(), |ms| format!("{:.1} s", ms as f64 / 1000.0));
        println!("{:<20} {:<16} {:<17} {:>8}", n.name, n.address, format!("127.0.0.1:{}", n.ssh_port), boot);
    }
    if !running.reports.is_empty() {
        println!("\n{:<15} {:>9}  DONE", "PHASE", "TIME");
        for r in &running.reports {
            let changed =
                if r.changed.is_empty() { String::new() } else { format!(" ({} files installed)", r.changed.len()) };
            println!("{:<15} {:>7.1} s  {}{changed}", r.phase.name(), r.took.as_secs_f64(), r.phase.describe());
        }
    }
    if running.plan.last == Phase::Ready {
        for file in [READY_NODES_OUTPUT, READY_PODS_OUTPUT] {
            if let Ok(text) = std::fs::read_to_string(cluster.run_dir().phase_output(Phase::Ready, file)) {
                println!("\n{}", text.trim_end());
            }
        }
    }
    if let Some((phase, lacks)) = &running.plan.blocked {
        println!(
            "\nstopped before phase {phase} (--partial): it needs artifacts this host lacks:\n{}",
            render_lacks(lacks)
        );
        if let Some(hint) = running.plan.hint(spec) {
            println!("hint: {hint}");
        }
    }
    println!("\ncluster {name} is up ({:?}); run directory {}", cluster.accel(), cluster.run_dir().root().display());
    let svg = cluster.run_dir().timeline_svg();
    if svg.exists() {
        println!("  where the time went: {} (open it in a browser)", svg.display());
    }
    println!("  kthw ssh {name} {}        a shell on a node", cluster.nodes()[0].name);
    if running.plan.last >= Phase::ControlPlane {
        println!("  kthw kubeconfig {name}              a kubeconfig for kubectl on this host");
    }
    println!("  kthw down {name}                      remove it");
    if let Some(until) = cluster.state().keep_until.filter(|_| cluster.state().kept) {
        let left = until.saturating_sub(virt::metadata::unix_now());
        println!(
            "kept for {:.1} h: `kthw gc` removes it after that (`kthw up --ttl` sets another time)",
            left as f64 / 3600.0
        );
    }
}

pub fn list() -> anyhow::Result<ExitCode> {
    let paths = Paths::from_env();
    let clusters = cluster::list(&paths);
    if clusters.is_empty() {
        println!("no clusters under {}", paths.runs().display());
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<20} {:<9} {:>5}  {:<40} CREATED", "NAME", "ID", "NODES", "STATE");
    for c in clusters {
        match c {
            Ok(s) => {
                let now = virt::metadata::unix_now();
                let state = kthw::keep::describe(&s, now);
                let age = now.saturating_sub(s.created);
                println!("{:<20} {:<9} {:>5}  {:<40} {} min ago", s.name, s.id, s.nodes.len(), state, age / 60);
            }
            Err(e) => println!("?  {}", kthw::chain(&e)),
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

pub fn gc(args: GcArgs) -> anyhow::Result<ExitCode> {
    let paths = Paths::from_env();
    let reaped = runtime()?.block_on(cluster::gc(&paths, &virt::connect::uri()))?;
    for o in &reaped.objects {
        println!(
            "removed {:?} {} (cluster {} {}: owner pid {} gone, not kept or its time to live ended)",
            o.kind, o.name, o.ownership.cluster_name, o.ownership.cluster_id, o.ownership.owner.pid
        );
    }
    for d in &reaped.run_dirs {
        println!("removed run directory {}", d.display());
    }
    println!("{} libvirt objects and {} run directories removed", reaped.objects.len(), reaped.run_dirs.len());
    let policy = prune::Policy { ttl: args.bundle_ttl, budget: args.bundle_budget };
    let pruned = prune::prune(&paths, policy)?;
    let now = virt::metadata::unix_now();
    for (b, why) in &pruned.removed {
        let why = match why {
            prune::Why::Expired => format!("older than {}", kthw::keep::span(policy.ttl.as_secs())),
            prune::Why::OverBudget => {
                format!("the oldest while bundles took over {}", prune::human_bytes(policy.budget))
            }
        };
        let age = kthw::keep::span(now.saturating_sub(b.created));
        println!("removed bundle {} ({}, {age} old): {why}", b.name, prune::human_bytes(b.bytes));
    }
    println!(
        "{} bundles removed, {} freed; {} bundles ({}) kept in {}",
        pruned.removed.len(),
        prune::human_bytes(pruned.freed),
        pruned.kept,
        prune::human_bytes(pruned.kept_bytes),
        kthw::bundle::bundles_dir(&paths).display()
    );
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
        // Output is passed on as it comes, so a long command (a log follow, a wait) shows progress.
        let (mut stdout, mut stderr) = (std::io::stdout(), std::io::stderr());
        let out = session
            .exec_streaming(&args.command.join(" "), SSH_COMMAND_DEADLINE, |stream, data| {
                let written = match stream {
                    Stream::Stdout => stdout.write_all(data).and_then(|()| stdout.flush()),
                    Stream::Stderr => stderr.write_all(data).and_then(|()| stderr.flush()),
                };
                if let Err(e) = written {
                    tracing::debug!(error = %e, "cannot pass the command's output on");
                }
            })
            .await?;
        // OpenSSH's convention when the command died of a signal or no status came back.
        Ok(out.status.unwrap_or(255))
    })?;
    Ok(ExitCode::from(u8::try_from(status).unwrap_or(255)))
}
