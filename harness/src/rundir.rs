//! The run directory of one cluster, and the one place that spells a path inside it: the state file, the
//! client key, per node its overlay, console, fw_cfg files and SSH log, the PKI and kubeconfigs, the typed
//! record of every phase run, the run's timeline, and the helper processes the run started.
//!
//! A run directory is born with its state file: it is assembled under a hidden name and renamed into place,
//! so a run killed at any instant leaves either nothing under the cluster's name or a directory the reaper
//! can read. A hidden staging directory left by a killed run is removed by the reaper.

use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::phase::Phase;
use crate::virt::Owner;

const STATE_FILE: &str = "state.json";
const CLIENT_KEY: &str = "client_key";
const PHASE_RECORDS: &str = "phases.jsonl";
const TIMELINE: &str = "timeline.log";
/// The same events typed, for programs (`events::Stamped`, a JSON object a line).
pub const TIMELINE_RECORDS: &str = "timeline.jsonl";
/// The timeline as a picture (`timeline::write_svg`).
pub const TIMELINE_SVG: &str = "timeline.svg";
const HELPERS: &str = "pids";
const STAGING_PREFIX: &str = ".staging-";

/// One cluster's run directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir(PathBuf);

/// Why a run directory could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("a run directory {} exists already", .0.display())]
    Exists(PathBuf),
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl RunDir {
    /// The run directory at `root` (which need not exist).
    pub fn at(root: impl Into<PathBuf>) -> RunDir {
        RunDir(root.into())
    }

    /// Makes `runs/<name>`, private, holding `state` as its state file from the first instant it exists under
    /// that name. An empty directory of that name (left by an older kthw killed at birth) is replaced.
    pub fn create(runs: &Path, name: &str, state: &[u8]) -> Result<RunDir, CreateError> {
        fn io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CreateError {
            let path = path.to_path_buf();
            move |source| CreateError::Io { action, path, source }
        }
        std::fs::create_dir_all(runs).map_err(io("create", runs))?;
        let runs = std::fs::canonicalize(runs).map_err(io("resolve", runs))?;
        let staging = runs.join(format!("{STAGING_PREFIX}{name}-{}", Owner::current().pid));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::DirBuilder::new().mode(0o700).create(&staging).map_err(io("create", &staging))?;
        let target = runs.join(name);
        let placed = crate::files::write_atomic(&staging.join(STATE_FILE), state, 0o644)
            .map_err(io("write the state file in", &staging))
            .and_then(|()| match std::fs::rename(&staging, &target) {
                Ok(()) => Ok(()),
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY) | Some(libc::EEXIST)) => {
                    Err(CreateError::Exists(target.clone()))
                }
                Err(e) => Err(io("move into place", &target)(e)),
            });
        if placed.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        placed.map(|()| RunDir(target))
    }

    /// Staging directories under `runs` whose creating process is gone (a run killed while being born).
    pub fn dead_staging(runs: &Path) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(runs) else { return Vec::new() };
        entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let pid = name.strip_prefix(STAGING_PREFIX).and_then(|rest| rest.rsplit_once('-'));
                pid.and_then(|(_, pid)| pid.parse::<u32>().ok()).is_some_and(|pid| Owner::of(pid).is_none())
            })
            .collect()
    }

    pub fn root(&self) -> &Path {
        &self.0
    }

    pub fn state_file(&self) -> PathBuf {
        self.0.join(STATE_FILE)
    }

    /// The cluster's SSH client key (private; the nodes authorise its public half).
    pub fn client_key(&self) -> PathBuf {
        self.0.join(CLIENT_KEY)
    }

    pub fn node(&self, node: &str) -> NodeDir {
        NodeDir(self.0.join("nodes").join(node))
    }

    /// The cluster's CA and certificates, as `pki` writes them.
    pub fn pki(&self) -> PathBuf {
        self.0.join("pki")
    }

    /// Where a PKI is written before it is renamed to [`RunDir::pki`].
    pub fn pki_staging(&self) -> PathBuf {
        self.0.join(".pki.tmp")
    }

    /// The cluster's kubeconfigs (`<name>.kubeconfig`).
    pub fn kubeconfigs(&self) -> PathBuf {
        self.0.join("kubeconfigs")
    }

    /// The admin kubeconfig for the host's kubectl, through the apiserver forward.
    pub fn host_kubeconfig(&self) -> PathBuf {
        self.kubeconfigs().join("host-admin.kubeconfig")
    }

    /// The lock the cluster's versions were brought up with, when they are no preset (`Up` writes it): what
    /// later work on the cluster (`kthw bundle`, a test on a kept cluster) reads its artifacts and chart keys
    /// from. A golden snapshot's copies carry it along with the run directory.
    pub fn lock(&self) -> PathBuf {
        self.0.join("lock.toml")
    }

    /// The key of the golden snapshot this cluster was restored from: its overlays are backed by that
    /// snapshot's disks, which must outlive it.
    pub fn golden_origin(&self) -> PathBuf {
        self.0.join("golden-origin")
    }

    /// The run's timeline: one line per event of `kthw up` (nodes booted, phases begun and ended, waits).
    pub fn timeline(&self) -> PathBuf {
        self.0.join(TIMELINE)
    }

    /// The run's timeline typed: a JSON record per event, with its time in milliseconds.
    pub fn timeline_records(&self) -> PathBuf {
        self.0.join(TIMELINE_RECORDS)
    }

    /// The run's timeline as a picture: per node and per phase, where the time went.
    pub fn timeline_svg(&self) -> PathBuf {
        self.0.join(TIMELINE_SVG)
    }

    /// A phase's own output kept for a person (e.g. `cilium status`), `<phase>/<file>`.
    pub fn phase_output(&self, phase: Phase, file: &str) -> PathBuf {
        self.0.join("phases").join(phase.name()).join(file)
    }

    /// Where a helper process the run started (e.g. the apiserver forwarder) records itself: a JSON object
    /// holding at least `{"owner": {"pid", "start"}}`. The teardown and the reaper SIGTERM each before removing
    /// the directory.
    pub fn helper_record(&self, helper: &str) -> PathBuf {
        self.0.join(HELPERS).join(format!("{helper}.json"))
    }

    /// A helper process's own log.
    pub fn helper_log(&self, helper: &str) -> PathBuf {
        self.0.join(format!("{helper}.log"))
    }

    /// Appends one record of a phase run.
    pub fn record_phase(&self, record: &PhaseRecord) -> io::Result<()> {
        let line = serde_json::to_string(record).expect("a phase record serializes") + "\n";
        append(&self.0.join(PHASE_RECORDS), &line)
    }

    /// Every phase run recorded, oldest first; lines that do not parse are skipped.
    pub fn phase_records(&self) -> Vec<PhaseRecord> {
        let text = std::fs::read_to_string(self.0.join(PHASE_RECORDS)).unwrap_or_default();
        text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// Whether `phase` has completed on this cluster at least once.
    pub fn phase_done(&self, phase: Phase) -> bool {
        self.phase_records().iter().any(|r| r.phase == phase && r.outcome == Outcome::Ok)
    }

    /// Appends a line to the timeline.
    pub fn log_timeline(&self, line: &str) {
        if let Err(e) = append(&self.timeline(), &format!("{line}\n")) {
            tracing::warn!(path = %self.timeline().display(), error = %e, "cannot append to the run's timeline");
        }
    }

    /// Appends one JSON record (one line, no newline in it) to the typed timeline.
    pub fn append_timeline_record(&self, json: &str) -> io::Result<()> {
        append(&self.timeline_records(), &format!("{json}\n"))
    }

    /// Sends SIGTERM to every recorded helper that still runs (the same process: pid and start time).
    pub fn stop_helpers(&self) {
        #[derive(Deserialize)]
        struct Helper {
            owner: Owner,
        }
        let Ok(entries) = std::fs::read_dir(self.0.join(HELPERS)) else { return };
        for path in entries.flatten().map(|e| e.path()) {
            let helper = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice::<Helper>(&b).ok());
            if let Some(Helper { owner }) = helper.filter(|h| h.owner.is_alive()) {
                tracing::debug!(pid = owner.pid, record = %path.display(), "stopping a helper of the run");
                // SAFETY: kill has no memory effects; the pid is the recorded process, alive a moment ago.
                unsafe { libc::kill(owner.pid as libc::pid_t, libc::SIGTERM) };
            }
        }
    }

    /// Stops the run's helpers, then removes the directory; a directory already gone is fine.
    pub fn remove(&self) -> io::Result<()> {
        self.stop_helpers();
        match std::fs::remove_dir_all(&self.0) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Where one node's files live inside the run directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDir(PathBuf);

impl NodeDir {
    pub fn root(&self) -> &Path {
        &self.0
    }
    pub fn disk(&self) -> PathBuf {
        self.0.join("disk.qcow2")
    }
    pub fn console(&self) -> PathBuf {
        self.0.join("console.log")
    }
    pub fn fw_cfg(&self) -> PathBuf {
        self.0.join("fwcfg")
    }
    /// Every SSH command run on the node, with its output.
    pub fn ssh_log(&self) -> PathBuf {
        self.0.join("ssh.log")
    }
}

/// How a phase run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Ok,
    Failed,
}

/// One run of one phase, as the run directory records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseRecord {
    pub phase: Phase,
    /// Seconds since the Unix epoch when it ended.
    pub ended: u64,
    pub seconds: f64,
    pub outcome: Outcome,
    /// Files installed or replaced on nodes; None when the phase failed.
    pub changed: Option<usize>,
}

fn append(path: &Path, line: &str) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new().create(true).append(true).open(path)?.write_all(line.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_directory_is_born_with_its_state_file_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().unwrap();
        let runs = home.path().join("runs");
        let dir = RunDir::create(&runs, "c1", b"{}").unwrap();
        assert_eq!(std::fs::read(dir.state_file()).unwrap(), b"{}");
        assert_eq!(std::fs::metadata(dir.root()).unwrap().permissions().mode() & 0o777, 0o700);
        let names: Vec<_> = std::fs::read_dir(&runs).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, ["c1"], "no staging directory is left");
        let again = RunDir::create(&runs, "c1", b"{}").unwrap_err();
        assert!(matches!(again, CreateError::Exists(_)), "{again}");
    }

    #[test]
    fn an_empty_directory_left_at_birth_does_not_block_the_name() {
        let home = tempfile::tempdir().unwrap();
        let runs = home.path().join("runs");
        std::fs::create_dir_all(runs.join("c1")).unwrap();
        let dir = RunDir::create(&runs, "c1", b"{\"a\":1}").unwrap();
        assert_eq!(std::fs::read(dir.state_file()).unwrap(), b"{\"a\":1}");
    }

    #[test]
    fn staging_of_a_dead_process_is_found_and_a_live_ones_is_not() {
        let home = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let dead_dir = home.path().join(format!("{STAGING_PREFIX}c1-{dead}"));
        let live_dir = home.path().join(format!("{STAGING_PREFIX}c2-{}", std::process::id()));
        std::fs::create_dir_all(&dead_dir).unwrap();
        std::fs::create_dir_all(&live_dir).unwrap();
        std::fs::create_dir_all(home.path().join("c3")).unwrap();
        assert_eq!(RunDir::dead_staging(home.path()), [dead_dir]);
    }

    #[test]
    fn phase_records_round_trip_and_say_what_is_done() {
        let home = tempfile::tempdir().unwrap();
        let dir = RunDir::at(home.path());
        assert!(!dir.phase_done(Phase::Pki));
        let rec = |phase, outcome| PhaseRecord { phase, ended: 1, seconds: 1.5, outcome, changed: None };
        dir.record_phase(&rec(Phase::Pki, Outcome::Ok)).unwrap();
        dir.record_phase(&rec(Phase::Etcd, Outcome::Failed)).unwrap();
        assert_eq!(dir.phase_records(), [rec(Phase::Pki, Outcome::Ok), rec(Phase::Etcd, Outcome::Failed)]);
        assert!(dir.phase_done(Phase::Pki));
        assert!(!dir.phase_done(Phase::Etcd));
        let text = std::fs::read_to_string(home.path().join(PHASE_RECORDS)).unwrap();
        assert!(text.starts_with("{\"phase\":\"pki\","), "{text}");
    }

    #[test]
    fn removing_a_run_directory_stops_the_helpers_it_records() {
        let home = tempfile::tempdir().unwrap();
        let dir = RunDir::at(home.path().join("run"));
        std::fs::create_dir_all(dir.helper_record("x").parent().unwrap()).unwrap();
        let mut helper = std::process::Command::new("sleep").arg("60").spawn().unwrap();
        let owner = Owner::of(helper.id()).unwrap();
        let record = serde_json::json!({ "owner": { "pid": owner.pid, "start": owner.start }, "port": 1 });
        std::fs::write(dir.helper_record("forward"), record.to_string()).unwrap();
        // A stale record (same pid, another start time) names some other process: left alone.
        let stale = serde_json::json!({ "owner": { "pid": std::process::id(), "start": 1 } });
        std::fs::write(dir.helper_record("stale"), stale.to_string()).unwrap();

        dir.remove().unwrap();
        let status = helper.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
        assert!(!dir.root().exists());
        dir.remove().unwrap();
    }
}
