//! `kthw scenario list` and `kthw scenario run`: the scenarios of kthw-scenarios, on a fresh cluster or a
//! kept one.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use kthw::events::Events;
use kthw::paths::Paths;
use kthw::signals::interrupted;
use kthw::spec::ClusterSpec;
use kthw::up::Keep;
use kthw_scenarios::{BuiltIn, On, Options, ScenarioError};

use super::cluster::{runtime, INTERRUPTED};
use super::render;

#[derive(Debug, Subcommand)]
pub enum ScenarioCommand {
    /// Every scenario: its name, what it shows, and the cluster it needs.
    List,
    /// Run one scenario and print its report; exit 1 when a check fails.
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The scenario (`kthw scenario list` names them).
    name: String,
    /// Run on this kept cluster instead of bringing one up; its spec and phases must fit the scenario.
    #[arg(long, value_name = "CLUSTER")]
    on: Option<String>,
    /// Keep the cluster the scenario brings up, passed or failed (without it, kept only when it fails).
    #[arg(long)]
    keep: bool,
    /// How long a kept cluster stays before `kthw gc` removes it, e.g. 2h or 90m.
    #[arg(long, env = "KTHW_KEEP_TTL", default_value = "24h", value_parser = kthw::keep::parse_ttl)]
    ttl: Duration,
    /// Cluster spec (TOML) to start from; the seed's cluster when absent. The scenario's own changes apply.
    #[arg(long)]
    spec: Option<PathBuf>,
    /// Use only the artifacts in DIR (air-gapped).
    #[arg(long, value_name = "DIR")]
    artifacts_dir: Option<PathBuf>,
}

pub fn run(c: ScenarioCommand) -> anyhow::Result<ExitCode> {
    match c {
        ScenarioCommand::List => {
            for s in BuiltIn::ALL {
                println!("{}\n  shows: {}\n  needs: {}", s.name(), s.shows(), s.needs().describe());
            }
            Ok(ExitCode::SUCCESS)
        }
        ScenarioCommand::Run(a) => run_one(a),
    }
}

fn run_one(a: RunArgs) -> anyhow::Result<ExitCode> {
    let scenario = BuiltIn::from_name(&a.name)?;
    let spec = ClusterSpec::load_or_default(a.spec.as_deref())?;
    let on = match a.on {
        Some(cluster) => On::Kept(cluster),
        None => On::Fresh { spec: Box::new(spec), name: format!("scenario-{}", scenario.name()) },
    };
    let keep = if a.keep { Keep::Always } else { Keep::OnFailure };
    run_on(scenario, on, a.artifacts_dir, keep, a.ttl)
}

/// Runs `scenario` on `on`, showing progress live, and prints its report (`kthw scenario run`, `kthw repro`).
pub(super) fn run_on(
    scenario: BuiltIn,
    on: On,
    artifacts_dir: Option<PathBuf>,
    keep: Keep,
    keep_ttl: Duration,
) -> anyhow::Result<ExitCode> {
    let (events, rx) = Events::channel();
    let opts = Options { paths: Paths::from_env(), artifacts_dir, keep, keep_ttl, events, ..Options::default() };
    let cluster = match &on {
        On::Kept(c) | On::Fresh { name: c, .. } => c.clone(),
    };
    runtime()?.block_on(async {
        let renderer = tokio::spawn(render::render(rx));
        let result = tokio::select! {
            r = kthw_scenarios::run(scenario.scenario(), on, opts) => Some(r),
            signal = interrupted() => {
                eprintln!("\ninterrupted by {signal}: the scenario's cluster is torn down unless it was kept");
                None
            }
        };
        let _ = renderer.await;
        match result {
            None => Ok(ExitCode::from(INTERRUPTED)),
            Some(Err(
                e @ (ScenarioError::MissingArtifacts { .. }
                | ScenarioError::Unsuitable { .. }
                | ScenarioError::Unfit { .. }),
            )) => {
                eprintln!("error: {e}");
                Ok(ExitCode::FAILURE)
            }
            Some(Err(e)) => Err(anyhow::Error::new(e)),
            Some(Ok(report)) => {
                println!("{report}");
                let kept = kthw::cluster::Cluster::open(&cluster, &Paths::from_env()).is_ok_and(|c| c.state().kept);
                if kept {
                    println!(
                        "cluster {cluster} is kept: `kthw ssh {cluster} control-plane-1`, `kthw kubeconfig {cluster}`; \
                         `kthw down {cluster}` removes it"
                    );
                }
                Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
            }
        }
    })
}
