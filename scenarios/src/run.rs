//! Running a scenario, a built-in or one of the user's own: on a fresh cluster brought up through
//! [`kthw::up::Up`] as far as it needs, or on a kept one (`--on`) whose spec and phases fit; the artifacts
//! checked before anything boots; acted out on a `kthw::testkit::TestCluster`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use kthw::artifacts::State;
use kthw::bootstrap::{Bootstrap, Lack};
use kthw::cluster::Cluster;
use kthw::events::Events;
use kthw::paths::Paths;
use kthw::phase::Phase;
use kthw::spec::ClusterSpec;
use kthw::testkit::TestCluster;
use kthw::up::{Keep, Plan, Running, Up};

use crate::{Report, Scenario, ScenarioError, World};

/// Which cluster a scenario runs on.
#[derive(Debug, Clone)]
pub enum On {
    /// A new cluster from this spec (the scenario's overrides applied), named `name`.
    Fresh { spec: Box<ClusterSpec>, name: String },
    /// A kept cluster, by name (`kthw up`, or a scenario run with `--keep`).
    Kept(String),
}

/// Where and how: the state and cache directories, the artifacts, whether the cluster outlives the run.
#[derive(Debug, Clone)]
pub struct Options {
    pub paths: Paths,
    pub artifacts_dir: Option<PathBuf>,
    /// A fresh cluster is kept `Always`, `OnFailure` of the scenario (or of a phase), or torn down.
    pub keep: Keep,
    /// How long a kept cluster stays before `kthw gc` removes it.
    pub keep_ttl: Duration,
    pub events: Events,
    /// A node image to use instead of building or looking one up (tests share theirs).
    pub image: Option<kthw::image::NodeImage>,
    /// Save a golden snapshot of the starting state when none matches, so the next run of any scenario that
    /// starts there restores it in seconds (`Up::save_golden`; the tests ask for it).
    pub save_golden: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            paths: Paths::from_env(),
            artifacts_dir: None,
            keep: Keep::Never,
            keep_ttl: kthw::cluster::DEFAULT_KEEP_TTL,
            events: Events::default(),
            image: None,
            save_golden: false,
        }
    }
}

/// What `scenario` lacks on this host for `spec` (its phases' artifacts and its own images); empty when it
/// can run. Call before booting anything.
pub fn preflight(scenario: &dyn Scenario, spec: &ClusterSpec, bootstrap: &Bootstrap) -> Vec<Lack> {
    let needs = scenario.needs();
    let mut lacks = bootstrap.check(spec, needs.through);
    for name in needs.images {
        let a = bootstrap.manifest.get(name).unwrap_or_else(|| panic!("the pinned manifest has {name}"));
        if bootstrap.cache.state_of(a) != State::Cached {
            lacks.push(Lack {
                phase: needs.through,
                artifact: a.name.clone(),
                path: bootstrap.cache.path_of(a),
                command: bootstrap.cache.command_for(a),
                found: None,
            });
        }
    }
    lacks
}

/// Runs `scenario` on `on`. A failed check is a report that did not pass, not an error.
pub async fn run(scenario: &dyn Scenario, on: On, opts: Options) -> Result<Report, ScenarioError> {
    let needs = scenario.needs();
    let name = scenario.name();
    match on {
        On::Fresh { spec, name: cluster } => {
            let spec = needs.spec(*spec);
            if let Some(why) = needs.unfit(&spec) {
                return Err(ScenarioError::Unfit { scenario: name, why });
            }
            let bootstrap =
                Bootstrap::new(&opts.paths, opts.artifacts_dir.clone(), kthw::lock::preset_manifest(&spec.versions));
            let lacks = preflight(scenario, &spec, &bootstrap);
            if !lacks.is_empty() {
                return Err(ScenarioError::MissingArtifacts { scenario: name, lacks });
            }
            let mut up = Up::new(spec)
                .name(cluster)
                .until(needs.from)
                .paths(opts.paths.clone())
                .artifacts_dir(opts.artifacts_dir.clone())
                .keep(opts.keep)
                .keep_ttl(opts.keep_ttl)
                .save_golden(opts.save_golden)
                .events(opts.events.clone());
            if let Some(image) = opts.image.clone() {
                up = up.image(image);
            }
            let running = up.run().await.map_err(|e| ScenarioError::Up { scenario: name, source: Box::new(e) })?;
            let cluster = TestCluster::adopt(running, opts.paths.clone(), name, opts.keep, opts.keep_ttl);
            let result = act(scenario, &cluster, &opts).await;
            let failed = !matches!(&result, Ok(r) if r.passed());
            if opts.keep == Keep::OnFailure && failed {
                let kept = match cluster.into_running() {
                    Ok(mut running) => running.cluster.keep_for(opts.keep_ttl).map_err(|e| kthw::chain(&e)),
                    Err(_) => Err("the scenario still holds a handle of it".to_string()),
                };
                if let Err(e) = kept {
                    tracing::warn!(error = %e, "cannot keep the failed scenario's cluster");
                }
            }
            result
        }
        On::Kept(cluster) => {
            let open = Cluster::open(&cluster, &opts.paths).map_err(|e| ScenarioError::Open {
                scenario: name,
                cluster: cluster.clone(),
                source: Box::new(e),
            })?;
            suitable(scenario, &open)?;
            let bootstrap =
                Bootstrap::from_lock(&opts.paths, opts.artifacts_dir.clone(), &kthw::lock::of_cluster(&open));
            let lacks = preflight(scenario, open.spec(), &bootstrap);
            if !lacks.is_empty() {
                return Err(ScenarioError::MissingArtifacts { scenario: name, lacks });
            }
            let plan = Plan { last: needs.from, blocked: None };
            let running = Running { cluster: open, plan, reports: Vec::new(), bootstrap };
            // An opened cluster is left running when its handle goes, whatever the scenario's verdict.
            let cluster = TestCluster::adopt(running, opts.paths.clone(), name, Keep::Always, opts.keep_ttl);
            act(scenario, &cluster, &opts).await
        }
    }
}

/// A kept cluster fits when its spec says what the scenario's overrides say, every phase through the
/// scenario's starting phase is done, and (for a scenario that runs later phases itself) none after it.
fn suitable(scenario: &dyn Scenario, cluster: &Cluster) -> Result<(), ScenarioError> {
    let needs = scenario.needs();
    let unsuitable =
        |why: String| ScenarioError::Unsuitable { scenario: scenario.name(), cluster: cluster.name().into(), why };
    let wrong: Vec<String> =
        needs.overrides.iter().filter(|o| !o.holds(cluster.spec())).map(|o| o.to_string()).collect();
    if !wrong.is_empty() {
        return Err(unsuitable(format!("it needs a spec with {}", wrong.join(", "))));
    }
    if let Some(why) = needs.unfit(cluster.spec()) {
        return Err(unsuitable(why));
    }
    let run_dir = cluster.run_dir();
    if let Some(missing) = needs.from.through().find(|p| *p != Phase::Nodes && !run_dir.phase_done(*p)) {
        return Err(unsuitable(format!(
            "phase {missing} has not run there (it needs every phase through {})",
            needs.from
        )));
    }
    if needs.through != needs.from {
        if let Some(done) = Phase::ALL.into_iter().find(|p| *p > needs.from && run_dir.phase_done(*p)) {
            return Err(unsuitable(format!("phase {done} has run there already; it starts after {}", needs.from)));
        }
    }
    Ok(())
}

async fn act(scenario: &dyn Scenario, cluster: &TestCluster, opts: &Options) -> Result<Report, ScenarioError> {
    let start = Instant::now();
    let name = scenario.name();
    tracing::info!(scenario = name, cluster = cluster.name(), "scenario begins");
    let w = World::new(scenario, cluster, &opts.events).await?;
    let mut report = w.report();
    let ran = scenario.run(&w, &mut report).await;
    // A command that ran past its deadline (connectivity's `cilium connectivity test`, say) or any other error
    // mid-scenario is a failure like a failed check: explained and bundled, not a bare error that leaves no
    // evidence (.config/nextest.toml leaves a scenario time for this bundle after its longest wait).
    if let Err(e) = ran {
        report.check("the scenario runs to its end", false, kthw::chain(&e));
    }
    if !report.passed() {
        report.explanation = w.explain().await;
        let why = format!(
            "scenario {name} failed: {}",
            report.failed().map(|c| c.what.as_str()).collect::<Vec<_>>().join("; ")
        );
        let extras = cluster.extras();
        let c = cluster.cluster();
        match kthw::bundle::collect_for_scenario(c, &opts.paths, cluster.bootstrap(), name, &why, &extras).await {
            Ok(made) => report.bundle = Some(made.archive),
            Err(e) => report.explanation.push(format!("no failure bundle: {}", kthw::chain(&e))),
        }
    }
    report.took = start.elapsed();
    if let Err(e) = w.keep("report.txt", &report.to_string()) {
        tracing::warn!(error = %kthw::chain(&e), "cannot keep the report");
    }
    Ok(report)
}
