//! The phases of `kthw up` after `nodes`: what the artifacts allow, decided before any VM boots, then each
//! phase run and timed as a person watches.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use kthw::bootstrap::{debian_etcd_hint, render_lacks, Bootstrap, Lack, Phase, PhaseReport};
use kthw::cluster::Cluster;
use kthw::paths::Paths;
use kthw::spec::ClusterSpec;

#[derive(Debug, Args)]
pub struct BootstrapArgs {
    /// Run every phase whose artifacts are at hand and stop before the first that lacks one; the cluster stays
    /// up and the output says what is missing and the command that provides it.
    #[arg(long)]
    partial: bool,
    /// Use only the artifacts in DIR (air-gapped: nothing is downloaded; `kthw artifacts fetch --dir DIR`
    /// fills one where the internet is reachable).
    #[arg(long, value_name = "DIR")]
    artifacts_dir: Option<PathBuf>,
}

/// How far `up` goes, decided before booting.
pub struct Plan {
    bootstrap: Bootstrap,
    spec: ClusterSpec,
    /// The last phase to run.
    pub last: Phase,
    /// With `--partial`: the first phase that cannot run, and what it lacks.
    blocked: Option<(Phase, Vec<Lack>)>,
}

/// Checks the artifacts the phases through `until` need. Without `--partial`, anything missing ends `up`
/// here, before a VM boots, with the list and the commands that provide it (`Err` holds the exit code).
pub fn preflight(spec: &ClusterSpec, paths: &Paths, until: Phase, args: &BootstrapArgs) -> Result<Plan, ExitCode> {
    let bootstrap = Bootstrap::new(paths, args.artifacts_dir.clone());
    let plan = |last, blocked| Plan { bootstrap: bootstrap.clone(), spec: spec.clone(), last, blocked };
    if args.partial {
        let reach = bootstrap.reach(spec, until);
        if let Some((phase, _)) = &reach.blocked {
            println!(
                "--partial: running through phase {}; phase {phase} lacks artifacts (listed at the end)",
                reach.last
            );
        }
        return Ok(plan(reach.last, reach.blocked));
    }
    let lacks = bootstrap.check(spec, until);
    if lacks.is_empty() {
        return Ok(plan(until, None));
    }
    eprintln!(
        "error: the phases through {until} need {} artifact{} this host lacks; no VM was booted:\n{}",
        lacks.len(),
        if lacks.len() == 1 { "" } else { "s" },
        render_lacks(&lacks)
    );
    if let Some(hint) = debian_etcd_hint(spec, &lacks) {
        eprintln!("hint: {hint}");
    }
    eprintln!("hint: `kthw up --partial` runs every phase the artifacts at hand allow and stops before the first that lacks one");
    Err(ExitCode::FAILURE)
}

/// Runs the planned phases after `nodes` on `cluster`, printing each one's time. A failure or an interruption
/// leaves the cluster up (it is kept) for a person to look at.
pub async fn run(cluster: &Cluster, plan: &Plan, interrupted: impl Future<Output = &'static str>) -> ExitCode {
    if plan.last == Phase::Nodes {
        return ExitCode::SUCCESS;
    }
    println!("\n{:<15} {:>9}  DONE", "PHASE", "TIME");
    let print = |r: &PhaseReport| {
        let changed =
            if r.changed.is_empty() { String::new() } else { format!(" ({} files installed)", r.changed.len()) };
        println!("{:<15} {:>7.1} s  {}{changed}", r.phase.name(), r.took.as_secs_f64(), r.phase.describe());
    };
    let ran = tokio::select! {
        ran = plan.bootstrap.run_through(cluster, plan.last, print) => ran,
        got = interrupted => {
            eprintln!("\ninterrupted by {got} during the phases; cluster {} stays up", cluster.name());
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = ran {
        eprintln!(
            "\nerror: {e}\nthe cluster stays up to look at (node logs in {}/nodes/*/ssh.log)",
            cluster.run_dir().display()
        );
        return ExitCode::FAILURE;
    }
    if let Some((phase, lacks)) = &plan.blocked {
        println!(
            "\nstopped before phase {phase} (--partial): it needs artifacts this host lacks:\n{}",
            render_lacks(lacks)
        );
        if let Some(hint) = debian_etcd_hint(&plan.spec, lacks) {
            println!("hint: {hint}");
        }
    }
    if plan.last >= Phase::ControlPlane {
        println!("\n  kthw kubeconfig {}              a kubeconfig for kubectl on this host", cluster.name());
    }
    ExitCode::SUCCESS
}
