//! The bundle being written and the bounded steps that fill it: what the local collection ([`super::collect`])
//! and the apiserver's view ([`super::kube`]) share, so that each depends on this and neither on the other.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use virt::domain::DomainState;
use virt::enumutil::Enum;

use super::secrets::redact;
use super::{BundleError, Excluded, Step, FILE_CAP, TOTAL_CAP};
use crate::cluster::Cluster;
use crate::ssh::Session;

/// Deadlines written for KVM and scaled by the accelerator, like the phases'.
const CONNECT: Duration = Duration::from_secs(10);
pub(super) const COMMAND: Duration = Duration::from_secs(20);

/// The files of the bundle being made, and its steps.
pub(super) struct Writer {
    pub(super) dir: PathBuf,
    pub(super) total: u64,
    pub(super) steps: Vec<Step>,
    pub(super) excluded: Vec<Excluded>,
}

impl Writer {
    /// Records a step; its output (capped, keys redacted) goes to `file` while the bundle has room.
    pub(super) fn step(
        &mut self,
        name: &str,
        file: &str,
        output: Option<Vec<u8>>,
        error: Option<String>,
        took: Duration,
    ) {
        let mut step = Step {
            name: name.to_string(),
            file: None,
            bytes: 0,
            truncated_from: None,
            error,
            seconds: took.as_secs_f64(),
        };
        if let Some(bytes) = output.filter(|b| !b.is_empty()) {
            if self.total >= TOTAL_CAP {
                step.error.get_or_insert_with(|| format!("skipped: the bundle reached its {TOTAL_CAP}-byte cap"));
            } else {
                let (bytes, cut) = cap(redact(&bytes), FILE_CAP);
                match write(&self.dir.join(file), &bytes) {
                    Ok(()) => {
                        self.total += bytes.len() as u64;
                        (step.file, step.bytes, step.truncated_from) =
                            (Some(file.to_string()), bytes.len() as u64, cut);
                    }
                    Err(e) => step.error = Some(crate::chain(&e)),
                }
            }
        }
        if let Some(e) = &step.error {
            tracing::debug!(step = name, error = %e, "bundle step failed");
        }
        self.steps.push(step);
    }

    pub(super) fn ok(&mut self, name: &str, file: &str, bytes: Vec<u8>) {
        self.step(name, file, Some(bytes), None, Duration::ZERO);
    }
}

/// At most `max` bytes: the end, after a line saying how much was cut.
fn cap(bytes: Vec<u8>, max: u64) -> (Vec<u8>, Option<u64>) {
    let len = bytes.len() as u64;
    if len <= max {
        return (bytes, None);
    }
    let mut out =
        format!("[kthw bundle: the first {} of {len} bytes were cut; the end is kept]\n", len - max).into_bytes();
    out.extend_from_slice(&bytes[(len - max) as usize..]);
    (out, Some(len))
}

pub(super) fn write(path: &Path, bytes: &[u8]) -> Result<(), BundleError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| BundleError::io("create", parent, e))?;
    }
    std::fs::write(path, bytes).map_err(|e| BundleError::io("write", path, e))
}

/// Runs `cmd` with a deadline; the output (stderr after stdout) is kept whatever the exit status, which is
/// the step's error when not 0.
pub(super) async fn guest(s: &Session, cmd: &str, deadline: Duration) -> (Option<Vec<u8>>, Option<String>) {
    match s.exec(cmd, deadline).await {
        Ok(out) => {
            let mut bytes = out.stdout.clone();
            if !out.stderr.is_empty() {
                bytes.extend_from_slice(b"\n--- stderr ---\n");
                bytes.extend_from_slice(&out.stderr);
            }
            let error = (!out.success()).then(|| format!("`{cmd}` exited with {}", out.describe_status()));
            (Some(bytes), error)
        }
        Err(e) => (None, Some(crate::chain(&e))),
    }
}

/// Runs one bounded step and records it.
pub(super) async fn timed(w: &mut Writer, file: String, run: impl Future<Output = (Option<Vec<u8>>, Option<String>)>) {
    let started = Instant::now();
    let (output, error) = run.await;
    w.step(&file, &file, output, error, started.elapsed());
}

/// A session to a node that runs, or why there is none (a paused node would only time out).
pub(super) async fn session(w: &mut Writer, cluster: &Cluster, node: &str) -> Option<Session> {
    let started = Instant::now();
    let step = format!("nodes/{node}/ssh");
    let domain = cluster.node(node).ok()?.domain.clone();
    match cluster.domain_state(&domain).await {
        Ok(Enum::Known(DomainState::Running)) => {}
        Ok(state) => {
            let why = format!("the domain is {state}: nothing collected over SSH (its console is in run/nodes/{node})");
            w.step(&step, &step, None, Some(why), started.elapsed());
            return None;
        }
        Err(e) => {
            w.step(&step, &step, None, Some(crate::chain(&e)), started.elapsed());
            return None;
        }
    }
    match tokio::time::timeout(cluster.accel().scale(CONNECT * 2), cluster.session(node)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            w.step(&step, &step, None, Some(crate::chain(&e)), started.elapsed());
            None
        }
        Err(_) => {
            w.step(&step, &step, None, Some("no SSH session within the deadline".into()), started.elapsed());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capped_file_keeps_its_end_and_says_so() {
        let (same, cut) = cap(b"short".to_vec(), 10);
        assert_eq!((same.as_slice(), cut), (b"short".as_slice(), None));
        let (out, cut) = cap(b"0123456789abcdef".to_vec(), 6);
        assert_eq!(cut, Some(16));
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("\nabcdef") && text.contains("the first 10 of 16 bytes were cut"), "{text}");
    }
}
