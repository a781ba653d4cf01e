//! The reaper: removes what runs whose owner died left behind (libvirt objects first, then run directories),
//! and never anything of a live run or a cluster kept for a person. Runs at every `up` and as `kthw gc`.

use std::path::{Path, PathBuf};

use super::state::ClusterState;
use super::teardown::remove_run_dir;
use super::ClusterError;
use crate::paths::Paths;
use crate::rundir::RunDir;
use crate::virt::{self, reap, Ownership, VirtError};

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
            remove_run_dir(&RunDir::at(&dir))?;
            tracing::debug!(dir = %dir.display(), "reaped run directory");
            run_dirs.push(dir);
        }
    }
    for staging in RunDir::dead_staging(&paths.runs()) {
        std::fs::remove_dir_all(&staging).map_err(|e| ClusterError::io("remove", &staging, e))?;
        tracing::debug!(dir = %staging.display(), "reaped the staging directory of a run killed at birth");
        run_dirs.push(staging);
    }
    Ok(Reaped { objects, run_dirs })
}

/// A libvirt object stays while its owner runs or its run directory says the cluster was kept (and its time
/// to live has not run out).
fn still_wanted(o: &Ownership) -> bool {
    if o.owner.is_alive() {
        return true;
    }
    ClusterState::read(&RunDir::at(&o.run_dir)).is_ok_and(|s| s.id == o.cluster_id && s.is_live())
}

fn run_dirs_under(paths: &Paths) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(paths.runs()) else { return Vec::new() };
    entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect()
}

/// Only directories with a readable state file whose run is over. A directory without one is not known to
/// be a run directory (a run directory is born with its state file), so it is never touched.
fn dir_is_dead(dir: &Path) -> bool {
    ClusterState::read(&RunDir::at(dir)).is_ok_and(|state| !state.is_live())
}

/// Every cluster with a run directory under `paths`, by name; an unreadable state file is reported as such.
pub fn list(paths: &Paths) -> Vec<Result<ClusterState, ClusterError>> {
    let mut dirs: Vec<RunDir> =
        run_dirs_under(paths).into_iter().map(RunDir::at).filter(|d| d.state_file().exists()).collect();
    dirs.sort_by(|a, b| a.root().cmp(b.root()));
    dirs.iter().map(ClusterState::read).collect()
}
