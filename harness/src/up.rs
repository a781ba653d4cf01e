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

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::artifacts::Manifest;
use crate::bootstrap::{debian_etcd_hint, render_lacks, Bootstrap, BootstrapError, Lack, PhaseReport};
use crate::cluster::{BootFailure, Cluster, ClusterError, UpOptions};
use crate::events::{Event, Events, Stamped};
use crate::golden::{self, GoldenError, KeyInputs, KeyLock};
use crate::image::{self, BuildOptions, ImageError, NodeImage};
use crate::paths::Paths;
use crate::phase::Phase;
use crate::rundir::{RunDir, TIMELINE_SVG};
use crate::spec::ClusterSpec;

/// Whether the cluster outlives the process that brought it up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Keep {
    /// Torn down when the [`Running`] handle is dropped (tests).
    #[default]
    Never,
    /// Kept when a phase fails, for a person to look at; torn down otherwise.
    OnFailure,
    /// Kept from the moment every node answers, until `kthw down` (`kthw up`).
    Always,
}

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

/// Why a cluster did not come up.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error(
        "the phases through {until} need {} artifact{} this host lacks; no VM was booted:\n{}{}\n\
         hint: `kthw up --partial` runs every phase the artifacts at hand allow and stops before the first that lacks one",
        lacks.len(),
        if lacks.len() == 1 { "" } else { "s" },
        render_lacks(lacks),
        hint.as_ref().map(|h| format!("\nhint: {h}")).unwrap_or_default()
    )]
    MissingArtifacts { until: Phase, lacks: Vec<Lack>, hint: Option<String> },
    #[error("the spec cannot be installed; nothing was booted: {0}")]
    Spec(String),
    #[error("no node image, and building one failed")]
    Image(#[source] ImageError),
    #[error("cluster {name} did not come up{}", bundle.as_ref().map(|b| format!(
        "; it was torn down\nfailure bundle: {} (and {}.tar.gz): the nodes' consoles are in its run/nodes/*/console.log, \
         where the time went in its run/{TIMELINE_SVG}",
        b.display(), b.display()
    )).unwrap_or_default())]
    Boot {
        name: String,
        /// The failure bundle made before the teardown, when the cluster existed and one could be written.
        bundle: Option<PathBuf>,
        #[source]
        source: Box<ClusterError>,
    },
    #[error("cluster {name}: {}{}", if *kept {
        format!("it stays up to look at: `kthw ssh {name} NODE`, `kthw kubeconfig {name}`; node logs in {}/nodes/*/ssh.log; \
                 `kthw down {name}` removes it, `kthw gc` once its time to live ends", run_dir.root().display())
    } else {
        "it was torn down".to_string()
    }, bundle.as_ref().map(|b| format!(
        "\nfailure bundle: {} (and {}.tar.gz); where the time went: {}",
        b.display(), b.display(), crate::bundle::timeline_svg(b).display()
    )).unwrap_or_default())]
    Phase {
        name: String,
        run_dir: RunDir,
        kept: bool,
        /// The failure bundle made before the cluster was torn down or kept, if one could be written.
        bundle: Option<PathBuf>,
        #[source]
        source: Box<BootstrapError>,
    },
    #[error("interrupted by {signal}: cluster {name} was torn down")]
    Interrupted { signal: &'static str, name: String },
    #[error("cluster {name}: the golden snapshot")]
    Golden {
        name: String,
        #[source]
        source: Box<GoldenError>,
    },
    #[error("keeping cluster {name}")]
    Keep {
        name: String,
        #[source]
        source: Box<ClusterError>,
    },
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
    save_golden: bool,
    bundle_on_panic: bool,
    manifest: Option<Manifest>,
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
            save_golden: false,
            bundle_on_panic: false,
            manifest: None,
        }
    }

    /// The artifacts the spec's versions pin: its lock's (`crate::lock::for_spec`). A preset's shipped lock when
    /// not given; versions that are no preset must be given theirs, or [`Up::plan`] refuses.
    pub fn manifest(mut self, manifest: Manifest) -> Up {
        self.manifest = Some(manifest);
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
        let manifest =
            self.manifest.clone().unwrap_or_else(|| crate::lock::Lock::preset(self.spec.versions.preset).manifest());
        Bootstrap::new(&self.paths, self.artifacts_dir.clone(), manifest)
    }

    /// How far the run will go with the artifacts at hand; without `partial`, an error listing what is
    /// missing (and the command that provides each) when that is not all the way to `until`.
    pub fn plan(&self) -> Result<Plan, UpError> {
        if self.manifest.is_none() && self.spec.versions.as_preset().is_none() {
            return Err(UpError::Spec(format!(
                "versions {} are no preset and no lock was given: `kthw versions lock --spec FILE` resolves them, \
                 then `kthw up --spec FILE` uses the lock beside it",
                self.spec.versions
            )));
        }
        if self.until >= Phase::Cilium {
            crate::bootstrap::cilium_install::validate_values(&self.spec).map_err(|e| UpError::Spec(e.to_string()))?;
        }
        let bootstrap = self.bootstrap();
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

    /// Brings the cluster up as far as the plan goes.
    pub async fn run(self) -> Result<Running, UpError> {
        self.run_until(std::future::pending()).await
    }

    /// [`Up::run`], ended by `cancel` (which names why, e.g. "SIGINT"): then everything made so far is torn
    /// down, kept or not, and the result is [`UpError::Interrupted`].
    pub async fn run_until(self, cancel: impl Future<Output = &'static str>) -> Result<Running, UpError> {
        let name = self.cluster_name().to_string();
        let plan = self.plan()?;
        tokio::pin!(cancel);
        // The image is built before any run directory exists: its bar joins the timeline once one does.
        let (image, mut image_built) = match self.image.clone() {
            Some(i) => (i, None),
            None => tokio::select! {
                image = self.cached_or_built() => image?,
                signal = &mut cancel => return Err(UpError::Interrupted { signal, name }),
            },
        };
        let golden = match self.fresh {
            true => None,
            false => Some(self.golden_inputs(&image, plan.last).await?),
        };
        let mut building = None;
        if let Some(inputs) = &golden {
            let key = inputs.key();
            let restored = tokio::select! {
                r = self.restore_golden(&key, &name) => r,
                signal = &mut cancel => return Err(UpError::Interrupted { signal, name }),
            };
            if let Some(mut cluster) = restored? {
                self.keep_if_asked(&mut cluster)?;
                record_earlier(cluster.run_dir(), image_built.take());
                return Ok(self.running(cluster, plan, Vec::new(), self.bootstrap()));
            }
            if self.save_golden {
                // Concurrent builders of one key build once: the others wait here, then restore what it saved.
                let lock = KeyLock::acquire(&self.paths, &key, true, true).map_err(|e| self.golden_error(e))?;
                if golden::store::open(&self.paths, &key).ok().flatten().is_some() {
                    drop(lock);
                    if let Some(mut cluster) = self.restore_golden(&key, &name).await? {
                        self.keep_if_asked(&mut cluster)?;
                        record_earlier(cluster.run_dir(), image_built.take());
                        return Ok(self.running(cluster, plan, Vec::new(), self.bootstrap()));
                    }
                } else {
                    building = lock;
                }
            }
        }
        let boot_started = Instant::now();
        let base_image = image.disk.clone();
        let options = UpOptions {
            image: Some(image),
            uri: self.uri.clone(),
            boot_deadline: self.boot_deadline,
            events: self.events.clone(),
        };
        let mut cluster = tokio::select! {
            up = Cluster::boot(&self.spec, &name, &self.paths, options) => match up {
                Ok(cluster) => cluster,
                Err(failed) => {
                    if let Some(cluster) = &failed.cluster {
                        record_earlier(cluster.run_dir(), image_built.take());
                    }
                    return Err(self.boot_failed(&name, failed).await);
                }
            },
            // Dropping the `up` future drops its teardown guard: what was created is removed.
            signal = &mut cancel => return Err(UpError::Interrupted { signal, name }),
        };
        record_earlier(cluster.run_dir(), image_built.take());
        let events = self.events.with_timeline(cluster.run_dir());
        if self.keep == Keep::Always {
            cluster.keep_for(self.keep_ttl).map_err(|e| UpError::Keep { name: name.clone(), source: Box::new(e) })?;
        }
        let bootstrap = self.bootstrap();
        let ran = tokio::select! {
            ran = bootstrap.run_through(&cluster, plan.last, &events) => ran,
            signal = &mut cancel => {
                events.emit(Event::Note(format!("interrupted by {signal}: tearing cluster {name} down")));
                if let Err(e) = cluster.down().await {
                    tracing::error!(cluster = %name, error = %crate::chain(&e), "tearing down after the interruption failed; `kthw gc` retries");
                }
                return Err(UpError::Interrupted { signal, name });
            }
        };
        match ran {
            Ok(reports) => match (golden, building) {
                (Some(inputs), Some(lock)) => {
                    let key = inputs.key();
                    events.emit(Event::Note(format!("golden: saving snapshot {key} of phase {}", plan.last)));
                    // As the overlays name it (`Cluster::up` made the image's paths absolute).
                    let base = std::fs::canonicalize(&base_image).unwrap_or(base_image);
                    // The copy's timeline starts at its restore; this run's boot and phases belong in its
                    // picture too (the snapshot keeps no timeline: a later copy did not live through them).
                    let lived = crate::events::read(cluster.run_dir());
                    golden::save(cluster, inputs, &self.paths, base, Some(boot_started.elapsed()))
                        .await
                        .map_err(|e| self.golden_error(e))?;
                    // The restore takes the key's shared lock: this process's exclusive one must go first.
                    drop(lock);
                    let mut copy = self
                        .restore_golden(&key, &name)
                        .await?
                        .ok_or_else(|| self.golden_error(GoldenError::NotFound { key: key.clone() }))?;
                    self.keep_if_asked(&mut copy)?;
                    for r in lived {
                        record_earlier(copy.run_dir(), Some(r));
                    }
                    Ok(self.running(copy, plan, reports, bootstrap))
                }
                _ => Ok(self.running(cluster, plan, reports, bootstrap)),
            },
            Err(source) => {
                let bundle = self.failure_bundle(&cluster, &bootstrap, &source, &events).await;
                let kept = match self.keep {
                    Keep::Never => false,
                    Keep::Always => true,
                    Keep::OnFailure => cluster.keep_for(self.keep_ttl).is_ok(),
                };
                Err(UpError::Phase { name, run_dir: cluster.run_dir().clone(), kept, bundle, source: Box::new(source) })
            }
        }
    }

    /// The handle to return, armed for a panic when asked.
    fn running(&self, mut cluster: Cluster, plan: Plan, reports: Vec<PhaseReport>, bootstrap: Bootstrap) -> Running {
        // Drawn once more at the end whatever was drawn before, so the picture holds every last event.
        crate::timeline::write_svg(cluster.run_dir());
        if self.bundle_on_panic {
            bundle_on_panic(&mut cluster, self.paths.clone(), bootstrap.clone(), self.keep, self.keep_ttl);
        }
        Running { cluster, plan, reports, bootstrap }
    }

    /// A boot that failed: a bundle of what the cluster left (consoles, SSH logs, domains, the timeline), then
    /// the teardown, then the error naming the bundle. A bundle that cannot be written is logged, never a
    /// reason to lose the boot's own error.
    async fn boot_failed(&self, name: &str, failed: BootFailure) -> UpError {
        let BootFailure { error, cluster } = failed;
        let mut bundle = None;
        if let Some(cluster) = cluster {
            let reason = format!("cluster {name} did not come up: {}", crate::chain(&error));
            match crate::bundle::collect_boot_failure(&cluster, &self.paths, &self.bootstrap(), &reason).await {
                Ok(made) => {
                    self.events.emit(Event::Note(format!("failure bundle: {}", made.archive.display())));
                    bundle = Some(made.dir);
                }
                Err(e) => tracing::warn!(cluster = name, error = %crate::chain(&e), "no failure bundle"),
            }
            if let Err(e) = cluster.down().await {
                tracing::error!(cluster = name, error = %crate::chain(&e), "tearing down after the failed boot failed; `kthw gc` retries");
            }
        }
        UpError::Boot { name: name.to_string(), bundle, source: Box::new(error) }
    }

    /// Everything that explains the failure, collected while the cluster still runs; a bundle that cannot be
    /// written is logged, never a reason to lose the phase's own error.
    async fn failure_bundle(
        &self,
        cluster: &Cluster,
        bootstrap: &Bootstrap,
        failed: &BootstrapError,
        events: &Events,
    ) -> Option<PathBuf> {
        let reason = crate::chain(failed);
        match crate::bundle::collect_with(cluster, &self.paths, bootstrap, Some(&reason)).await {
            Ok(made) => {
                events.emit(Event::Note(format!("failure bundle: {}", made.archive.display())));
                Some(made.dir)
            }
            Err(e) => {
                tracing::warn!(cluster = cluster.name(), error = %crate::chain(&e), "no failure bundle");
                None
            }
        }
    }

    /// What a golden snapshot of this run's last phase would be keyed by.
    async fn golden_inputs(&self, image: &NodeImage, last: Phase) -> Result<KeyInputs, UpError> {
        let uri = self.uri.clone().unwrap_or_else(crate::virt::connect::uri);
        let hypervisor = crate::virt::blocking(move || {
            let conn = crate::virt::connect::open(&uri)?;
            conn.hyp_version().map_err(|e| crate::virt::libvirt_error("read the hypervisor version of", &uri, e))
        })
        .await
        .map_err(|e| self.golden_error(e.into()))?;
        let accel = crate::accel::detect(&self.paths.state, Some(&image.kernel)).accel;
        Ok(KeyInputs::new(&image.key, &self.spec, &self.bootstrap().manifest, last, accel, hypervisor))
    }

    /// A copy of snapshot `key`, or None when there is none or it must not be used (said, then rebuilt).
    async fn restore_golden(&self, key: &str, name: &str) -> Result<Option<crate::cluster::Cluster>, UpError> {
        match golden::store::open(&self.paths, key) {
            Ok(Some(_)) => {}
            Ok(None) => return Ok(None),
            Err(e) if e.is_unusable() => {
                self.events.emit(Event::Note(format!("golden: not using snapshot {key}: {e}")));
                return Ok(None);
            }
            Err(e) => return Err(self.golden_error(e)),
        }
        self.events.emit(Event::Note(format!("golden: restoring snapshot {key} instead of booting (`--fresh` boots)")));
        let uri = self.uri.clone().unwrap_or_else(crate::virt::connect::uri);
        match golden::restore(&self.paths, key, name, &uri, &self.events).await {
            Ok((cluster, restored)) => {
                let events = self.events.with_timeline(cluster.run_dir());
                events.emit(Event::Note(format!(
                    "golden: {} nodes restored from {key} in {:.1} s",
                    cluster.nodes().len(),
                    restored.took.as_secs_f64()
                )));
                Ok(Some(cluster))
            }
            Err(e) if e.is_unusable() => {
                self.events.emit(Event::Note(format!("golden: not using snapshot {key}: {e}")));
                Ok(None)
            }
            Err(e) => Err(self.golden_error(e)),
        }
    }

    fn keep_if_asked(&self, cluster: &mut crate::cluster::Cluster) -> Result<(), UpError> {
        if self.keep == Keep::Always {
            let name = self.cluster_name().to_string();
            cluster.keep().map_err(|e| UpError::Keep { name, source: Box::new(e) })?;
        }
        Ok(())
    }

    fn golden_error(&self, e: GoldenError) -> UpError {
        UpError::Golden { name: self.cluster_name().to_string(), source: Box::new(e) }
    }

    /// The cached image, or one built now with its [`Event::ImageReady`] as the timeline will keep it.
    async fn cached_or_built(&self) -> Result<(NodeImage, Option<Stamped>), UpError> {
        if let Some(i) = image::cached(&self.paths).map_err(UpError::Image)? {
            return Ok((i, None));
        }
        self.events.emit(Event::ImageBuilding);
        let start = Instant::now();
        let built = image::build(&self.paths, &BuildOptions::default()).await.map_err(UpError::Image)?;
        let ready = Event::ImageReady { key: built.key.clone(), took: start.elapsed() };
        self.events.emit(ready.clone());
        Ok((built, Some(Stamped::now(ready))))
    }
}

/// Adds to `run_dir`'s typed timeline what this run did before that directory existed.
fn record_earlier(run_dir: &RunDir, stamped: Option<Stamped>) {
    if let Some(s) = stamped {
        crate::events::record(run_dir, &s);
    }
}

/// Arms `cluster` for a panic of the thread that holds it (a test failing with the cluster up): a failure
/// bundle is made before the teardown and its path printed on stderr (the test's output, which nextest puts
/// in its JUnit report); with `keep` other than [`Keep::Never`] the cluster then stays (for `ttl`) and the
/// output says how to get in. A drop without a panic does nothing of this.
///
/// A drop cannot await, and the runtime of the thread that panics may be the one that is stuck in this very
/// drop: the bundle is collected on a thread of its own with a runtime of its own, over fresh SSH sessions.
pub fn bundle_on_panic(cluster: &mut Cluster, paths: Paths, bootstrap: Bootstrap, keep: Keep, ttl: Duration) {
    cluster.on_panic(move |cluster| {
        let thread = std::thread::current().name().unwrap_or("unnamed").to_string();
        let name = cluster.name().to_string();
        let reason = format!("thread '{thread}' panicked while holding cluster {name}");
        eprintln!("{reason}: making a failure bundle before the teardown");
        let started = Instant::now();
        match collect_on_a_thread(cluster, &paths, &bootstrap, &reason) {
            Ok(made) => eprintln!(
                "failure bundle: {} (and {}, {:.1} KiB, made in {:.0} s)",
                made.dir.display(),
                made.archive.display(),
                made.archive_bytes as f64 / 1024.0,
                started.elapsed().as_secs_f64()
            ),
            Err(e) => eprintln!("no failure bundle of cluster {name}: {e}"),
        }
        let kept = match keep {
            Keep::Never => Ok(false),
            Keep::Always => Ok(true),
            Keep::OnFailure => cluster.keep_for(ttl).map(|()| true),
        };
        match kept {
            Ok(true) => eprintln!("{}", how_to_get_in(&name, &paths, keep, ttl)),
            Ok(false) => eprintln!("cluster {name} is torn down now (KTHW_KEEP=on-failure keeps it to look at)"),
            Err(e) => eprintln!("cluster {name} could not be kept, so it is torn down: {}", crate::chain(&e)),
        }
    });
}

fn collect_on_a_thread(
    cluster: &Cluster,
    paths: &Paths,
    bootstrap: &Bootstrap,
    reason: &str,
) -> Result<crate::bundle::Made, String> {
    // Their connections belong to the panicking thread's runtime.
    cluster.close_sessions();
    std::thread::scope(|scope| {
        let collector = std::thread::Builder::new().name("kthw-panic-bundle".into()).spawn_scoped(scope, || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start a runtime to collect with: {e}"))?;
            let made = runtime.block_on(crate::bundle::collect_with(cluster, paths, bootstrap, Some(reason)));
            // Sessions of this runtime die with it.
            cluster.close_sessions();
            made.map_err(|e| crate::chain(&e))
        });
        match collector {
            Ok(handle) => handle.join().unwrap_or_else(|_| Err("the collection panicked".to_string())),
            Err(e) => Err(format!("cannot start a thread to collect on: {e}")),
        }
    })
}

/// What a person runs to reach kept cluster `name`, with `KTHW_HOME` in front when `paths` is not where
/// `kthw` looks by default (a test's home).
pub fn how_to_get_in(name: &str, paths: &Paths, keep: Keep, ttl: Duration) -> String {
    let kthw = match paths.state.parent() {
        Some(home) if Paths::from_env().state != paths.state && *paths == Paths::under(home.to_path_buf()) => {
            format!("KTHW_HOME={} kthw", home.display())
        }
        _ => "kthw".to_string(),
    };
    let until = match keep {
        Keep::OnFailure => format!("for {} (KTHW_KEEP_TTL)", crate::keep::span(ttl.as_secs())),
        _ => "as it was asked to be kept".to_string(),
    };
    format!(
        "cluster {name} stays up {until}: `{kthw} ssh {name} NODE`, `{kthw} kubeconfig {name}`; \
         `{kthw} down {name}` removes it, `{kthw} gc` once its time to live ends"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up_in(home: &std::path::Path) -> Up {
        Up::new(ClusterSpec::default()).paths(Paths::under(home.to_path_buf()))
    }

    #[test]
    fn without_artifacts_the_plan_refuses_naming_each_and_the_way_on() {
        let home = tempfile::tempdir().unwrap();
        let err = up_in(home.path()).until(Phase::Workers).plan().unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("the phases through workers need 7 artifacts this host lacks; no VM was booted"));
        for a in ["etcd", "kubernetes-server", "kubernetes-node", "pause", "containerd", "runc", "cni-plugins"] {
            assert!(text.contains(&format!("  - {a} (for ")), "{a} in {text}");
        }
        assert!(text.contains("etcd_from = \"debian\""), "the Debian etcd hint: {text}");
        assert!(text.contains("kthw up --partial"), "{text}");
    }

    #[test]
    fn partial_goes_as_far_as_the_artifacts_allow() {
        let home = tempfile::tempdir().unwrap();
        let plan = up_in(home.path()).partial(true).plan().unwrap();
        assert_eq!(plan.last, Phase::Kubeconfigs);
        assert_eq!(plan.blocked.as_ref().map(|(p, _)| *p), Some(Phase::Etcd));
        assert!(plan.hint(&ClusterSpec::default()).is_some());
        let plan = up_in(home.path()).until(Phase::Pki).plan().unwrap();
        assert_eq!(plan, Plan { last: Phase::Pki, blocked: None });
    }

    #[test]
    fn a_cilium_value_that_is_no_chart_key_is_refused_before_anything_boots() {
        let home = tempfile::tempdir().unwrap();
        let mut spec = ClusterSpec::default();
        spec.cilium.values.insert("kubeProxyReplacment".into(), "true".into());
        let err =
            Up::new(spec.clone()).paths(Paths::under(home.path().to_path_buf())).partial(true).plan().unwrap_err();
        assert!(
            err.to_string().contains("\"kubeProxyReplacment\" is not a value of the Cilium 1.17.4 Helm chart"),
            "{err}"
        );
        let fine = Up::new(spec).paths(Paths::under(home.path().to_path_buf())).until(Phase::Workers).partial(true);
        assert!(fine.plan().is_ok(), "no Cilium phase, no Cilium values checked");
    }

    #[test]
    fn a_kept_failure_names_its_bundle_and_how_to_get_in() {
        let source = Box::new(BootstrapError::Node { phase: Phase::Etcd, detail: "etcd exited".into() });
        let err = UpError::Phase {
            name: "lab".into(),
            run_dir: RunDir::at("/state/runs/lab"),
            kept: true,
            bundle: Some(PathBuf::from("/state/bundles/lab-20261129T120000Z")),
            source,
        };
        let text = err.to_string();
        for part in [
            "`kthw ssh lab NODE`",
            "`kthw kubeconfig lab`",
            "`kthw down lab` removes it, `kthw gc` once its time to live ends",
            "failure bundle: /state/bundles/lab-20261129T120000Z (and /state/bundles/lab-20261129T120000Z.tar.gz); \
             where the time went: /state/bundles/lab-20261129T120000Z/run/timeline.svg",
        ] {
            assert!(text.contains(part), "{part:?} in {text}");
        }
    }

    #[test]
    fn a_failed_boot_names_its_bundle_and_a_kept_test_cluster_says_how_to_get_in() {
        let source = Box::new(ClusterError::NoImage);
        let bundle = Some(PathBuf::from("/state/bundles/lab-20261129T120000Z"));
        let text = UpError::Boot { name: "lab".into(), bundle, source }.to_string();
        assert_eq!(
            text,
            "cluster lab did not come up; it was torn down\nfailure bundle: /state/bundles/lab-20261129T120000Z \
             (and /state/bundles/lab-20261129T120000Z.tar.gz): the nodes' consoles are in its run/nodes/*/console.log, \
             where the time went in its run/timeline.svg"
        );
        let text = UpError::Boot { name: "lab".into(), bundle: None, source: Box::new(ClusterError::NoImage) };
        assert_eq!(text.to_string(), "cluster lab did not come up");

        let home = tempfile::tempdir().unwrap();
        let paths = Paths::under(home.path().to_path_buf());
        let ttl = Duration::from_secs(2 * 3600);
        let text = how_to_get_in("lab", &paths, Keep::OnFailure, ttl);
        let kthw = format!("KTHW_HOME={} kthw", home.path().display());
        for part in [
            "cluster lab stays up for 2 h 0 min (KTHW_KEEP_TTL)".to_string(),
            format!("`{kthw} ssh lab NODE`"),
            format!("`{kthw} kubeconfig lab`"),
            format!("`{kthw} down lab` removes it"),
        ] {
            assert!(text.contains(&part), "{part:?} in {text}");
        }
    }

    #[test]
    fn the_name_defaults_to_the_specs() {
        assert_eq!(Up::new(ClusterSpec::default()).cluster_name(), "kthw");
        assert_eq!(Up::new(ClusterSpec::default()).name("bug-1234").cluster_name(), "bug-1234");
    }
}
