//! `kthw fault NAME NODE FAULT`: make a node misbehave on purpose.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use kthw::cluster::{Cluster, Fault};
use kthw::paths::Paths;

#[derive(Debug, Args)]
pub struct FaultArgs {
    /// The cluster.
    name: String,
    /// The node, e.g. worker-node-2.
    node: String,
    /// One of: link-down, link-up, delay MS, loss PERCENT, pause, resume, reset, stop-unit UNIT, kill-unit UNIT.
    /// NIC faults act on the node's cluster NIC; `delay 0` and `loss 0` remove them.
    #[arg(required = true, num_args = 1.., value_name = "FAULT")]
    fault: Vec<String>,
}

pub fn fault(args: FaultArgs) -> anyhow::Result<ExitCode> {
    // The fault is checked before the cluster is even opened: a typo never reaches a node.
    let fault = Fault::parse(&args.fault)?;
    let cluster = Cluster::open(&args.name, &Paths::from_env())?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let started = Instant::now();
    let done = runtime.block_on(cluster.inject(&args.node, &fault))?;
    println!("{} {}: {fault} ({done}) in {:.2} s", args.name, args.node, started.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}
