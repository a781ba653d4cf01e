//! Where a run's time went, as a picture: the run directory's typed timeline ([`crate::event::Stamped`])
//! laid out as a chart ([`chart`], pure), drawn as SVG ([`svg::render`], pure, hand-written text) and kept
//! beside the timeline as `timeline.svg` ([`write_svg`]), which failure bundles carry too.
//!
//! The chart has one row for the image, one for the acceleration probe when it ran, one per node (boot to
//! SSH, or a golden restore), and one per phase run, each with the waits that took a while in rows of their
//! own beneath it. A bar that began and never ended (a phase cut short by a crash) runs to the timeline's
//! end, drawn as unfinished; a phase or wait that failed, and a node's boot that stalled (started again, or
//! given up) or failed, are drawn in the failure colour, with why in the bar's title.

pub mod svg;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::time::Duration;

use crate::event::{Event, Stamped};
use crate::phase::Phase;
use crate::rundir::RunDir;

/// What a bar stands for; each has its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Image,
    /// The acceleration probe (a KVM guest booted to see whether KVM works).
    Probe,
    Boot,
    Restore,
    Phase,
    Wait,
}

/// How a bar ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Ok,
    Failed,
    /// It began and the timeline holds no end: drawn to the timeline's end.
    Open,
}

/// One span of time, in seconds from the chart's start.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub from: f64,
    pub to: f64,
    pub kind: Kind,
    pub end: End,
    /// What a person hovering over the bar reads.
    pub title: String,
}

impl Bar {
    pub fn seconds(&self) -> f64 {
        self.to - self.from
    }
}

/// Which part of the chart a row is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    Image,
    Nodes,
    Phases,
}

/// One row: its name on the left, its bars to the right.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub group: Group,
    pub name: String,
    /// A wait, drawn indented beneath its phase.
    pub nested: bool,
    pub bars: Vec<Bar>,
}

/// The whole picture, before it is drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub title: String,
    /// The chart's start, in milliseconds since the Unix epoch.
    pub start_ms: u64,
    /// Seconds from the start to the last thing recorded.
    pub span: f64,
    pub rows: Vec<Row>,
}

/// Lays `records` out (in any order) as a chart titled `title`, drawn at `now_ms` when it is a live picture:
/// what is still unfinished then runs to that moment (a boot that failed records no event of its own at its
/// deadline; its bundle's picture, drawn after it, shows how long the nodes were waited for).
pub fn chart(title: &str, records: &[Stamped], now_ms: Option<u64>) -> Chart {
    let mut records: Vec<&Stamped> = records.iter().collect();
    records.sort_by_key(|r| r.ms);
    let began = |r: &Stamped, took: &Duration| r.ms.saturating_sub(took.as_millis() as u64);
    let start_ms = records
        .iter()
        .map(|r| match &r.event {
            Event::ImageReady { took, .. }
            | Event::Accel { probe: Some(took), .. }
            | Event::NodeStalled { took, .. }
            | Event::NodeFailed { took, .. }
            | Event::NodeUp { took, .. }
            | Event::NodeRestored { took, .. }
            | Event::PhaseEnds { took, .. }
            | Event::PhaseFailed { took, .. }
            | Event::Waited { took, .. } => began(r, took),
            Event::Waiting { waited, .. } => began(r, waited),
            _ => r.ms,
        })
        .min()
        .unwrap_or(0);
    let end_ms = records.iter().map(|r| r.ms).chain(now_ms).max().unwrap_or(start_ms);
    let at = |ms: u64| ms.saturating_sub(start_ms) as f64 / 1000.0;
    let span = at(end_ms);

    let mut b = Builder::default();
    for r in &records {
        let now = at(r.ms);
        let from = |took: &Duration| at(began(r, took));
        match &r.event {
            Event::ImageBuilding => {
                let i = b.row(Group::Image, "image", false);
                b.open(i, now, Kind::Image, "node image: building".into());
            }
            Event::ImageReady { key, took } => {
                let i = b.row(Group::Image, "image", false);
                b.close(i, from(took), now, End::Ok, Kind::Image, format!("node image {key}: ready"));
            }
            Event::NodeBooting { node } => {
                let i = b.row(Group::Nodes, node, false);
                b.open(i, now, Kind::Boot, format!("{node}: booting, not answering SSH yet"));
            }
            Event::NodeStalled { node, stage, quiet, took, attempt, attempts, last } => {
                let i = b.row(Group::Nodes, node, false);
                let then = if attempt < attempts { "started again on a fresh overlay" } else { "given up" };
                let title = format!(
                    "{node}: boot {attempt} of {attempts} stalled {}: nothing new on its console for {:.1} s \
                     (last: {last}); {then}",
                    stage.describe(),
                    quiet.as_secs_f64()
                );
                b.close(i, from(took), now, End::Failed, Kind::Boot, title);
            }
            Event::NodeFailed { node, took, why } => {
                let i = b.row(Group::Nodes, node, false);
                b.close(i, from(took), now, End::Failed, Kind::Boot, format!("{node}: boot failed: {why}"));
            }
            Event::NodeUp { node, took } => {
                let i = b.row(Group::Nodes, node, false);
                // `took` counts from the node's first start; after a retry the bar is the last boot's own.
                let retried = b.rows[i].bars.iter().any(|bar| bar.end == End::Failed);
                let from = match b.rows[i].bars.iter().rev().find(|bar| bar.end == End::Open) {
                    Some(open) if retried => open.from,
                    _ => from(took),
                };
                let title = if retried {
                    format!("{node}: boot to SSH, after a stalled boot")
                } else {
                    format!("{node}: boot to SSH")
                };
                b.close(i, from, now, End::Ok, Kind::Boot, title);
            }
            Event::NodeRestored { node, took, clock_lag } => {
                let i = b.row(Group::Nodes, node, false);
                let title =
                    format!("{node}: golden restore to SSH (clock was {:.1} s behind)", clock_lag.as_secs_f64());
                b.close(i, from(took), now, End::Ok, Kind::Restore, title);
            }
            Event::PhaseBegins { phase } => {
                let i = b.phase_row(*phase);
                b.open(i, now, Kind::Phase, format!("phase {phase}: {}", phase.describe()));
            }
            Event::PhaseEnds { phase, took, .. } | Event::PhaseFailed { phase, took } => {
                let failed = matches!(r.event, Event::PhaseFailed { .. });
                let i = b.open_phase.remove(phase).unwrap_or_else(|| b.phase_row(*phase));
                b.drop_open_waits(i);
                let (end, said) = if failed { (End::Failed, "FAILED") } else { (End::Ok, "done") };
                b.close(i, from(took), now, end, Kind::Phase, format!("phase {phase}: {}, {said}", phase.describe()));
            }
            Event::Waiting { phase, node, what, waited, .. } => {
                let i = b.wait_row(*phase, node, what);
                if b.rows[i].bars.last().is_none_or(|bar| bar.end != End::Open) {
                    b.open(i, at(began(r, waited)), Kind::Wait, format!("{phase}: waiting on {node} for {what}"));
                }
            }
            Event::Waited { phase, node, what, took, ok } => {
                let i = b.wait_row(*phase, node, what);
                let end = if *ok { End::Ok } else { End::Failed };
                let said = if *ok { "waited" } else { "gave up waiting" };
                b.close(i, from(took), now, end, Kind::Wait, format!("{phase}: on {node}, {said} for {what}"));
            }
            Event::Accel { accel, reason, probe: Some(took) } => {
                let i = b.row(Group::Image, "acceleration probe", false);
                b.close(i, from(took), now, End::Ok, Kind::Probe, format!("acceleration probe: {accel} ({reason})"));
            }
            Event::Accel { probe: None, .. } | Event::AccelFallback { .. } | Event::Note(_) => {}
        }
    }
    for row in &mut b.rows {
        for bar in row.bars.iter_mut().filter(|bar| bar.end == End::Open) {
            bar.to = span;
        }
    }
    b.rows.retain(|r| !r.bars.is_empty());
    b.rows.sort_by_key(|r| r.group);
    Chart { title: title.to_string(), start_ms, span, rows: b.rows }
}

#[derive(Default)]
struct Builder {
    rows: Vec<Row>,
    /// The row of each phase that began and has not ended.
    open_phase: HashMap<Phase, usize>,
    /// The row each phase's waits go under: the latest run of that phase.
    last_phase: HashMap<Phase, usize>,
}

impl Builder {
    /// The row named `name` in `group` (made when missing). Waits are kept apart per phase run by
    /// [`Builder::wait_row`], so a name is unique within its group.
    fn row(&mut self, group: Group, name: &str, nested: bool) -> usize {
        match self.rows.iter().position(|r| r.group == group && r.name == name && r.nested == nested) {
            Some(i) => i,
            None => self.push(Row { group, name: name.to_string(), nested, bars: Vec::new() }),
        }
    }

    fn push(&mut self, row: Row) -> usize {
        self.rows.push(row);
        self.rows.len() - 1
    }

    /// A new row for a run of `phase` (a phase run again gets a row of its own, after its waits' rows).
    fn phase_row(&mut self, phase: Phase) -> usize {
        let i =
            self.push(Row { group: Group::Phases, name: phase.name().to_string(), nested: false, bars: Vec::new() });
        self.open_phase.insert(phase, i);
        self.last_phase.insert(phase, i);
        i
    }

    /// The row of this wait under the latest run of `phase`, placed right after that run's rows.
    fn wait_row(&mut self, phase: Phase, node: &str, what: &str) -> usize {
        let parent = match self.last_phase.get(&phase) {
            Some(&p) => p,
            None => self.phase_row(phase),
        };
        let name = format!("{what} ({node})");
        let mut i = parent + 1;
        while i < self.rows.len() && self.rows[i].nested {
            if self.rows[i].name == name {
                return i;
            }
            i += 1;
        }
        self.rows.insert(i, Row { group: Group::Phases, name, nested: true, bars: Vec::new() });
        for r in self.open_phase.values_mut().chain(self.last_phase.values_mut()).filter(|r| **r >= i) {
            *r += 1;
        }
        i
    }

    /// A phase ended: what its waits' own ends say stands, and a wait seen only in progress (a rollout's
    /// "still waiting" names the workload it is stuck on, its end names them all) is no longer drawn.
    fn drop_open_waits(&mut self, phase_row: usize) {
        for row in self.rows[phase_row + 1..].iter_mut().take_while(|r| r.nested) {
            row.bars.retain(|b| b.end != End::Open);
        }
    }

    fn open(&mut self, row: usize, at: f64, kind: Kind, title: String) {
        self.rows[row].bars.push(Bar { from: at, to: at, kind, end: End::Open, title });
    }

    /// Ends the row's open bar of `kind`, or adds a finished one (its beginning was not recorded).
    fn close(&mut self, row: usize, from: f64, to: f64, end: End, kind: Kind, title: String) {
        let bars = &mut self.rows[row].bars;
        let bar = Bar { from, to, kind, end, title };
        match bars.iter_mut().rev().find(|b| b.end == End::Open && b.kind == kind) {
            Some(open) => *open = bar,
            None => bars.push(bar),
        }
    }
}

/// Draws `dir`'s typed timeline into `dir`'s `timeline.svg` (written whole, then renamed, so a reader never
/// sees half a picture) and returns its path; None, logged, when there is nothing to draw or it cannot be
/// written: a picture is never a reason to fail a run.
pub fn write_svg(dir: &RunDir) -> Option<std::path::PathBuf> {
    let records = crate::event::read(dir);
    if records.is_empty() {
        return None;
    }
    let name = dir.root().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let now = crate::event::unix_ms(std::time::SystemTime::now());
    let text = svg::render(&chart(&format!("kthw: where the time of cluster {name} went"), &records, Some(now)));
    let path = dir.timeline_svg();
    match crate::files::write_atomic(&path, text.as_bytes(), 0o644) {
        Ok(()) => Some(path),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the run's timeline picture");
            None
        }
    }
}
