//! The reaper: removes what runs whose owner died left behind (libvirt objects first, then run directories),
//! and never anything of a live run or a cluster kept for a person. Runs at every `up` and as `kthw gc`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::state::{ClusterState, STATE_FILE};
use super::teardown::remove_run_dir;
use super::ClusterError;
use crate::paths::Paths;
use crate::virt::{self, reap, Ownership, VirtError};

/// A run directory with no state file is debris once it is this old: `up` writes the state file right
/// after creating the directory.
const STATELESS_GRACE: Duration = Duration::from_secs(60);

/// What a reaping removed.
#[derive(Debug, Default)]
pub struct Reaped {
    pub objects: Vec<reap::Owned>,
    pub run_dirs: Vec<PathBuf>,
}

/// Reaps dead runs' libvirt objects at `uri` (whoever's run directory they name) and dead runs' directories
/// under `paths`.
pub async fn gc(paths: &Paths, uri: &str) -> Result<Reaped, ClusterError> {
    let (paths, uri) = (paths.clone(), uri.to_string());
    tokio::task::spawn_blocking(move || gc_blocking(&paths, &uri))
        .await
        .map_err(|e| ClusterError::Virt(VirtError::Join(e.to_string())))?
}

fn gc_blocking(paths: &Paths, uri: &str) -> Result<Reaped, ClusterError> {
    let conn = virt::connect::open(uri)?;
    let objects = reap::reap(&conn, still_wanted)?;
    let mut run_dirs = Vec::new();
    // A dead run's directory goes too when its objects named one outside `paths` (another KTHW_HOME).
    let mut candidates: Vec<PathBuf> = objects.iter().map(|o| o.ownership.run_dir.clone()).collect();
    candidates.extend(run_dirs_under(paths));
    candidates.sort();
    candidates.dedup();
    for dir in candidates {
        if dir_is_dead(&dir) {
            remove_run_dir(&dir)?;
            tracing::debug!(dir = %dir.display(), "reaped run directory");
            run_dirs.push(dir);
        }
    }
    Ok(Reaped { objects, run_dirs })
}

/// A libvirt object stays while its owner runs or its run directory says the cluster was kept.
fn still_wanted(o: &Ownership) -> bool {
    if o.owner.is_alive() {
        return true;
    }
    ClusterState::read(&o.run_dir).is_ok_and(|s| s.id == o.cluster_id && s.kept)
}

fn run_dirs_under(paths: &Paths) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(paths.runs()) else { return Vec::new() };
    entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect()
}

/// Only directories that are kthw run directories (they hold, or recently should have held, a state file)
/// and whose run is over.
fn dir_is_dead(dir: &Path) -> bool {
    match ClusterState::read(dir) {
        Ok(state) => !state.is_live(),
        Err(_) if dir.join(STATE_FILE).exists() => false,
        Err(_) => {
            let is_run_dir = dir.join("nodes").is_dir() || dir.parent().is_some_and(|p| p.ends_with("runs"));
            let age = std::fs::metadata(dir).and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
            is_run_dir && age.is_some_and(|a| a > STATELESS_GRACE)
        }
    }
}

/// Every cluster with a run directory under `paths`, by name.
pub fn list(paths: &Paths) -> Vec<Result<ClusterState, ClusterError>> {
    let mut dirs = run_dirs_under(paths);
    dirs.sort();
    dirs.iter().map(|d| ClusterState::read(d)).collect()
}
