//! Running phases against a cluster: each one timed, marked in every node's log, recorded in the run
//! directory's `phases.tsv`, and run on the nodes it concerns in parallel.

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::check::{self, Lack, Reach};
use super::{control_plane, etcd, secrets, unpack, workers, BootstrapError, Layout, Phase};
use crate::artifacts::{Artifact, Cache, Manifest, State};
use crate::cluster::Cluster;
use crate::paths::Paths;
use crate::spec::ClusterSpec;
use crate::ssh::Session;

/// Where the phases get what they install: the artifact directory, the pinned manifest, the node layout, and
/// a host directory for binaries unpacked from release tarballs.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub cache: Cache,
    pub manifest: Manifest,
    pub layout: Layout,
    pub unpack_dir: PathBuf,
}

/// What one phase did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseReport {
    pub phase: Phase,
    pub took: Duration,
    /// `node:path` of every file the phase installed or replaced on a node; empty when it changed nothing.
    pub changed: Vec<String>,
}

/// The run directory's record of every phase run, one line each: phase, seconds, files changed, outcome.
pub const TIMINGS_FILE: &str = "phases.tsv";

impl Bootstrap {
    /// The user's artifact cache, or only `artifacts_dir` when given (air-gapped: `--artifacts-dir`).
    pub fn new(paths: &Paths, artifacts_dir: Option<PathBuf>) -> Bootstrap {
        let cache = match artifacts_dir {
            Some(d) => Cache::air_gapped(d),
            None => Cache::new(paths.artifacts()),
        };
        Bootstrap {
            cache,
            manifest: Manifest::pinned(),
            layout: Layout::default(),
            unpack_dir: paths.cache.join("unpacked"),
        }
    }

    /// What the phases through `until` lack; call it before booting anything.
    pub fn check(&self, spec: &ClusterSpec, until: Phase) -> Vec<Lack> {
        check::check_artifacts(spec, until, &self.cache, &self.manifest)
    }

    /// How far toward `until` the artifacts at hand go.
    pub fn reach(&self, spec: &ClusterSpec, until: Phase) -> Reach {
        check::reach(spec, until, &self.cache, &self.manifest)
    }

    /// Runs every phase after `nodes` through `until` (the cluster's nodes are up already), calling `done`
    /// after each.
    pub async fn run_through(
        &self,
        cluster: &Cluster,
        until: Phase,
        mut done: impl FnMut(&PhaseReport),
    ) -> Result<Vec<PhaseReport>, BootstrapError> {
        let mut reports = Vec::new();
        for phase in until.through().filter(|p| *p != Phase::Nodes) {
            let r = self.run(cluster, phase).await?;
            done(&r);
            reports.push(r);
        }
        Ok(reports)
    }

    /// Runs one phase. Phases are idempotent: running one again changes nothing and succeeds.
    pub async fn run(&self, cluster: &Cluster, phase: Phase) -> Result<PhaseReport, BootstrapError> {
        let start = Instant::now();
        mark(cluster, &format!("phase {phase} begins"));
        tracing::info!(cluster = cluster.name(), %phase, "phase begins");
        let result = match phase {
            Phase::Nodes => nodes(cluster).await,
            Phase::Pki => secrets::pki(self, cluster).await,
            Phase::Kubeconfigs => secrets::kubeconfigs(self, cluster).await,
            Phase::Etcd => etcd::run(self, cluster).await,
            Phase::ControlPlane => control_plane::run(self, cluster).await,
            Phase::Workers => workers::run(self, cluster).await,
        };
        let took = start.elapsed();
        let outcome = match &result {
            Ok(changed) => format!("ok, {} files changed", changed.len()),
            Err(_) => "failed".to_string(),
        };
        mark(cluster, &format!("phase {phase} {outcome} after {took:.2?}"));
        record(cluster.run_dir(), phase, took, &result);
        tracing::info!(cluster = cluster.name(), %phase, took = ?took, outcome, "phase ends");
        result.map(|changed| PhaseReport { phase, took, changed })
    }

    /// The verified artifact `name`, or the error naming what is missing and the command that provides it.
    pub(super) fn artifact(&self, phase: Phase, name: &str) -> Result<(&Artifact, PathBuf), BootstrapError> {
        let a = self.manifest.get(name).unwrap_or_else(|| panic!("the pinned manifest has an artifact {name}"));
        let path = self.cache.path_of(a);
        if self.cache.state_of(a) == State::Cached {
            return Ok((a, path));
        }
        let lack = Lack { phase, artifact: a.name.clone(), command: self.cache.command_for(a), path };
        Err(BootstrapError::MissingArtifacts { phase, missing: vec![lack] })
    }

    /// `members` of the release tarball `artifact`, unpacked on the host, by file name.
    pub(super) fn binaries(
        &self,
        phase: Phase,
        artifact: &str,
        members: &[String],
    ) -> Result<Vec<PathBuf>, BootstrapError> {
        let (a, tarball) = self.artifact(phase, artifact)?;
        let into = self.unpack_dir.join(&a.name).join(&a.upstream_version);
        unpack::unpack(phase, &tarball, &into, members)
    }
}

/// The `nodes` phase on a cluster that is up: every node answers SSH.
async fn nodes(cluster: &Cluster) -> Result<Vec<String>, BootstrapError> {
    for n in cluster.nodes() {
        session(cluster, Phase::Nodes, &n.name).await?;
    }
    Ok(Vec::new())
}

pub(super) async fn session(cluster: &Cluster, phase: Phase, node: &str) -> Result<Session, BootstrapError> {
    cluster.session(node).await.map_err(|source| BootstrapError::Cluster { phase, source })
}

/// Runs `f` for every `(node, work)` at once; returns `node:path` for each file changed. The first failure
/// ends the phase (the phase is idempotent: running it again finishes what the others had begun).
pub(super) async fn per_node<T, F, Fut>(
    cluster: &Cluster,
    phase: Phase,
    work: Vec<(String, T)>,
    f: F,
) -> Result<Vec<String>, BootstrapError>
where
    F: Fn(Session, T) -> Fut,
    Fut: Future<Output = Result<Vec<PathBuf>, BootstrapError>> + Send + 'static,
{
    let mut set = JoinSet::new();
    for (node, item) in work {
        let fut = f(session(cluster, phase, &node).await?, item);
        set.spawn(async move {
            let changed = fut.await?;
            Ok::<_, BootstrapError>(changed.into_iter().map(|p| format!("{node}:{}", p.display())).collect::<Vec<_>>())
        });
    }
    let mut changed = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(r) => changed.extend(r?),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    changed.sort();
    Ok(changed)
}

/// A line in every node's log, so that a person reading it sees where each phase begins and ends.
fn mark(cluster: &Cluster, what: &str) {
    for n in cluster.nodes() {
        if let Some(log) = cluster.target(&n.name).ok().and_then(|t| t.log) {
            append(&log, &format!("=== kthw: {what} ===\n"));
        }
    }
}

fn record(run_dir: &Path, phase: Phase, took: Duration, result: &Result<Vec<String>, BootstrapError>) {
    let outcome = match result {
        Ok(c) => format!("ok\t{}", c.len()),
        Err(_) => "failed\t-".to_string(),
    };
    append(&run_dir.join(TIMINGS_FILE), &format!("{phase}\t{:.3}\t{outcome}\n", took.as_secs_f64()));
}

fn append(path: &Path, line: &str) {
    let written =
        std::fs::OpenOptions::new().create(true).append(true).open(path).and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "cannot append to a run log");
    }
}
