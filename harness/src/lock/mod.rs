//! A lock: a spec's versions resolved once into every file's URL with the checksum its publisher put beside
//! it, and every image's digest from where its user takes it. Later runs verify against the lock and never
//! resolve again; a lock whose versions are no longer the spec's is an error naming what changed.
//!
//! The presets' locks ship with kthw (`harness/artifacts.toml`, whose entries have the same form, each sum
//! held against its publisher by `artifacts::published_tests`). Any other versions are locked by
//! `kthw versions lock` into `<spec>.lock` beside the spec file, the way Cargo.lock sits beside Cargo.toml.

mod chart;
mod registry;
mod resolve;
pub mod stand_in;
mod sums;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::artifacts::{Artifact, ArtifactError, Manifest};
use crate::spec::{VersionSet, VersionSpec, Versions};

pub use chart::{chart_images, index_entry, top_level_keys, ChartImage};
pub use registry::{manifest_digest, RegistryDigest};
pub use resolve::{Resolved, Resolver, Sources};
pub use sums::{parse_sum_file, SumForm};

/// The lock format this kthw writes and reads; a lock of a newer one is refused.
pub const FORMAT: u32 = 1;

/// A resolved set of versions: what `kthw versions lock` writes and every later run verifies against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    pub format: u32,
    /// When, by which kthw, and from where (upstream, or the mirror that served upstream's layout).
    pub resolved: String,
    /// Every component's version, as the spec named it when the lock was made.
    pub versions: Versions,
    /// The top-level keys of the locked Cilium chart's values.yaml: what `cilium.values` may set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chart_keys: Vec<String>,
    #[serde(rename = "artifact")]
    pub artifacts: Vec<Artifact>,
}

/// Why a lock cannot be had or used. Each says which file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "the versions in {} ({versions}) are no preset and have no lock: run `kthw versions lock --spec {}` \
         where upstream (or a mirror) is reachable, and keep {} beside the spec",
        spec.display(), spec.display(), lock_path(spec).display()
    )]
    NotLocked { spec: PathBuf, versions: String },
    #[error(
        "{} was resolved for other versions than {} now names ({}); nothing is re-resolved on its own: run \
         `kthw versions lock --spec {}` to resolve the new versions, or put the spec back",
        lock.display(), spec.display(), changed.join(", "), spec.display()
    )]
    Stale { lock: PathBuf, spec: PathBuf, changed: Vec<String> },
    #[error("cannot read lock {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a kthw lock: {message}; make it again with `kthw versions lock`", path.display())]
    Parse { path: PathBuf, message: String },
    #[error(
        "{} is lock format {found}, newer than this kthw reads ({FORMAT}): use the kthw that wrote it",
        path.display()
    )]
    Newer { path: PathBuf, found: u32 },
    #[error("cannot write lock {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Resolve(#[from] resolve::ResolveError),
}

/// Where the lock of the spec file `spec` lives: beside it, `lab.toml` -> `lab.lock`.
pub fn lock_path(spec: &Path) -> PathBuf {
    spec.with_extension("lock")
}

impl Lock {
    /// The lock kthw ships for a preset: its entries of `harness/artifacts.toml`.
    pub fn preset(set: VersionSet) -> Lock {
        let artifacts = Manifest::pinned().for_set(set).artifacts;
        Lock {
            format: FORMAT,
            resolved: format!(
                "shipped with kthw: the {set} preset, every sum transcribed from its publisher \
                 (harness/artifacts.toml, held by artifacts::published_tests)"
            ),
            versions: set.pins(),
            chart_keys: Vec::new(),
            artifacts,
        }
    }

    /// The artifacts the lock pins, as the rest of kthw takes them.
    pub fn manifest(&self) -> Manifest {
        Manifest { artifacts: self.artifacts.clone() }
    }

    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).expect("a lock serializes");
        format!(
            "# kthw versions lock: every file with the checksum its publisher put beside it, every image with the\n\
             # digest its user takes it by. Later runs verify against this file; do not edit it, run\n\
             # `kthw versions lock` again when the spec's versions change.\n{body}"
        )
    }

    pub fn parse(text: &str, path: &Path) -> Result<Lock, LockError> {
        let bad = |message: String| LockError::Parse { path: path.to_path_buf(), message };
        let lock: Lock = toml::from_str(text).map_err(|e| bad(e.message().trim_end().to_string()))?;
        if lock.format > FORMAT {
            return Err(LockError::Newer { path: path.to_path_buf(), found: lock.format });
        }
        Manifest::check(&lock.artifacts, &path.display().to_string()).map_err(|e| match e {
            ArtifactError::Manifest { message, .. } => bad(message),
            other => bad(other.to_string()),
        })?;
        Ok(lock)
    }

    pub fn read(path: &Path) -> Result<Lock, LockError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| LockError::Read { path: path.to_path_buf(), source })?;
        Lock::parse(&text, path)
    }

    /// Writes the lock to `path` whole or not at all (a temporary file renamed into place).
    pub fn write(&self, path: &Path) -> Result<(), LockError> {
        let err = |source| LockError::Write { path: path.to_path_buf(), source };
        let tmp = path.with_extension("lock.part");
        std::fs::write(&tmp, self.to_toml()).map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)
    }

    /// What differs between the versions this lock was made for and `versions`: empty when it still applies.
    pub fn changes(&self, versions: &Versions) -> Vec<String> {
        self.versions.differences(versions)
    }
}

/// The manifest of the preset that `versions` names its versions over: what `Up` uses when given no lock (it
/// refuses versions that are no preset then).
pub fn preset_manifest(versions: &VersionSpec) -> Manifest {
    Lock::preset(versions.preset).manifest()
}

/// The lock `cluster` was brought up with: its preset's, or the one `Up` wrote into its run directory. A cluster
/// of versions that are no preset whose run directory has none (brought up by an older kthw) gets its preset's,
/// said in the log: its artifacts then list as missing rather than as another set's.
pub fn of_cluster(cluster: &crate::cluster::Cluster) -> Lock {
    let versions = &cluster.spec().versions;
    if let Some(set) = versions.as_preset() {
        return Lock::preset(set);
    }
    let path = cluster.run_dir().lock();
    Lock::read(&path).unwrap_or_else(|e| {
        tracing::warn!(cluster = %cluster.name(), error = %e, "no lock of the cluster's versions; using its preset's");
        Lock::preset(versions.preset)
    })
}

/// The artifacts a spec's versions pin: a preset's shipped lock, else the lock beside the spec file `spec`
/// (None: a spec with no file, which can only name a preset). A missing or stale lock is an error; nothing is
/// resolved here.
pub fn for_spec(versions: &VersionSpec, spec: Option<&Path>) -> Result<Lock, LockError> {
    if let Some(set) = versions.as_preset() {
        return Ok(Lock::preset(set));
    }
    let spec = spec.unwrap_or(Path::new("<no spec file>"));
    let path = lock_path(spec);
    if !path.is_file() {
        return Err(LockError::NotLocked { spec: spec.to_path_buf(), versions: versions.describe() });
    }
    let lock = Lock::read(&path)?;
    let changed = lock.changes(&versions.pins());
    if !changed.is_empty() {
        return Err(LockError::Stale { lock: path, spec: spec.to_path_buf(), changed });
    }
    Ok(lock)
}

#[cfg(test)]
mod tests;
