//! What bringing a cluster up does, as values: one [`Event`] per thing done or waited on, and the [`Stamped`]
//! record of it that a run directory's typed timeline (`timeline.jsonl`) keeps. Below both the emitter
//! ([`crate::events`]) and the picture ([`crate::timeline`]), which each read this vocabulary and neither
//! the other.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::boot_stage::BootStage;
use crate::phase::Phase;
use crate::rundir::RunDir;

/// A wait shorter than this is not worth a bar of its own in the picture (nor a line in the timeline).
pub const WAIT_WORTH_DRAWING: Duration = Duration::from_secs(1);

/// One thing `Up` did or is waiting on. Durations are measured with a monotonic clock where they began, so a
/// reader places an event that ended at `ms` as having begun at `ms - took`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Event {
    /// No node image for this recipe yet: building it.
    ImageBuilding,
    ImageReady {
        key: String,
        took: Duration,
    },
    /// The acceleration chosen, and why; `probe` is how long the probe took when it ran for this run (none
    /// when the verdict was remembered from earlier in this host boot, or forced).
    Accel {
        accel: String,
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        probe: Option<Duration>,
    },
    /// The cluster failed to start under KVM (why): it is torn down and brought up again under TCG.
    AccelFallback {
        reason: String,
    },
    /// A node's domain started; it is booting.
    NodeBooting {
        node: String,
    },
    /// A node's boot stalled: its console showed nothing new for `quiet` while in `stage`, before sshd, `took`
    /// after this attempt's domain started. `attempt` of `attempts`; unless it was the last, the node's
    /// domain is started again on a fresh overlay (a [`Event::NodeBooting`] follows).
    NodeStalled {
        node: String,
        stage: BootStage,
        quiet: Duration,
        took: Duration,
        attempt: u32,
        attempts: u32,
        /// The console's last line before it went quiet.
        last: String,
    },
    /// A node's boot failed other than by stalling (it did not answer SSH in time, its domain stopped): `took`
    /// after this attempt's domain started, and why.
    NodeFailed {
        node: String,
        took: Duration,
        why: String,
    },
    /// A node answers SSH; `took` is from its domain's (first) start.
    NodeUp {
        node: String,
        took: Duration,
    },
    /// A node of a golden snapshot's copy runs again, answers SSH and has its clock set; `took` is from the
    /// restore's start, `clock_lag` how far its clock was behind.
    NodeRestored {
        node: String,
        took: Duration,
        clock_lag: Duration,
    },
    PhaseBegins {
        phase: Phase,
    },
    PhaseEnds {
        phase: Phase,
        took: Duration,
        changed: usize,
    },
    PhaseFailed {
        phase: Phase,
        took: Duration,
    },
    /// A wait that is taking a while: what for, on which node, how long so far, and what the check last said.
    Waiting {
        phase: Phase,
        node: String,
        what: String,
        waited: Duration,
        last: String,
    },
    /// A wait of at least [`WAIT_WORTH_DRAWING`] ended: what for, on which node, how long, and whether what it
    /// waited for came (`false`: it gave up).
    Waited {
        phase: Phase,
        node: String,
        what: String,
        took: Duration,
        ok: bool,
    },
    /// Anything else a person watching should know (a skipped phase, a kept cluster).
    Note(String),
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = |d: &Duration| format!("{:.1} s", d.as_secs_f64());
        match self {
            Event::ImageBuilding => write!(f, "image: building the node image (about 1.5 minutes the first time)"),
            Event::ImageReady { key, took } => write!(f, "image: {key} ready after {}", s(took)),
            Event::Accel { accel, reason, probe: None } => write!(f, "accel: {accel} ({reason})"),
            Event::Accel { accel, reason, probe: Some(took) } => {
                write!(f, "accel: {accel} ({reason}; the probe took {})", s(took))
            }
            Event::AccelFallback { reason } => write!(f, "accel: KVM failed ({reason}); retrying under TCG"),
            Event::NodeBooting { node } => write!(f, "node {node}: booting"),
            Event::NodeStalled { node, stage, quiet, took, attempt, attempts, last } => {
                write!(
                    f,
                    "node {node}: boot {attempt} of {attempts} stalled {} after {}: nothing new on its console for {}",
                    stage.describe(),
                    s(took),
                    s(quiet)
                )?;
                if !last.is_empty() {
                    write!(f, " (last: {last})")?;
                }
                if attempt < attempts {
                    write!(f, "; starting it again on a fresh overlay")
                } else {
                    write!(f, "; giving up")
                }
            }
            Event::NodeFailed { node, took, why } => write!(f, "node {node}: boot failed after {}: {why}", s(took)),
            Event::NodeUp { node, took } => write!(f, "node {node}: answers SSH after {}", s(took)),
            Event::NodeRestored { node, took, clock_lag } => write!(
                f,
                "node {node}: restored, answers SSH after {}; clock was {} behind, set",
                s(took),
                s(clock_lag)
            ),
            Event::PhaseBegins { phase } => write!(f, "phase {phase}: begins ({})", phase.describe()),
            Event::PhaseEnds { phase, took, changed } => {
                write!(f, "phase {phase}: done after {}, {changed} files installed", s(took))
            }
            Event::PhaseFailed { phase, took } => write!(f, "phase {phase}: failed after {}", s(took)),
            Event::Waiting { phase, node, what, waited, last } => {
                let last = last.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
                write!(f, "phase {phase}: on {node}, waiting {} for {what}", s(waited))?;
                if !last.is_empty() {
                    write!(f, "; last: {last}")?;
                }
                Ok(())
            }
            Event::Waited { phase, node, what, took, ok: true } => {
                write!(f, "phase {phase}: on {node}, waited {} for {what}", s(took))
            }
            Event::Waited { phase, node, what, took, ok: false } => {
                write!(f, "phase {phase}: on {node}, gave up waiting for {what} after {}", s(took))
            }
            Event::Note(n) => f.write_str(n),
        }
    }
}

/// An event as the run's typed timeline keeps it: when it happened, in milliseconds since the Unix epoch
/// (the wall clock, so that records written by several processes, `kthw up` then a test's later phases,
/// line up), and what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stamped {
    pub ms: u64,
    pub event: Event,
}

impl Stamped {
    pub fn now(event: Event) -> Stamped {
        Stamped::at(SystemTime::now(), event)
    }

    pub fn at(at: SystemTime, event: Event) -> Stamped {
        Stamped { ms: unix_ms(at), event }
    }

    /// Whether the picture has something new to show once this is recorded: a bar ended.
    pub fn ends_something(&self) -> bool {
        matches!(
            self.event,
            Event::ImageReady { .. }
                | Event::NodeUp { .. }
                | Event::NodeStalled { .. }
                | Event::NodeFailed { .. }
                | Event::NodeRestored { .. }
                | Event::PhaseEnds { .. }
                | Event::PhaseFailed { .. }
        )
    }
}

/// Milliseconds since the Unix epoch, as the typed timeline stamps events.
pub fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Every record of `dir`'s typed timeline, oldest first; lines that do not parse (a newer kthw's events,
/// a line cut by a crash) are skipped.
pub fn read(dir: &RunDir) -> Vec<Stamped> {
    let text = std::fs::read_to_string(dir.timeline_records()).unwrap_or_default();
    text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}
