//! What phases do on a node: install files only where they differ (so a phase run again changes nothing),
//! start units, and wait for real state with a deadline, reporting the unit's journal when the wait fails.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::error::WaitFailed;
use super::{BootstrapError, NodeFile};
use crate::artifacts::{Algorithm, Checksum};
use crate::events::{Event, Events, WAIT_WORTH_DRAWING};
use crate::phase::Phase;
use crate::ssh::{shell_quote, Output, Session, SshError};

/// A file a phase puts on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Put {
    pub remote: PathBuf,
    pub source: Source,
    pub mode: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Bytes(Vec<u8>),
    /// A host file, streamed (binaries of 100 MB).
    File(PathBuf),
}

impl Put {
    pub fn bytes(remote: impl Into<PathBuf>, data: impl Into<Vec<u8>>, mode: u32) -> Put {
        Put { remote: remote.into(), source: Source::Bytes(data.into()), mode }
    }

    pub fn file(remote: impl Into<PathBuf>, local: impl Into<PathBuf>, mode: u32) -> Put {
        Put { remote: remote.into(), source: Source::File(local.into()), mode }
    }

    fn sha256(&self) -> std::io::Result<String> {
        match &self.source {
            Source::Bytes(b) => Ok(hex::encode(Sha256::digest(b))),
            Source::File(p) => Ok(Checksum::of_file(Algorithm::Sha256, p)?.hex),
        }
    }
}

impl From<NodeFile> for Put {
    fn from(f: NodeFile) -> Put {
        Put::bytes(f.path, f.contents, f.mode)
    }
}

fn remote(p: &Path) -> String {
    p.display().to_string()
}

/// Installs every file whose content or mode differs on the node (or that is absent); returns the paths it
/// changed, empty when the node already had them all.
pub async fn install(phase: Phase, session: &Session, files: &[Put]) -> Result<Vec<PathBuf>, BootstrapError> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let on_node = present(phase, session, files).await?;
    let mut changed = Vec::new();
    for f in files {
        let want = f.sha256().map_err(|source| BootstrapError::Io {
            phase,
            action: "hash",
            path: match &f.source {
                Source::File(p) => p.clone(),
                Source::Bytes(_) => f.remote.clone(),
            },
            source,
        })?;
        if on_node.get(&remote(&f.remote)) != Some(&(f.mode, want)) {
            changed.push(f);
        }
    }
    if changed.is_empty() {
        return Ok(Vec::new());
    }
    let mut dirs: Vec<String> =
        changed.iter().filter_map(|f| f.remote.parent()).map(|d| shell_quote(&remote(d))).collect();
    dirs.sort();
    dirs.dedup();
    ssh(phase, session.succeed(&format!("mkdir -p {}", dirs.join(" "))).await)?;
    for f in &changed {
        let to = remote(&f.remote);
        let sent = match &f.source {
            Source::Bytes(b) => session.upload_bytes(b, &to, f.mode).await,
            Source::File(p) => session.upload(p, &to, f.mode).await,
        };
        ssh(phase, sent)?;
    }
    Ok(changed.into_iter().map(|f| f.remote.clone()).collect())
}

/// Mode and sha256 of each of `files` that exists on the node, by path, in one command.
async fn present(
    phase: Phase,
    session: &Session,
    files: &[Put],
) -> Result<HashMap<String, (u32, String)>, BootstrapError> {
    let paths: Vec<String> = files.iter().map(|f| shell_quote(&remote(&f.remote))).collect();
    let cmd = format!(
        "for f in {}; do [ -f \"$f\" ] && printf '%s %s %s\\n' \"$(stat -c %a -- \"$f\")\" \
         \"$(sha256sum < \"$f\" | cut -d' ' -f1)\" \"$f\"; done; true",
        paths.join(" ")
    );
    let out = ssh(phase, session.succeed(&cmd).await)?;
    Ok(parse_present(&out.stdout_lossy()))
}

fn parse_present(text: &str) -> HashMap<String, (u32, String)> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.splitn(3, ' ');
            let mode = u32::from_str_radix(w.next()?, 8).ok()?;
            let sum = w.next()?.to_string();
            Some((w.next()?.to_string(), (mode, sum)))
        })
        .collect()
}

/// Enables `units` and makes them run: restarted when `restart` (their files changed), otherwise started,
/// which leaves a running unit alone. Does not wait for them: [`wait`] does, with the journal at hand.
pub async fn start(phase: Phase, session: &Session, units: &[&str], restart: bool) -> Result<(), BootstrapError> {
    let list = units.join(" ");
    // `enable` of a unit whose package also ships a SysV script runs update-rc.d (seconds under TCG): only
    // when it is not enabled yet.
    let enable =
        format!("for u in {list}; do systemctl is-enabled -q \"$u\" || systemctl enable -q \"$u\" || exit; done");
    let cmd = if restart {
        format!("systemctl daemon-reload && {enable} && systemctl restart --no-block {list}")
    } else {
        format!("{enable} && systemctl start --no-block {list}")
    };
    ssh(phase, session.succeed(&cmd).await).map(drop)
}

/// A state a phase waits for: a command that succeeds once it holds.
#[derive(Debug, Clone)]
pub struct Wait {
    /// What is awaited, as a person says it ("etcd answering `endpoint health` over TLS").
    pub what: String,
    pub check: String,
    /// The unit whose journal explains a failure; a unit that restarts this often gives up the wait early.
    pub unit: Option<String>,
    pub deadline: Duration,
}

/// How often a long wait tells a person watching what it is still waiting for.
const WAITING_EVERY: Duration = Duration::from_secs(15);
/// A unit that crashed this many times since the wait began will not come up by waiting longer.
const GIVE_UP_AFTER_RESTARTS: u32 = 3;
/// Journal lines a failed wait shows.
pub const JOURNAL_LINES: usize = 30;

/// Polls `w.check` until it succeeds. On timeout, or when the unit keeps crashing, fails with what it waited
/// for, the check's last output and the unit's journal.
pub async fn wait(phase: Phase, session: &Session, w: &Wait, events: &Events) -> Result<Output, BootstrapError> {
    wait_on(phase, session, session, w, events).await
}

/// [`wait`] with the check run on `session` and the unit on `unit_node` (a kubelet registering, checked from
/// the control plane).
pub async fn wait_on(
    phase: Phase,
    session: &Session,
    unit_node: &Session,
    w: &Wait,
    events: &Events,
) -> Result<Output, BootstrapError> {
    let start = Instant::now();
    let mut told = start;
    let restarts_at_start = match &w.unit {
        Some(u) => restarts(phase, unit_node, u).await?,
        None => 0,
    };
    let mut pause = Duration::from_millis(200);
    let mut last = None;
    let gave_up = loop {
        let left = w.deadline.saturating_sub(start.elapsed());
        if left.is_zero() {
            break None;
        }
        match session.exec(&w.check, left).await {
            Ok(out) if out.success() => {
                waited(events, phase, session, w, start.elapsed(), true);
                return Ok(out);
            }
            Ok(out) => last = Some(out.summary()),
            Err(SshError::Timeout { last_output, .. }) => {
                last.get_or_insert(format!("(still running at the deadline) {last_output}"));
                break None;
            }
            Err(e) => return Err(BootstrapError::Ssh { phase, source: e }),
        }
        if told.elapsed() >= WAITING_EVERY {
            told = Instant::now();
            events.emit(Event::Waiting {
                phase,
                node: session.node().to_string(),
                what: w.what.clone(),
                waited: start.elapsed(),
                last: last.clone().unwrap_or_default(),
            });
        }
        if let Some(u) = &w.unit {
            let n = restarts(phase, unit_node, u).await?.saturating_sub(restarts_at_start);
            if n >= GIVE_UP_AFTER_RESTARTS {
                break Some(format!("{u} restarted {n} times while waiting; gave up early"));
            }
        }
        tokio::time::sleep(pause.min(w.deadline.saturating_sub(start.elapsed()))).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    };
    waited(events, phase, session, w, start.elapsed(), false);
    let mut diagnostics = gave_up.map(|g| g + "\n").unwrap_or_default();
    if let Some(u) = &w.unit {
        diagnostics.push_str(&format!("on {}: {}", unit_node.node(), journal(unit_node, u).await));
    }
    Err(BootstrapError::Wait(Box::new(WaitFailed {
        phase,
        node: session.node().to_string(),
        what: w.what.clone(),
        waited: start.elapsed(),
        check: w.check.clone(),
        last_output: last.unwrap_or_else(|| "(no attempt finished)".to_string()),
        diagnostics,
    })))
}

/// Tells a wait's end when it took long enough to be seen in the run's picture.
fn waited(events: &Events, phase: Phase, session: &Session, w: &Wait, took: Duration, ok: bool) {
    if took >= WAIT_WORTH_DRAWING {
        events.emit(Event::Waited { phase, node: session.node().to_string(), what: w.what.clone(), took, ok });
    }
}

async fn restarts(phase: Phase, session: &Session, unit: &str) -> Result<u32, BootstrapError> {
    let out = ssh(phase, session.succeed(&format!("systemctl show -p NRestarts --value {unit}")).await)?;
    Ok(out.stdout_lossy().trim().parse().unwrap_or(0))
}

/// The unit's state and the last lines of its journal, for an error message; never fails.
pub async fn journal(session: &Session, unit: &str) -> String {
    let cmd = format!(
        "systemctl status --no-pager -l -n 0 {unit}; echo '--- journalctl -u {unit} -n {JOURNAL_LINES}'; \
         journalctl --no-pager -o short-precise -u {unit} -n {JOURNAL_LINES}"
    );
    match session.exec(&cmd, Duration::from_secs(60)).await {
        Ok(out) => format!("{}{}", out.stdout_lossy(), out.stderr_lossy()),
        Err(e) => format!("(could not read the journal of {unit}: {e})"),
    }
}

pub fn ssh<T>(phase: Phase, r: Result<T, SshError>) -> Result<T, BootstrapError> {
    r.map_err(|source| BootstrapError::Ssh { phase, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_listing_reads_mode_sum_and_path() {
        let text = "644 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 /etc/a b\n600 abc /k\nbogus\n";
        let m = parse_present(text);
        assert_eq!(m["/etc/a b"], (0o644, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into()));
        assert_eq!(m["/k"], (0o600, "abc".into()));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn a_put_hashes_what_it_would_upload() {
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("f");
        std::fs::write(&local, b"hello").unwrap();
        let hello = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        assert_eq!(Put::file("/x", &local, 0o755).sha256().unwrap(), hello);
        assert_eq!(Put::bytes("/x", "hello", 0o644).sha256().unwrap(), hello);
    }
}
