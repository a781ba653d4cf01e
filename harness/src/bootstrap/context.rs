//! What every phase works with, below the phases and the dispatcher: where artifacts come from
//! ([`Bootstrap`]) and, while one phase runs, the cluster, the phase and its events ([`Ctx`]).

use std::future::Future;
use std::path::PathBuf;

use tokio::task::JoinSet;

use super::check::{self, Lack, Reach};
use super::{unpack, BootstrapError, Layout};
use crate::accel::Accel;
use crate::artifacts::{Artifact, Cache, Manifest, State};
use crate::cluster::Cluster;
use crate::events::Events;
use crate::paths::Paths;
use crate::phase::Phase;
use crate::spec::ClusterSpec;
use crate::ssh::{Session, SshError};

/// Where the phases get what they install: the artifact directory, the pinned manifest, the node layout, and
/// a host directory for binaries unpacked from release tarballs.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub cache: Cache,
    pub manifest: Manifest,
    pub layout: Layout,
    pub unpack_dir: PathBuf,
    /// Where Debian packages of other suites are kept (`artifacts::debian::suite_dir` under it).
    pub deb_cache: PathBuf,
    /// The top-level keys of the Cilium chart, as the lock read them from it (`crate::lock::Lock::chart_keys`);
    /// empty for a preset, whose chart's keys are compiled in.
    pub chart_keys: Vec<String>,
}

impl Bootstrap {
    /// The user's artifact cache, or only `artifacts_dir` when given (air-gapped: `--artifacts-dir`), with the
    /// artifacts `manifest` pins: the spec's lock (`crate::lock::for_spec`), a preset's shipped one by default.
    pub fn new(paths: &Paths, artifacts_dir: Option<PathBuf>, manifest: Manifest) -> Bootstrap {
        let cache = match artifacts_dir {
            Some(d) => Cache::air_gapped(d),
            None => Cache::new(paths.artifacts()),
        };
        Bootstrap {
            cache,
            manifest,
            layout: Layout::default(),
            unpack_dir: paths.cache.join("unpacked"),
            deb_cache: paths.cache.clone(),
            chart_keys: Vec::new(),
        }
    }

    /// The same, with the artifacts and chart keys of `lock`.
    pub fn from_lock(paths: &Paths, artifacts_dir: Option<PathBuf>, lock: &crate::lock::Lock) -> Bootstrap {
        Bootstrap { chart_keys: lock.chart_keys.clone(), ..Bootstrap::new(paths, artifacts_dir, lock.manifest()) }
    }

    /// What the phases through `until` lack; call it before booting anything.
    pub fn check(&self, spec: &ClusterSpec, until: Phase) -> Vec<Lack> {
        check::check_artifacts(spec, until, &self.cache, &self.manifest)
    }

    /// How far toward `until` the artifacts at hand go.
    pub fn reach(&self, spec: &ClusterSpec, until: Phase) -> Reach {
        check::reach(spec, until, &self.cache, &self.manifest)
    }

    /// The verified artifact `name`, or the error naming what is missing and the command that provides it.
    pub fn artifact(&self, phase: Phase, name: &str) -> Result<(&Artifact, PathBuf), BootstrapError> {
        let a = self.manifest.get(name).unwrap_or_else(|| panic!("the pinned manifest has an artifact {name}"));
        let path = self.cache.path_of(a);
        if self.cache.state_of(a) == State::Cached {
            return Ok((a, path));
        }
        let lack = Lack { phase, artifact: a.name.clone(), command: self.cache.command_for(a), path, found: None };
        Err(BootstrapError::MissingArtifacts { phase, missing: vec![lack] })
    }

    /// `members` of the release tarball `artifact`, unpacked on the host, by file name.
    pub fn binaries(&self, phase: Phase, artifact: &str, members: &[String]) -> Result<Vec<PathBuf>, BootstrapError> {
        let (a, tarball) = self.artifact(phase, artifact)?;
        let into = self.unpack_dir.join(&a.name).join(&a.upstream_version);
        unpack::unpack(phase, &tarball, &into, members)
    }
}

/// One phase running on one cluster.
pub struct Ctx<'a> {
    pub b: &'a Bootstrap,
    pub cluster: &'a Cluster,
    pub phase: Phase,
    pub events: &'a Events,
}

impl Ctx<'_> {
    pub fn spec(&self) -> &ClusterSpec {
        self.cluster.spec()
    }

    pub fn layout(&self) -> &Layout {
        &self.b.layout
    }

    pub fn accel(&self) -> Accel {
        self.cluster.accel()
    }

    /// An SSH session to `node`.
    pub async fn session(&self, node: &str) -> Result<Session, BootstrapError> {
        self.cluster.session(node).await.map_err(|source| BootstrapError::Cluster { phase: self.phase, source })
    }

    /// Keeps `text` as this phase's output `file` in the run directory (`phases/<phase>/<file>`); returns where.
    pub fn keep_output(&self, file: &str, text: &str) -> Result<PathBuf, BootstrapError> {
        let path = self.cluster.run_dir().phase_output(self.phase, file);
        path.parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| crate::files::write_atomic(&path, text.as_bytes(), 0o644))
            .map_err(|source| BootstrapError::Io { phase: self.phase, action: "write", path: path.clone(), source })?;
        Ok(path)
    }

    /// An SSH failure as this phase's error.
    pub fn ssh<T>(&self, r: Result<T, SshError>) -> Result<T, BootstrapError> {
        r.map_err(|source| BootstrapError::Ssh { phase: self.phase, source })
    }

    /// Runs `f` for every `(node, work)` at once; returns `node:path` for each file changed. The first failure
    /// ends the phase (the phase is idempotent: running it again finishes what the others had begun).
    pub async fn per_node<T, F, Fut>(&self, work: Vec<(String, T)>, f: F) -> Result<Vec<String>, BootstrapError>
    where
        F: Fn(Session, T) -> Fut,
        Fut: Future<Output = Result<Vec<PathBuf>, BootstrapError>> + Send + 'static,
    {
        let mut set = JoinSet::new();
        for (node, item) in work {
            let fut = f(self.session(&node).await?, item);
            set.spawn(async move {
                let changed = fut.await?;
                Ok::<_, BootstrapError>(
                    changed.into_iter().map(|p| format!("{node}:{}", p.display())).collect::<Vec<_>>(),
                )
            });
        }
        let mut changed: Vec<String> = crate::tasks::join_all(set).await?.into_iter().flatten().collect();
        changed.sort();
        Ok(changed)
    }
}
