//! Taking a cluster apart: every libvirt object carrying its id, then its run directory. A [`Teardown`] does
//! it when dropped (a failed or interrupted `up`, a test's handle going out of scope) unless disarmed.
//!
//! `up` creates libvirt objects in a blocking task that a dropped future cannot stop, so creation and
//! teardown share a [`Gate`]: teardown closes it, after which nothing more is created, and waits for an
//! object being created right now before it lists what to remove.

use std::sync::{Arc, Mutex};

use super::ClusterError;
use crate::rundir::RunDir;
use crate::virt::{self, reap, VirtError};

/// Open while the cluster may still grow; closed forever by teardown.
#[derive(Debug, Clone, Default)]
pub struct Gate(Arc<Mutex<bool>>);

impl Gate {
    /// Runs `create` unless teardown has begun; teardown waits for a `create` in progress.
    pub fn create<T>(&self, create: impl FnOnce() -> Result<T, ClusterError>) -> Result<T, ClusterError> {
        let closed = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if *closed {
            return Err(ClusterError::Cancelled);
        }
        create()
    }

    fn close(&self) -> std::sync::MutexGuard<'_, bool> {
        let mut closed = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *closed = true;
        closed
    }
}

/// Removes the cluster `id` from libvirt at `uri`, then `run_dir`. Blocking.
pub fn teardown(uri: &str, id: &str, run_dir: &RunDir, gate: &Gate) -> Result<(), ClusterError> {
    let _closed = gate.close();
    let conn = virt::connect::open(uri)?;
    let removed = reap::reap(&conn, |o| o.cluster_id != id)?;
    tracing::debug!(cluster = id, objects = removed.len(), "libvirt objects removed");
    remove_run_dir(run_dir)
}

/// Stops the run's helpers, then removes its directory.
pub fn remove_run_dir(run_dir: &RunDir) -> Result<(), ClusterError> {
    run_dir.remove().map_err(|e| ClusterError::io("remove the run directory", run_dir.root(), e))
}

/// Tears the cluster down when dropped, unless disarmed.
#[derive(Debug)]
pub struct Teardown {
    pub uri: String,
    pub id: String,
    pub run_dir: RunDir,
    pub gate: Gate,
    armed: bool,
}

impl Teardown {
    pub fn arm(uri: String, id: String, run_dir: RunDir) -> Teardown {
        Teardown { uri, id, run_dir, gate: Gate::default(), armed: true }
    }

    /// The cluster stays after this handle is gone.
    pub fn disarm(mut self) {
        self.armed = false;
    }

    /// Tears down now, off the async runtime, and reports failure instead of logging it.
    pub async fn run(mut self) -> Result<(), ClusterError> {
        self.armed = false;
        let (uri, id, dir, gate) = (self.uri.clone(), self.id.clone(), self.run_dir.clone(), self.gate.clone());
        tokio::task::spawn_blocking(move || teardown(&uri, &id, &dir, &gate))
            .await
            .map_err(|e| ClusterError::Virt(VirtError::Join(e.to_string())))?
    }
}

impl Drop for Teardown {
    /// Blocking, even on an async worker thread: a drop cannot await, and leaving the cluster behind is worse
    /// than stalling one worker for the second or two the removal takes.
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        match teardown(&self.uri, &self.id, &self.run_dir, &self.gate) {
            Ok(()) => tracing::info!(cluster = %self.id, "cluster torn down"),
            Err(e) => {
                tracing::error!(cluster = %self.id, error = %e, "tearing the cluster down failed; `kthw gc` retries")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_created_once_teardown_closed_the_gate() {
        let gate = Gate::default();
        assert_eq!(gate.create(|| Ok(1)).unwrap(), 1);
        drop(gate.close());
        let mut ran = false;
        let refused = gate.clone().create(|| {
            ran = true;
            Ok(())
        });
        assert!(matches!(refused, Err(ClusterError::Cancelled)));
        assert!(!ran);
    }

    #[test]
    fn teardown_waits_for_a_creation_in_progress() {
        let gate = Gate::default();
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let creator = {
            let gate = gate.clone();
            std::thread::spawn(move || {
                gate.create(|| {
                    started_tx.send(()).unwrap();
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    Ok(std::time::Instant::now())
                })
            })
        };
        started_rx.recv().unwrap();
        let _closed = gate.close();
        let closed_at = std::time::Instant::now();
        let created_at = creator.join().unwrap().unwrap();
        assert!(created_at <= closed_at, "teardown saw the cluster before the object being created existed");
    }
}
