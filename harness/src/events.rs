//! Where events go, as the run is doing it: the image, each node's boot, each phase, and every wait that takes
//! a while (on what, for how long, what it last saw), as [`crate::event`] names them. The CLI renders them
//! live, tests log them, and the run directory keeps them as the run's timeline: a line each for a person
//! (`timeline.log`), a JSON record each with its time in milliseconds for programs and the picture
//! (`timeline.jsonl`, [`Stamped`]), and the picture itself (`timeline.svg`, [`crate::timeline`]), drawn anew
//! whenever something ends.

use std::time::SystemTime;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

pub use crate::event::{read, unix_ms, Event, Stamped, WAIT_WORTH_DRAWING};
use crate::rundir::RunDir;

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
        self.emit_at(event, SystemTime::now())
    }

    /// [`Events::emit`] of an event that happened `at`, told later (when its end was measured elsewhere).
    pub fn emit_at(&self, event: Event, at: SystemTime) {
        tracing::debug!("{event}");
        if let Some(dir) = &self.timeline {
            let stamped = Stamped::at(at, event.clone());
            dir.log_timeline(&format!("{} {event}", stamped.ms / 1000));
            record(dir, &stamped);
        }
        if let Some(tx) = &self.listener {
            // A listener that went away (the CLI ended its renderer) is no reason to stop bringing a cluster up.
            let _ = tx.send(event);
        }
    }
}

/// Appends `stamped` to `dir`'s typed timeline (not the person's: an event recorded after the fact, such as
/// the image built before the run directory existed, would read out of order there), and draws the picture
/// again when a bar ended. Neither is a reason to stop bringing a cluster up: a failure is logged.
pub fn record(dir: &RunDir, stamped: &Stamped) {
    let line = serde_json::to_string(stamped).expect("an event serializes");
    if let Err(e) = dir.append_timeline_record(&line) {
        tracing::warn!(path = %dir.timeline_records().display(), error = %e, "cannot append to the run's typed timeline");
    }
    if stamped.ends_something() {
        crate::timeline::write_svg(dir);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::phase::Phase;

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
        let typed = read(&dir);
        assert_eq!(
            typed.iter().map(|s| &s.event).collect::<Vec<_>>()[..2],
            [&Event::PhaseBegins { phase: Phase::Etcd }, &waiting]
        );
        assert!(typed.windows(2).all(|w| w[0].ms <= w[1].ms) && typed[0].ms > 1_700_000_000_000, "{typed:?}");
        assert!(!dir.timeline_svg().exists(), "nothing ended yet: no picture");
        events.emit(Event::PhaseEnds { phase: Phase::Etcd, took: Duration::from_millis(1500), changed: 2 });
        let svg = std::fs::read_to_string(dir.timeline_svg()).unwrap();
        assert!(svg.starts_with("<?xml") && svg.contains(">etcd<"), "{svg}");
    }

    #[test]
    fn a_typed_record_reads_back_and_skips_what_it_cannot_parse() {
        let home = tempfile::tempdir().unwrap();
        let dir = RunDir::at(home.path());
        let up = Stamped {
            ms: 1_733_000_000_123,
            event: Event::NodeUp { node: "cp".into(), took: Duration::from_millis(31_250) },
        };
        record(&dir, &up);
        dir.append_timeline_record("{\"ms\":1,\"event\":{\"from-a-newer-kthw\":{}}}").unwrap();
        record(&dir, &Stamped { ms: 1_733_000_000_200, event: Event::Note("a <note> & \"quotes\"".into()) });
        let back = read(&dir);
        assert_eq!(back.len(), 2, "{back:?}");
        assert_eq!(back[0], up);
        let line = std::fs::read_to_string(dir.timeline_records()).unwrap();
        assert!(line.starts_with("{\"ms\":1733000000123,\"event\":{\"node-up\":{\"node\":\"cp\",\"took\":"), "{line}");
    }
}
