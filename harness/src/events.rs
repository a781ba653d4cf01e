//! What bringing a cluster up is doing, as a stream of events: the image, each node's boot, each phase, and
//! every wait that takes a while (on what, for how long, what it last saw). The CLI renders them live, tests
//! log them, and the run directory keeps them as the run's timeline.

use std::fmt;
use std::time::Duration;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::phase::Phase;
use crate::rundir::RunDir;

/// One thing `Up` did or is waiting on.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// No node image for this recipe yet: building it.
    ImageBuilding,
    ImageReady {
        key: String,
        took: Duration,
    },
    /// The acceleration chosen, and why.
    Accel {
        accel: String,
        reason: String,
    },
    /// The cluster failed to start under KVM (why): it is torn down and brought up again under TCG.
    AccelFallback {
        reason: String,
    },
    /// A node's domain started; it is booting.
    NodeBooting {
        node: String,
    },
    /// A node answers SSH.
    NodeUp {
        node: String,
        took: Duration,
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
    /// Anything else a person watching should know (a skipped phase, a kept cluster).
    Note(String),
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = |d: &Duration| format!("{:.1} s", d.as_secs_f64());
        match self {
            Event::ImageBuilding => write!(f, "image: building the node image (about 1.5 minutes the first time)"),
            Event::ImageReady { key, took } => write!(f, "image: {key} ready after {}", s(took)),
            Event::Accel { accel, reason } => write!(f, "accel: {accel} ({reason})"),
            Event::AccelFallback { reason } => write!(f, "accel: KVM failed ({reason}); retrying under TCG"),
            Event::NodeBooting { node } => write!(f, "node {node}: booting"),
            Event::NodeUp { node, took } => write!(f, "node {node}: answers SSH after {}", s(took)),
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
            Event::Note(n) => f.write_str(n),
        }
    }
}

/// Where events go: an optional listener and an optional timeline file. Cloning shares both; the default
/// only logs.
#[derive(Debug, Clone, Default)]
pub struct Events {
    listener: Option<UnboundedSender<Event>>,
    timeline: Option<RunDir>,
}

impl Events {
    /// Events that also reach the returned receiver.
    pub fn channel() -> (Events, UnboundedReceiver<Event>) {
        let (tx, rx) = unbounded_channel();
        (Events { listener: Some(tx), timeline: None }, rx)
    }

    /// The same events, also appended to `run_dir`'s timeline.
    pub fn with_timeline(&self, run_dir: &RunDir) -> Events {
        Events { listener: self.listener.clone(), timeline: Some(run_dir.clone()) }
    }

    pub fn emit(&self, event: Event) {
        tracing::debug!("{event}");
        if let Some(dir) = &self.timeline {
            dir.log_timeline(&format!("{} {event}", crate::virt::metadata::unix_now()));
        }
        if let Some(tx) = &self.listener {
            // A listener that went away (the CLI ended its renderer) is no reason to stop bringing a cluster up.
            let _ = tx.send(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_reach_the_listener_and_the_timeline() {
        let home = tempfile::tempdir().unwrap();
        let dir = RunDir::at(home.path());
        let (events, mut rx) = Events::channel();
        let events = events.with_timeline(&dir);
        events.emit(Event::PhaseBegins { phase: Phase::Etcd });
        let waiting = Event::Waiting {
            phase: Phase::Etcd,
            node: "control-plane-1".into(),
            what: "etcd to answer".into(),
            waited: Duration::from_secs(12),
            last: "connection refused\n\n".into(),
        };
        events.emit(waiting.clone());
        assert_eq!(rx.try_recv().unwrap(), Event::PhaseBegins { phase: Phase::Etcd });
        assert_eq!(rx.try_recv().unwrap(), waiting);
        let timeline = std::fs::read_to_string(dir.timeline()).unwrap();
        assert!(timeline.contains("phase etcd: begins (etcd serving TLS on the control plane)"), "{timeline}");
        assert!(
            timeline.contains(
                "phase etcd: on control-plane-1, waiting 12.0 s for etcd to answer; last: connection refused"
            ),
            "{timeline}"
        );
        drop(rx);
        events.emit(Event::Note("nobody listens".into()));
    }
}
