//! `kthw bundle NAME`: a failure bundle of a running cluster, on demand; `kthw bundle --list`: the bundles kept.
//! A flag, not a `list` subcommand: a cluster may be named `list`, and `kthw bundle list` bundles it.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use kthw::bundle::prune;
use kthw::cluster::Cluster;
use kthw::paths::Paths;

#[derive(Debug, Args)]
pub struct BundleArgs {
    /// The cluster.
    #[arg(required_unless_present = "list", conflicts_with = "list")]
    name: Option<String>,
    /// Why the bundle is made, recorded in it (e.g. the failing test's name).
    #[arg(long, conflicts_with = "list")]
    reason: Option<String>,
    /// List the bundles under the state directory instead, oldest first: age, size, and why each was made.
    #[arg(long)]
    list: bool,
}

impl BundleArgs {
    pub fn is_a_listing(&self) -> bool {
        self.list
    }
}

pub fn bundle(args: BundleArgs) -> anyhow::Result<ExitCode> {
    let paths = Paths::from_env();
    if args.list {
        return list(&paths);
    }
    let name = args.name.context("name the cluster to bundle")?;
    let cluster = match Cluster::open(&name, &paths) {
        Err(e) if name == "list" => anyhow::bail!("{e}; the bundles kept are listed by `kthw bundle --list`"),
        opened => opened?,
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let made = runtime.block_on(kthw::bundle::collect(&cluster, &paths, args.reason.as_deref()))?;
    for s in made.failed_steps() {
        eprintln!("not collected: {}: {}", s.name, s.error.as_deref().unwrap_or_default().lines().next().unwrap_or(""));
    }
    println!(
        "bundle of cluster {name}: {} ({} steps, {} not collected; README.txt says what is where)\narchive: {} ({:.1} MiB)",
        made.dir.display(),
        made.manifest.steps.len(),
        made.failed_steps().count(),
        made.archive.display(),
        made.archive_bytes as f64 / (1024.0 * 1024.0)
    );
    let svg = kthw::bundle::timeline_svg(&made.dir);
    if svg.exists() {
        println!("where the time went: {}", svg.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn list(paths: &Paths) -> anyhow::Result<ExitCode> {
    let dir = kthw::bundle::bundles_dir(paths);
    let bundles = prune::list(paths)?;
    if bundles.is_empty() {
        println!("no bundles under {}", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let now = kthw::virt::metadata::unix_now();
    println!("{:<44} {:>14} {:>10}  REASON", "NAME", "AGE", "SIZE");
    for b in &bundles {
        let reason = match (&b.manifest, b.writing) {
            (_, true) => "(being written)".to_string(),
            (Some(m), false) => m.reason.lines().next().unwrap_or_default().to_string(),
            (None, false) if b.dir.is_none() => "(archive only)".to_string(),
            (None, false) => "(incomplete: its writer stopped before the manifest)".to_string(),
        };
        let age = kthw::keep::span(now.saturating_sub(b.created));
        println!("{:<44} {:>14} {:>10}  {reason}", b.name, age, prune::human_bytes(b.bytes));
    }
    let total: u64 = bundles.iter().map(|b| b.bytes).sum();
    println!("{} bundles, {} in {}", bundles.len(), prune::human_bytes(total), dir.display());
    Ok(ExitCode::SUCCESS)
}
