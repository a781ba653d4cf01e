//! One node of a test's cluster, driven the way NixOS's test driver drives a machine: `succeed`, `fail`,
//! `wait_until_succeeds`, `wait_for_unit`, `wait_for_port`, files both ways. Every deadline is written for KVM
//! and scaled for the cluster's acceleration, as the library's own are.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{TestCluster, TestError};
use crate::ssh::{shell_quote, Output, Session, SshError, Tunnel};

/// A command on a node, on KVM; scaled under TCG.
pub const COMMAND: Duration = Duration::from_secs(60);
/// A wait on a node (`wait_until_*`, `wait_for_*`), on KVM; scaled under TCG.
pub const WAIT: Duration = Duration::from_secs(120);
/// How often waits look again.
const POLL: Duration = Duration::from_millis(500);

/// A node of a [`TestCluster`], by name; [`TestCluster::node`] gives one only for a node of the spec.
///
/// ```no_run
/// # async fn f(cluster: kthw::testkit::TestCluster) -> Result<(), kthw::testkit::TestError> {
/// let cp = cluster.node("control-plane-1")?;
/// cp.wait_for_unit("etcd").await?;
/// cp.wait_for_port(2379).await?;
/// let hostname = cp.succeed("hostname").await?;
/// assert_eq!(hostname.trim(), "control-plane-1");
/// cp.fail("systemctl is-active kubelet").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Node {
    cluster: TestCluster,
    name: String,
    command: Duration,
    wait: Duration,
}

impl Node {
    pub(super) fn new(cluster: TestCluster, name: String) -> Node {
        Node { cluster, name, command: COMMAND, wait: WAIT }
    }

    /// The node's name, as the spec gives it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This node with other deadlines, written for KVM and scaled under TCG like the defaults (60 s for a
    /// command, 120 s for a wait).
    pub fn with_deadlines(mut self, command: Duration, wait: Duration) -> Node {
        (self.command, self.wait) = (command, wait);
        self
    }

    fn scaled(&self, kvm: Duration) -> Duration {
        self.cluster.scaled(kvm)
    }

    async fn session(&self) -> Result<Session, TestError> {
        let cluster = self.cluster.cluster();
        cluster
            .session(&self.name)
            .await
            .map_err(|e| TestError::Cluster { cluster: cluster.name().into(), source: Box::new(e) })
    }

    fn ssh(&self, cmd: &str) -> impl FnOnce(SshError) -> TestError + '_ {
        let cmd = cmd.to_string();
        move |e| TestError::Ssh { node: self.name.clone(), cmd, source: Box::new(e) }
    }

    /// Runs `cmd` (a shell command line, as root) and returns its output whatever its exit status.
    pub async fn exec(&self, cmd: &str) -> Result<Output, TestError> {
        let s = self.session().await?;
        s.exec(cmd, self.scaled(self.command)).await.map_err(self.ssh(cmd))
    }

    /// [`Node::exec`] within `deadline` as given, not scaled: for a wait whose length is itself what is tried
    /// (a timeout the test provokes), or one the caller scaled already.
    pub async fn exec_within(&self, cmd: &str, deadline: Duration) -> Result<Output, TestError> {
        let s = self.session().await?;
        s.exec(cmd, deadline).await.map_err(self.ssh(cmd))
    }

    /// Runs `cmd`, which must exit 0; its stdout. The error carries its status and the end of its stderr.
    pub async fn succeed(&self, cmd: &str) -> Result<String, TestError> {
        let s = self.session().await?.with_deadline(self.scaled(self.command));
        s.succeed(cmd).await.map(|o| o.stdout_lossy()).map_err(self.ssh(cmd))
    }

    /// Runs `cmd`, which must exit non-zero; its output, to check why it failed.
    pub async fn fail(&self, cmd: &str) -> Result<Output, TestError> {
        let s = self.session().await?.with_deadline(self.scaled(self.command));
        s.fail(cmd).await.map_err(self.ssh(cmd))
    }

    /// Runs `cmd` until it exits 0; its stdout then. The deadline's error has the last attempt's output.
    pub async fn wait_until_succeeds(&self, cmd: &str) -> Result<String, TestError> {
        let s = self.session().await?;
        s.wait_until_succeeds(cmd, self.scaled(self.wait)).await.map(|o| o.stdout_lossy()).map_err(self.ssh(cmd))
    }

    /// Runs `cmd` until it exits non-zero; its output then.
    pub async fn wait_until_fails(&self, cmd: &str) -> Result<Output, TestError> {
        let what = format!("`{cmd}` to fail");
        self.poll(&what, async || {
            let out = self.exec(cmd).await?;
            Ok(match out.success() {
                false => Ok(out),
                true => Err(format!("it succeeded: {}", out.summary())),
            })
        })
        .await
    }

    /// Waits until systemd unit `unit` is active. A unit that does not exist, or that failed (and is not
    /// being restarted), ends the wait at once with its status and journal.
    pub async fn wait_for_unit(&self, unit: &str) -> Result<(), TestError> {
        let q = shell_quote(unit);
        let show = format!("systemctl show -p LoadState -p ActiveState -p SubState --value {q}");
        self.poll(&format!("unit {unit} to be active"), async || {
            let out = self.succeed(&show).await?;
            let state: Vec<&str> = out.lines().map(str::trim).collect();
            match unit_state(&state) {
                UnitState::Active => Ok(Ok(())),
                UnitState::Missing => Err(TestError::Unit {
                    node: self.name.clone(),
                    unit: unit.to_string(),
                    why: "does not exist (LoadState=not-found)".into(),
                }),
                UnitState::Failed => {
                    let status = self
                        .exec(&format!("systemctl status --no-pager {q}; journalctl -u {q} -n 30 --no-pager"))
                        .await
                        .map(|o| o.stdout_lossy())
                        .unwrap_or_default();
                    Err(TestError::Unit {
                        node: self.name.clone(),
                        unit: unit.to_string(),
                        why: format!("failed:\n{status}"),
                    })
                }
                UnitState::Waiting(seen) => Ok(Err(seen)),
            }
        })
        .await
    }

    /// Waits until something listens on TCP port `port` (any address), as `ss` sees it.
    pub async fn wait_for_port(&self, port: u16) -> Result<(), TestError> {
        let cmd = format!("ss -Htln 'sport = :{port}'");
        self.poll(&format!("a listener on TCP port {port}"), async || {
            let out = self.succeed(&cmd).await?;
            Ok(match out.trim().is_empty() {
                false => Ok(()),
                true => Err(format!("nothing listens on {port}")),
            })
        })
        .await
    }

    /// Copies host file `local` to `remote` on the node, keeping its permission bits.
    pub async fn upload(&self, local: &Path, remote: &str) -> Result<(), TestError> {
        let mode = std::fs::metadata(local)
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
            .map_err(|source| TestError::Io { what: "read", path: local.to_path_buf(), source })?;
        let what = format!("upload {} to {remote}", local.display());
        self.session().await?.upload(local, remote, mode).await.map_err(self.ssh(&what))
    }

    /// Copies `remote` on the node to host file `local`.
    pub async fn download(&self, remote: &str, local: &Path) -> Result<(), TestError> {
        let what = format!("download {remote} to {}", local.display());
        self.session().await?.download(remote, local).await.map_err(self.ssh(&what))
    }

    /// A host port (on 127.0.0.1) forwarded through this node to `host:port` as the node reaches it, for as
    /// long as the tunnel lives: the host's only way into the cluster network (the host never routes there).
    pub async fn forward(&self, host: &str, port: u16) -> Result<Tunnel, TestError> {
        let what = format!("forward a host port to {host}:{port}");
        self.session().await?.forward_local(host, port).await.map_err(self.ssh(&what))
    }

    /// Polls `probe` every half second until it gives `Ok(Ok(value))`, at most this node's wait deadline:
    /// `Ok(Err(seen))` is "not yet" (the deadline's error says the last), `Err` ends the wait at once.
    async fn poll<T>(
        &self,
        what: &str,
        mut probe: impl AsyncFnMut() -> Result<Result<T, String>, TestError>,
    ) -> Result<T, TestError> {
        let deadline = self.scaled(self.wait);
        let start = Instant::now();
        loop {
            let seen = match probe().await? {
                Ok(v) => return Ok(v),
                Err(seen) => seen,
            };
            if start.elapsed() >= deadline {
                return Err(TestError::Timeout {
                    node: self.name.clone(),
                    what: what.to_string(),
                    waited: start.elapsed(),
                    last: seen,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// What `systemctl show -p LoadState -p ActiveState -p SubState --value` says, judged.
#[derive(Debug, Clone, PartialEq, Eq)]
enum UnitState {
    Active,
    Missing,
    /// Failed for good: `failed`, not `activating (auto-restart)`.
    Failed,
    Waiting(String),
}

fn unit_state(values: &[&str]) -> UnitState {
    match values {
        ["not-found", ..] => UnitState::Missing,
        [_, "active", ..] => UnitState::Active,
        [_, "failed", ..] => UnitState::Failed,
        other => UnitState::Waiting(format!("LoadState/ActiveState/SubState: {}", other.join("/"))),
    }
}

/// The same command's output on every node, by node name: what [`TestCluster::on_every_node`] returns.
pub type NodeOutputs = BTreeMap<String, Output>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_units_state_is_judged_from_systemctl_show() {
        // `systemctl show --value` prints the properties in the order asked, one a line (systemd's
        // src/systemctl/systemctl-show.c); ActiveState values per systemd's unit-def.c.
        assert_eq!(unit_state(&["loaded", "active", "running"]), UnitState::Active);
        assert_eq!(unit_state(&["not-found", "inactive", "dead"]), UnitState::Missing);
        assert_eq!(unit_state(&["loaded", "failed", "failed"]), UnitState::Failed);
        assert_eq!(
            unit_state(&["loaded", "activating", "auto-restart"]),
            UnitState::Waiting("LoadState/ActiveState/SubState: loaded/activating/auto-restart".into())
        );
    }
}
