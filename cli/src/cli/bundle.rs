//! `kthw bundle NAME`: a failure bundle of a running cluster, on demand.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use kthw::cluster::Cluster;
use kthw::paths::Paths;

#[derive(Debug, Args)]
pub struct BundleArgs {
    /// The cluster.
    name: String,
    /// Why the bundle is made, recorded in it (e.g. the failing test's name).
    #[arg(long)]
    reason: Option<String>,
}

pub fn bundle(args: BundleArgs) -> anyhow::Result<ExitCode> {
    let paths = Paths::from_env();
    let cluster = Cluster::open(&args.name, &paths)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let made = runtime.block_on(kthw::bundle::collect(&cluster, &paths, args.reason.as_deref()))?;
    for s in made.failed_steps() {
        eprintln!("not collected: {}: {}", s.name, s.error.as_deref().unwrap_or_default().lines().next().unwrap_or(""));
    }
    println!(
        "bundle of cluster {}: {} ({} steps, {} not collected; README.txt says what is where)\narchive: {} ({:.1} MiB)",
        args.name,
        made.dir.display(),
        made.manifest.steps.len(),
        made.failed_steps().count(),
        made.archive.display(),
        made.archive_bytes as f64 / (1024.0 * 1024.0)
    );
    Ok(ExitCode::SUCCESS)
}
