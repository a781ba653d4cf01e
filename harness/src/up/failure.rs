//! Failures that explain themselves: the bundle of a boot or phase that failed, the bundle of a test that
//! panicked while holding a cluster, and what a person runs to get into a kept one.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, Instant};

use super::{Keep, Up, UpError};
use crate::bootstrap::{Bootstrap, BootstrapError};
use crate::bundle::{BundleError, Made};
use crate::cluster::{BootFailure, Cluster};
use crate::events::{Event, Events};
use crate::paths::Paths;

impl Up {
    /// A boot that failed: a bundle of what the cluster left (consoles, SSH logs, domains, the timeline), then
    /// the teardown, then the error naming the bundle. A bundle that cannot be written is logged, never a
    /// reason to lose the boot's own error.
    pub(super) async fn boot_failed(&self, name: &str, failed: BootFailure) -> UpError {
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
    pub(super) async fn failure_bundle(
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
        let reason = format!("thread '{thread}' panicked while holding cluster {}", cluster.name());
        bundle_in_a_drop(cluster, &reason, |c| {
            Box::pin(crate::bundle::collect_with(c, &paths, &bootstrap, Some(&reason)))
        });
        eprintln!("{}", keep_after_failure(cluster, &paths, keep, ttl));
    });
}

/// A failure bundle being made of a cluster it borrows.
pub type Collecting<'c> = Pin<Box<dyn Future<Output = Result<Made, BundleError>> + 'c>>;

/// Makes the bundle `collect` makes from within a drop (see [`bundle_on_panic`]), saying why (`reason`) and
/// where it went on stderr; None, said, when it could not be made.
pub fn bundle_in_a_drop<'a>(
    cluster: &'a Cluster,
    reason: &str,
    collect: impl FnOnce(&'a Cluster) -> Collecting<'a> + Send,
) -> Option<Made> {
    eprintln!("{reason}: making a failure bundle before the teardown");
    let started = Instant::now();
    let made = cluster.block_on_a_thread("kthw-panic-bundle", collect).and_then(|m| m.map_err(|e| crate::chain(&e)));
    tell_bundle(cluster.name(), made, started)
}

/// Says on stderr where bundle `made` went (or why there is none); returns it.
pub fn tell_bundle(cluster: &str, made: Result<Made, String>, started: Instant) -> Option<Made> {
    match made {
        Ok(made) => {
            eprintln!(
                "failure bundle: {} (and {}, {:.1} KiB, made in {:.0} s)",
                made.dir.display(),
                made.archive.display(),
                made.archive_bytes as f64 / 1024.0,
                started.elapsed().as_secs_f64()
            );
            Some(made)
        }
        Err(e) => {
            eprintln!("no failure bundle of cluster {cluster}: {e}");
            None
        }
    }
}

/// Keeps a cluster that failed as `keep` says (for `ttl`); what a person should read about it: how to get in,
/// or that it is torn down.
pub fn keep_after_failure(cluster: &mut Cluster, paths: &Paths, keep: Keep, ttl: Duration) -> String {
    let name = cluster.name().to_string();
    let kept = match keep {
        Keep::Never => Ok(false),
        Keep::Always => Ok(true),
        Keep::OnFailure => cluster.keep_for(ttl).map(|()| true),
    };
    match kept {
        Ok(true) => how_to_get_in(&name, paths, keep, ttl),
        Ok(false) => format!("cluster {name} is torn down now (KTHW_KEEP=on-failure keeps it to look at)"),
        Err(e) => format!("cluster {name} could not be kept, so it is torn down: {}", crate::chain(&e)),
    }
}

/// The `KTHW_HOME` a person must set for `kthw` to find what lives under `paths`, when that is not where
/// `kthw` looks by default (a test's home).
pub fn home_to_name(paths: &Paths) -> Option<PathBuf> {
    let home = paths.state.parent()?;
    (Paths::from_env().state != paths.state && *paths == Paths::under(home.to_path_buf())).then(|| home.to_path_buf())
}

/// What a person runs to reach kept cluster `name`, with `KTHW_HOME` in front when `paths` is not where
/// `kthw` looks by default (a test's home).
pub fn how_to_get_in(name: &str, paths: &Paths, keep: Keep, ttl: Duration) -> String {
    let kthw = match home_to_name(paths) {
        Some(home) => format!("KTHW_HOME={} kthw", home.display()),
        None => "kthw".to_string(),
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
