//! The state file in a cluster's run directory: what another process (`kthw ssh`, `kthw list`, `kthw gc`, a
//! test's helper) needs to find and reach the cluster, written atomically.

use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ClusterError;
use crate::accel::Accel;
use crate::rundir::RunDir;
use crate::spec::ClusterSpec;
use crate::virt::{Owner, Ownership};

/// Everything about a running cluster that outlives the process that started it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    pub name: String,
    /// Unique per `up`; in every libvirt name and in the objects' metadata.
    pub id: String,
    /// The libvirt connection the cluster lives on.
    pub uri: String,
    pub accel: Accel,
    /// The process that brought it up; when it dies, the cluster goes unless `kept`.
    pub owner: Owner,
    /// Left running on purpose (by `kthw up`) until `kthw down`, or until `keep_until`.
    pub kept: bool,
    /// When a kept cluster's time to live ends (seconds since the Unix epoch): `kthw gc` removes it after.
    /// None: kept until `kthw down` (state files from before kept clusters had a time to live).
    #[serde(default)]
    pub keep_until: Option<u64>,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub harness_version: String,
    pub image_key: String,
    pub network: String,
    pub bridge: String,
    pub spec: ClusterSpec,
    pub nodes: Vec<NodeState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeState {
    pub name: String,
    /// The node's address on the cluster network (the same in every cluster made from one spec).
    pub address: Ipv4Addr,
    pub domain: String,
    /// 127.0.0.1:ssh_port on the host reaches the node's sshd.
    pub ssh_port: u16,
    /// The node's host public key, made by the harness and pinned by every SSH client.
    pub host_key: String,
    /// From the domain's start to its first SSH session, once measured.
    pub boot_ms: Option<u64>,
    /// How many times its boot stalled and it was started again on a fresh overlay (issue 30).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub boot_retries: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl ClusterState {
    pub fn read(run_dir: &RunDir) -> Result<ClusterState, ClusterError> {
        let path = run_dir.state_file();
        let bytes = std::fs::read(&path).map_err(|source| ClusterError::io("read the state file", &path, source))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ClusterError::State { path, message: format!("{e} (written by another kthw version?)") })
    }

    /// Writes through a temporary file and a rename, so a reader never sees half a state.
    pub fn write(&self, run_dir: &RunDir) -> Result<(), ClusterError> {
        let path = run_dir.state_file();
        crate::files::write_atomic(&path, &self.to_json(), 0o644)
            .map_err(|source| ClusterError::io("write the state file", &path, source))
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a cluster state always serializes")
    }

    /// The metadata every libvirt object of this cluster carries (`node`: None on the network).
    pub fn ownership(&self, run_dir: &RunDir, node: Option<&str>) -> Ownership {
        Ownership {
            cluster_id: self.id.clone(),
            cluster_name: self.name.clone(),
            node: node.map(str::to_string),
            run_dir: run_dir.root().to_path_buf(),
            owner: self.owner,
            created: self.created,
            harness_version: self.harness_version.clone(),
        }
    }

    pub fn node(&self, name: &str) -> Option<&NodeState> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Still wanted: its owner runs, or it was kept for a person and its time to live has not run out.
    pub fn is_live(&self) -> bool {
        (self.kept && !self.keep_expired(crate::virt::metadata::unix_now())) || self.owner.is_alive()
    }

    /// Kept, and its time to live ended before `now`.
    pub fn keep_expired(&self, now: u64) -> bool {
        self.kept && self.keep_until.is_some_and(|until| until <= now)
    }
}

/// The last `n` lines of a console log (or why there are none), for errors about a node that did not come up.
pub fn console_tail(path: &Path, n: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(n)..].join("\n");
            if tail.trim().is_empty() {
                "(the console is empty: the kernel printed nothing)".to_string()
            } else {
                tail
            }
        }
        Err(e) => format!("(no console log at {}: {e})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_tail_is_the_last_lines_only() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("console.log");
        let text: String = (1..=100).map(|i| format!("line {i}\r\n")).collect();
        std::fs::write(&log, text).unwrap();
        let tail = console_tail(&log, 40);
        assert_eq!(tail.lines().count(), 40);
        assert!(tail.starts_with("line 61") && tail.ends_with("line 100"), "{tail}");
        assert!(console_tail(&dir.path().join("missing"), 40).contains("no console log"));
    }
}
