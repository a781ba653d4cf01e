//! A golden state of the user's own: a phase's state plus a setup step of theirs, saved once and restored for
//! every later test, keyed by everything the phase's snapshot is keyed by plus a name and a version they give.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::{TestCluster, TestError};
use crate::bundle::TestRecord;
use crate::golden::{self, StateName};
use crate::image::NodeImage;
use crate::paths::Paths;
use crate::up::{Running, Up, UpError};

/// What a setup step returns: a future borrowing the cluster it sets up.
pub type SetupFuture<'a> = Pin<Box<dyn Future<Output = Result<(), TestError>> + Send + 'a>>;

/// A setup step: what it does to a fresh copy of the phase's state before that is saved.
pub type Setup = Arc<dyn for<'a> Fn(&'a TestCluster) -> SetupFuture<'a> + Send + Sync>;

/// A phase's state plus a setup step of the test's own, saved once under `name` and `version` and restored
/// for every later test that asks for the same (the same phase, spec, image, artifacts, kthw, name and
/// version).
///
/// **The version is your promise.** kthw cannot look into the setup step: change `version` whenever you
/// change what the step does, or a test restores the state the old step made. The name and version are part
/// of the snapshot's key, never just a label on it, so a new version is a new snapshot (the old one stays
/// until `kthw golden prune`).
///
/// ```no_run
/// # async fn f() -> Result<(), kthw::testkit::TestError> {
/// use kthw::phase::Phase;
/// use kthw::testkit::{Golden, TestCluster};
///
/// let with_files = Golden::new("with-my-files", "1", |c: &TestCluster| {
///     Box::pin(async move {
///         c.node("worker-node-1")?.succeed("touch /etc/mine").await?;
///         Ok(())
///     })
/// });
/// let cluster = TestCluster::at(Phase::Etcd).golden(with_files).start("sees_my_files").await?;
/// cluster.node("worker-node-1")?.succeed("test -f /etc/mine").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Golden {
    name: String,
    version: String,
    setup: Setup,
}

impl Golden {
    /// State `name` (letters, digits, `-`, `_`, `.`; part of the snapshot's directory name) at `version`,
    /// made by `setup` on a fresh copy of the phase's state.
    pub fn new(
        name: &str,
        version: &str,
        setup: impl for<'a> Fn(&'a TestCluster) -> SetupFuture<'a> + Send + Sync + 'static,
    ) -> Golden {
        Golden { name: name.to_string(), version: version.to_string(), setup: Arc::new(setup) }
    }

    /// The state's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version its setup step is at.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The name and version as the snapshot's key takes them, or why they cannot be one.
    pub fn state_name(&self) -> Result<StateName, TestError> {
        let bad = |why: &str| TestError::GoldenName {
            name: self.name.clone(),
            version: self.version.clone(),
            why: why.to_string(),
        };
        if self.name.is_empty() || self.name.len() > 40 {
            return Err(bad("a name is 1 to 40 characters"));
        }
        if !self.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
            return Err(bad("a name is letters, digits, '-', '_' and '.' (it names the snapshot's directory)"));
        }
        if self.version.trim().is_empty() {
            return Err(bad("a version is needed: it is your promise that the setup step did not change"));
        }
        Ok(StateName { name: self.name.clone(), version: self.version.clone() })
    }

    /// A running copy of this state for `up` (which says the phase, the spec, the paths and the name of the
    /// copy; `image` is its node image): restored when saved before, else made (a copy of the phase's
    /// state, the setup step, the save; once, whoever comes first, the others waiting) and then restored.
    pub(super) async fn start(
        &self,
        up: Up,
        image: &NodeImage,
        paths: &Paths,
        test: &TestRecord,
    ) -> Result<Running, TestError> {
        let up_err = |e: UpError| TestError::Up(Box::new(e));
        let golden_err = |e: golden::GoldenError| TestError::Golden {
            name: self.name.clone(),
            version: self.version.clone(),
            source: Box::new(e),
        };
        let mut inputs = up.golden_key_inputs(image).await.map_err(up_err)?;
        inputs.state = Some(self.state_name()?);
        let key = inputs.key();
        if let Some(copy) = up.restore_copy(&key).await.map_err(up_err)? {
            return Ok(copy);
        }
        let lock = golden::KeyLock::acquire(paths, &key, true, true).map_err(golden_err)?;
        if golden::store::open(paths, &key).ok().flatten().is_none() {
            let base = format!("{}-setup", up.cluster_name());
            let source = up.clone().name(base).run().await.map_err(up_err)?;
            let (keep, ttl) = crate::keep::from_env().map_err(TestError::Env)?;
            let setting_up = TestCluster::new(source, paths.clone(), test.clone(), keep, ttl);
            if let Err(e) = (self.setup)(&setting_up).await {
                // Explained like a test's failure: a bundle of the cluster the step left, kept as KTHW_KEEP says.
                let message = format!("the setup step of golden state {}: {}", self.name, crate::chain(&e));
                let failed = super::run::failed(setting_up, message).await;
                return Err(TestError::Setup {
                    name: self.name.clone(),
                    version: self.version.clone(),
                    source: Box::new(failed),
                });
            }
            let source = setting_up.into_running().map_err(|_| {
                TestError::Check(format!(
                    "golden state {}: the setup step kept a handle of the cluster it set up; it must not",
                    self.name
                ))
            })?;
            tracing::info!(key, "golden: saving the test's own state");
            let base = base_of(&source, image, paths);
            golden::save(source.cluster, inputs, paths, base, None).await.map_err(golden_err)?;
        }
        drop(lock);
        up.restore_copy(&key)
            .await
            .map_err(up_err)?
            .ok_or_else(|| golden_err(golden::GoldenError::NotFound { key: key.clone() }))
    }
}

/// What the state's disks stand on, for the snapshot's check that it is still there: the state is saved from
/// a copy of the phase's snapshot, so its frozen disks are backed by that snapshot's (which are backed by the
/// node image). When the phase's snapshot is pruned, the state's is refused as unusable and made again,
/// instead of restoring disks with a missing backing file.
fn base_of(source: &Running, image: &NodeImage, paths: &Paths) -> std::path::PathBuf {
    let origin = std::fs::read_to_string(source.cluster.run_dir().golden_origin()).ok();
    let first = source.cluster.nodes().first().map(|n| n.name.clone());
    match (origin, first) {
        (Some(key), Some(node)) => golden::store::dir(paths, key.trim()).join("nodes").join(node).join("disk.qcow2"),
        _ => std::fs::canonicalize(&image.disk).unwrap_or_else(|_| image.disk.clone()),
    }
}

impl fmt::Debug for Golden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Golden").field("name", &self.name).field("version", &self.version).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop(_: &TestCluster) -> SetupFuture<'_> {
        Box::pin(async { Ok(()) })
    }

    #[test]
    fn a_state_needs_a_plain_name_and_a_version() {
        let ok = Golden::new("with-my-files.v2_x", "1", noop).state_name().unwrap();
        assert_eq!(ok, StateName { name: "with-my-files.v2_x".into(), version: "1".into() });
        let err = Golden::new("with my files", "1", noop).state_name().unwrap_err().to_string();
        assert_eq!(
            err,
            "golden state \"with my files\" (version \"1\"): a name is letters, digits, '-', '_' and '.' (it names \
             the snapshot's directory)"
        );
        let err = Golden::new("mine", " ", noop).state_name().unwrap_err().to_string();
        assert!(err.ends_with("a version is needed: it is your promise that the setup step did not change"), "{err}");
        assert!(Golden::new("", "1", noop).state_name().is_err());
        assert!(Golden::new(&"x".repeat(41), "1", noop).state_name().is_err());
    }
}
