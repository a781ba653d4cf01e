//! One way up: [`Up`] owns the whole sequence of bringing a cluster up (the artifact preflight, the node
//! image, the boot, the phases, keeping it, and interruption), and the CLI, the tests, the benchmarks and the
//! scenarios all call it. What it does reaches the caller as [`Event`]s and the run's timeline.
//!
//! ```no_run
//! # async fn f() -> Result<(), kthw::up::UpError> {
//! use kthw::{phase::Phase, up::Up, ClusterSpec};
//! let running = Up::new(ClusterSpec::default()).name("lab").until(Phase::Etcd).run().await?;
//! let cp = running.cluster.session("control-plane-1").await.expect("a session");
//! # Ok(()) }
//! ```

mod error;
mod failure;
mod golden;
mod run;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

use crate::bootstrap::{debian_etcd_hint, Bootstrap, Lack, PhaseReport};
use crate::cluster::Cluster;
use crate::events::Events;
use crate::image::NodeImage;
pub use crate::keep::Keep;
use crate::lock::{preset_manifest, Lock};
use crate::paths::Paths;
use crate::phase::Phase;
use crate::spec::ClusterSpec;

pub use error::UpError;
pub use failure::{
    bundle_in_a_drop, bundle_on_panic, home_to_name, how_to_get_in, keep_after_failure, tell_bundle, Collecting,
};
pub use golden::golden_through;

/// How far a run goes, decided before anything boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The last phase to run.
    pub last: Phase,
    /// With `partial`: the first phase that cannot run for lack of artifacts, and what it lacks.
    pub blocked: Option<(Phase, Vec<Lack>)>,
}

impl Plan {
    /// What a person should do about the blocked phase, if anything.
    pub fn hint(&self, spec: &ClusterSpec) -> Option<String> {
        self.blocked.as_ref().and_then(|(_, lacks)| debian_etcd_hint(spec, lacks))
    }
}

/// A cluster brought up as far as its plan goes.
#[derive(Debug)]
pub struct Running {
    pub cluster: Cluster,
    pub plan: Plan,
    pub reports: Vec<PhaseReport>,
    /// Where the phases got their artifacts; run more phases on the cluster with it.
    pub bootstrap: Bootstrap,
}

/// The builder: `Up::new(spec)`, then what differs from the defaults, then [`Up::run`].
#[derive(Debug, Clone)]
pub struct Up {
    spec: ClusterSpec,
    name: Option<String>,
    until: Phase,
    partial: bool,
    artifacts_dir: Option<PathBuf>,
    keep: Keep,
    keep_ttl: Duration,
    paths: Paths,
    image: Option<NodeImage>,
    uri: Option<String>,
    boot_deadline: Option<Duration>,
    events: Events,
    fresh: bool,
    run_from: Option<Phase>,
    save_golden: bool,
    bundle_on_panic: bool,
    lock: Option<Lock>,
}

impl Up {
    /// Every phase of `spec`, named as the spec names it, under `Paths::from_env()`, torn down when dropped.
    pub fn new(spec: ClusterSpec) -> Up {
        Up {
            spec,
            name: None,
            until: Phase::LAST,
            partial: false,
            artifacts_dir: None,
            keep: Keep::Never,
            keep_ttl: crate::cluster::DEFAULT_KEEP_TTL,
            paths: Paths::from_env(),
            image: None,
            uri: None,
            boot_deadline: None,
            events: Events::default(),
            fresh: false,
            run_from: None,
            save_golden: false,
            bundle_on_panic: false,
            lock: None,
        }
    }

    /// The spec's lock (`crate::lock::for_spec`): the artifacts its versions pin and the keys of its Cilium chart.
    /// A preset's shipped lock when not given; versions that are no preset must be given theirs, or [`Up::plan`]
    /// refuses. A failure bundle carries it, so that `kthw repro` checks the same chart's keys.
    pub fn lock(mut self, lock: Lock) -> Up {
        self.lock = Some(lock);
        self
    }

    /// The cluster's name (its run directory); the spec's `name` by default.
    pub fn name(mut self, name: impl Into<String>) -> Up {
        self.name = Some(name.into());
        self
    }

    /// The last phase to run.
    pub fn until(mut self, phase: Phase) -> Up {
        self.until = phase;
        self
    }

    /// Run every phase whose artifacts are at hand and stop before the first that lacks one, instead of
    /// refusing before booting.
    pub fn partial(mut self, partial: bool) -> Up {
        self.partial = partial;
        self
    }

    /// Use only the artifacts in this directory (air-gapped).
    pub fn artifacts_dir(mut self, dir: Option<PathBuf>) -> Up {
        self.artifacts_dir = dir;
        self
    }

    pub fn keep(mut self, keep: Keep) -> Up {
        self.keep = keep;
        self
    }

    /// How long a kept cluster stays before `kthw gc` removes it (24 h by default).
    pub fn keep_ttl(mut self, ttl: Duration) -> Up {
        self.keep_ttl = ttl;
        self
    }

    /// Where images, artifacts and run directories live.
    pub fn paths(mut self, paths: Paths) -> Up {
        self.paths = paths;
        self
    }

    /// This node image instead of the cached one (built when missing).
    pub fn image(mut self, image: NodeImage) -> Up {
        self.image = Some(image);
        self
    }

    /// The libvirt URI; `virt::connect::uri()` by default.
    pub fn uri(mut self, uri: impl Into<String>) -> Up {
        self.uri = Some(uri.into());
        self
    }

    /// How long a node may take to answer SSH, written for KVM and scaled by the accelerator.
    pub fn boot_deadline(mut self, deadline: Duration) -> Up {
        self.boot_deadline = Some(deadline);
        self
    }

    /// Where events go (they are also logged, and kept in the run's timeline).
    pub fn events(mut self, events: Events) -> Up {
        self.events = events;
        self
    }

    /// Boot and bootstrap even when a golden snapshot of the same state exists (`kthw up --fresh`).
    pub fn fresh(mut self, fresh: bool) -> Up {
        self.fresh = fresh;
        self
    }

    /// Run `phase` and every later one here even when a golden snapshot holds them: a snapshot may stand in
    /// only for the phases before it (`kthw repro` of a bundle whose run failed in `phase`: restoring past it
    /// would skip the failure it came to see). See [`golden_through`].
    pub fn run_from(mut self, phase: Option<Phase>) -> Up {
        self.run_from = phase;
        self
    }

    /// When no golden snapshot matches, save one after the phases (then continue on a restored copy), so the
    /// next run with the same inputs restores in seconds. Off by default: a snapshot costs the nodes' touched
    /// memory and written disk (about 1.5 GB for three nodes at `etcd`), which a one-off `kthw up` should not
    /// leave behind unasked; the test helpers ask, since every vm test starts from one of a few states.
    pub fn save_golden(mut self, save: bool) -> Up {
        self.save_golden = save;
        self
    }

    /// When the thread holding the cluster panics (a test failing with the cluster up), make a failure bundle
    /// before the teardown, print its path on stderr (the test's output) and keep the cluster as
    /// [`Up::keep`] says: see [`bundle_on_panic`]. Off by default; the test helpers turn it on.
    pub fn bundle_on_panic(mut self, on: bool) -> Up {
        self.bundle_on_panic = on;
        self
    }

    pub fn cluster_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.spec.name)
    }

    pub fn bootstrap(&self) -> Bootstrap {
        match &self.lock {
            Some(lock) => Bootstrap::from_lock(&self.paths, self.artifacts_dir.clone(), lock),
            None => Bootstrap::new(&self.paths, self.artifacts_dir.clone(), preset_manifest(&self.spec.versions)),
        }
    }

    /// How far the run will go with the artifacts at hand; without `partial`, an error listing what is
    /// missing (and the command that provides each) when that is not all the way to `until`.
    pub fn plan(&self) -> Result<Plan, UpError> {
        if self.lock.is_none() && self.spec.versions.as_preset().is_none() {
            return Err(UpError::Spec(format!(
                "versions {} are no preset and no lock was given: `kthw versions lock --spec FILE` resolves them, \
                 then `kthw up --spec FILE` uses the lock beside it",
                self.spec.versions
            )));
        }
        let bootstrap = self.bootstrap();
        if self.until >= Phase::Cilium {
            crate::bootstrap::cilium_install::validate_values_with(&self.spec, &bootstrap.chart_keys)
                .map_err(|e| UpError::Spec(e.to_string()))?;
        }
        if self.partial {
            let reach = bootstrap.reach(&self.spec, self.until);
            return Ok(Plan { last: reach.last, blocked: reach.blocked });
        }
        let lacks = bootstrap.check(&self.spec, self.until);
        if lacks.is_empty() {
            return Ok(Plan { last: self.until, blocked: None });
        }
        let hint = debian_etcd_hint(&self.spec, &lacks);
        Err(UpError::MissingArtifacts { until: self.until, lacks, hint })
    }
}
