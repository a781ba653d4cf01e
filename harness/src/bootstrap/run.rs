//! Running phases against a cluster: each one timed, announced as events, marked in every node's log,
//! recorded in the run directory, and run on the nodes it concerns in parallel (the phase decides).

use std::time::Instant;

use super::context::{Bootstrap, Ctx};
use super::{phases, BootstrapError};
use crate::cluster::Cluster;
use crate::events::{Event, Events};
use crate::phase::Phase;
use crate::rundir::{Outcome, PhaseRecord};

/// What one phase did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseReport {
    pub phase: Phase,
    pub took: std::time::Duration,
    /// `node:path` of every file the phase installed or replaced on a node; empty when it changed nothing.
    pub changed: Vec<String>,
}

impl Bootstrap {
    /// Runs every phase after `nodes` through `until` (the cluster's nodes are up already).
    pub async fn run_through(
        &self,
        cluster: &Cluster,
        until: Phase,
        events: &Events,
    ) -> Result<Vec<PhaseReport>, BootstrapError> {
        self.run_after(cluster, Phase::Nodes, until, events).await
    }

    /// Runs every phase after `done` through `until` (the cluster holds every phase through `done`: booted,
    /// or restored from a golden snapshot of `done`).
    pub async fn run_after(
        &self,
        cluster: &Cluster,
        done: Phase,
        until: Phase,
        events: &Events,
    ) -> Result<Vec<PhaseReport>, BootstrapError> {
        let mut reports = Vec::new();
        for phase in until.through().filter(|p| *p > done) {
            reports.push(self.run(cluster, phase, events).await?);
        }
        Ok(reports)
    }

    /// Runs one phase. Phases are idempotent: running one again changes nothing and succeeds. Its events
    /// reach the cluster's timeline whoever calls (a test running phases by hand too), so that the run's
    /// picture holds every phase run on the cluster.
    pub async fn run(&self, cluster: &Cluster, phase: Phase, events: &Events) -> Result<PhaseReport, BootstrapError> {
        let events = &events.with_timeline(cluster.run_dir());
        let start = Instant::now();
        mark(cluster, &format!("phase {phase} begins"));
        events.emit(Event::PhaseBegins { phase });
        let result = phases::run(&Ctx { b: self, cluster, phase, events }).await;
        let took = start.elapsed();
        let (outcome, changed) = match &result {
            Ok(changed) => (Outcome::Ok, Some(changed.len())),
            Err(_) => (Outcome::Failed, None),
        };
        events.emit(match changed {
            Some(changed) => Event::PhaseEnds { phase, took, changed },
            None => Event::PhaseFailed { phase, took },
        });
        let ended = if outcome == Outcome::Ok { "done" } else { "failed" };
        mark(cluster, &format!("phase {phase} {ended} after {took:.2?}"));
        let record = PhaseRecord {
            phase,
            ended: crate::virt::metadata::unix_now(),
            seconds: took.as_secs_f64(),
            outcome,
            changed,
        };
        if let Err(e) = cluster.run_dir().record_phase(&record) {
            tracing::warn!(error = %e, "cannot record the phase in the run directory");
        }
        result.map(|changed| PhaseReport { phase, took, changed })
    }
}

/// A line in every node's log, so that a person reading it sees where each phase begins and ends.
fn mark(cluster: &Cluster, what: &str) {
    for n in cluster.nodes() {
        let log = cluster.run_dir().node(&n.name).ssh_log();
        let line = format!("=== kthw: {what} ===\n");
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
        if let Err(e) = written {
            tracing::warn!(path = %log.display(), error = %e, "cannot append to a node's log");
        }
    }
}
