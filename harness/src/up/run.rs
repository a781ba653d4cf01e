//! The sequence itself: the image, a golden copy or a boot, the phases, a golden save, and the handle.

use std::future::Future;
use std::time::Instant;

use super::{bundle_on_panic, golden_through, Keep, Plan, Running, Up, UpError};
use crate::bootstrap::{Bootstrap, PhaseReport};
use crate::cluster::{Cluster, UpOptions};
use crate::events::{Event, Stamped};
use crate::golden::{self, GoldenError, KeyLock};
use crate::image::{self, BuildOptions, NodeImage};
use crate::phase::Phase;
use crate::rundir::RunDir;

impl Up {
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
        let through = golden_through(plan.last, self.run_from, self.fresh);
        let rerun = self.run_from.filter(|from| *from <= plan.last);
        if let Some(from) = rerun {
            self.events.emit(Event::Note(match through {
                Some(t) => format!(
                    "phases {from} through {} run here, never from a golden snapshot; one may stand in for phases \
                     through {t} only",
                    plan.last
                ),
                None => format!("every phase from {from} through {} runs here: booting, no golden snapshot", plan.last),
            }));
        }
        let golden = match through {
            Some(t) => Some(self.golden_inputs(&image, t).await?),
            None => None,
        };
        let mut building = None;
        let mut restored_before = None;
        if let Some(inputs) = &golden {
            let key = inputs.key();
            let restored = tokio::select! {
                r = self.restore_golden(&key, &name) => r,
                signal = &mut cancel => return Err(UpError::Interrupted { signal, name }),
            };
            if let Some(mut cluster) = restored? {
                self.keep_if_asked(&mut cluster)?;
                record_earlier(cluster.run_dir(), image_built.take());
                match (rerun, through) {
                    (Some(from), Some(t)) => {
                        self.events.with_timeline(cluster.run_dir()).emit(Event::Note(format!(
                            "phases through {t} restored from golden snapshot {key}; phases {from} through {} run \
                             here",
                            plan.last
                        )));
                        restored_before = Some((cluster, t));
                    }
                    _ => return Ok(self.running(cluster, plan, Vec::new(), self.bootstrap())),
                }
            } else if rerun.is_some() {
                self.events.emit(Event::Note(format!(
                    "no golden snapshot of phase {}: booting, every phase runs here",
                    through.unwrap_or(plan.last)
                )));
            } else if self.save_golden {
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
        let (mut cluster, done) = match restored_before {
            Some((cluster, through)) => (cluster, through),
            None => (self.boot(&name, image, &mut image_built, &mut cancel).await?, Phase::Nodes),
        };
        let events = self.events.with_timeline(cluster.run_dir());
        if let Some(lock) = self.lock.as_ref().filter(|_| self.spec.versions.as_preset().is_none()) {
            let lock_err = |e| UpError::Lock { name: name.clone(), source: Box::new(e) };
            lock.write(&cluster.run_dir().lock()).map_err(lock_err)?;
        }
        if self.keep == Keep::Always {
            cluster.keep_for(self.keep_ttl).map_err(|e| UpError::Keep { name: name.clone(), source: Box::new(e) })?;
        }
        let bootstrap = self.bootstrap();
        let ran = tokio::select! {
            ran = bootstrap.run_after(&cluster, done, plan.last, &events) => ran,
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

    /// Boots the nodes on `image`: the cluster whose phases then run, or why not. Interrupted by `cancel`,
    /// what was created is removed (dropping the boot future drops its teardown guard).
    async fn boot(
        &self,
        name: &str,
        image: NodeImage,
        image_built: &mut Option<Stamped>,
        cancel: &mut std::pin::Pin<&mut impl Future<Output = &'static str>>,
    ) -> Result<Cluster, UpError> {
        let options = UpOptions {
            image: Some(image),
            uri: self.uri.clone(),
            boot_deadline: self.boot_deadline,
            events: self.events.clone(),
        };
        let cluster = tokio::select! {
            up = Cluster::boot(&self.spec, name, &self.paths, options) => match up {
                Ok(cluster) => cluster,
                Err(failed) => {
                    if let Some(cluster) = &failed.cluster {
                        record_earlier(cluster.run_dir(), image_built.take());
                    }
                    return Err(self.boot_failed(name, failed).await);
                }
            },
            signal = cancel => return Err(UpError::Interrupted { signal, name: name.to_string() }),
        };
        record_earlier(cluster.run_dir(), image_built.take());
        Ok(cluster)
    }

    /// The handle to return, armed for a panic when asked.
    pub(super) fn running(
        &self,
        mut cluster: Cluster,
        plan: Plan,
        reports: Vec<PhaseReport>,
        bootstrap: Bootstrap,
    ) -> Running {
        // Drawn once more at the end whatever was drawn before, so the picture holds every last event.
        crate::timeline::write_svg(cluster.run_dir());
        if self.bundle_on_panic {
            bundle_on_panic(&mut cluster, self.paths.clone(), bootstrap.clone(), self.keep, self.keep_ttl);
        }
        Running { cluster, plan, reports, bootstrap }
    }

    pub(super) fn keep_if_asked(&self, cluster: &mut crate::cluster::Cluster) -> Result<(), UpError> {
        if self.keep == Keep::Always {
            let name = self.cluster_name().to_string();
            cluster.keep().map_err(|e| UpError::Keep { name, source: Box::new(e) })?;
        }
        Ok(())
    }

    /// The node image this run boots: the one given ([`Up::image`]), else the cached one, else one built now.
    pub async fn node_image(&self) -> Result<NodeImage, UpError> {
        match &self.image {
            Some(i) => Ok(i.clone()),
            None => self.cached_or_built().await.map(|(i, _)| i),
        }
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
pub(super) fn record_earlier(run_dir: &RunDir, stamped: Option<Stamped>) {
    if let Some(s) = stamped {
        crate::events::record(run_dir, &s);
    }
}
