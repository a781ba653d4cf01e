//! The cluster handle: up, open, sessions, down, list, gc. Ties spec, image, virt and ssh together.
//!
//! A cluster is one isolated libvirt network and one domain per node, all named with a unique cluster id,
//! plus a run directory ([`RunDir`]) holding its state file, keys, overlays and consoles. The process
//! that brings it up owns it: dropping the handle tears it down, and if the process dies the reaper removes
//! it, unless it was kept for a person ([`Cluster::keep`], what `kthw up` does).

mod fault;
mod gc;
mod state;
mod teardown;
mod up;
mod watch;

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use fault::{Fault, FaultError, VALID_FAULTS};
pub use gc::{gc, list, Reaped};
pub use state::{console_tail, ClusterState, NodeState};
pub(crate) use teardown::Gate;
pub(crate) use up::create_run_dir;
pub use up::{BootFailure, UpOptions};
pub use watch::{ConsoleWatch, StallPolicy, Verdict, STALL_QUIET, STALL_RETRIES};

use crate::accel::Accel;
use crate::boot_stage::BootStage;
use crate::image::ImageError;
use crate::paths::Paths;
use crate::rundir::RunDir;
use crate::spec::{ClusterSpec, SpecError};
use crate::ssh::{self, KeyPair, Session, SshError};
use crate::virt::VirtError;
use teardown::Teardown;

/// How many console lines an error about a node shows.
pub const CONSOLE_LINES: usize = 40;

/// What went wrong with a cluster, naming the cluster or node and where to look.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("invalid cluster name {name:?}: {why}")]
    Name { name: String, why: &'static str },
    #[error("no node image is built yet: run `kthw image build` (or let `kthw up` build it)")]
    NoImage,
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Virt(#[from] VirtError),
    #[error("cluster {name} already exists ({}): `kthw down {name}` removes it, or pick another --name", dir.display())]
    AlreadyExists { name: String, dir: PathBuf },
    #[error("no cluster named {name} (no {}); `kthw list` shows the clusters", dir.display())]
    NotFound { name: String, dir: PathBuf },
    #[error("cluster {cluster} has no node {node}; its nodes: {known}")]
    UnknownNode { cluster: String, node: String, known: String },
    #[error("cannot {what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the state file {} is unreadable: {message}", path.display())]
    State { path: PathBuf, message: String },
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error("node {node} did not answer SSH within {waited:?}: {reason}\nlast {CONSOLE_LINES} lines of its console ({}):\n{console_tail}", console.display())]
    NodeDidNotAnswer { node: String, waited: Duration, reason: String, console: PathBuf, console_tail: String },
    #[error(
        "node {node} stalled {} on each of its {attempts} boots (its console showed nothing new for {:.0} s, \
         each boot on a fresh overlay); issue 30 and images/README.md (\"Boots that stall\") say what is known\n\
         last {CONSOLE_LINES} lines of its console ({}):\n{console_tail}",
        stage.describe(),
        quiet.as_secs_f64(),
        console.display()
    )]
    NodeStalled {
        node: String,
        stage: BootStage,
        attempts: u32,
        quiet: Duration,
        console: PathBuf,
        console_tail: String,
    },
    #[error("node {node} stopped while booting (domain {domain} is no longer running)\nlast {CONSOLE_LINES} lines of its console ({}):\n{console_tail}", console.display())]
    NodeStopped { node: String, domain: String, console: PathBuf, console_tail: String },
    #[error("the cluster was being torn down while it was created")]
    Cancelled,
    #[error("cannot start node {node}'s domain under {accel:?}")]
    StartFailed {
        node: String,
        accel: Accel,
        #[source]
        source: VirtError,
    },
    #[error(
        "the cluster did not start under KVM, which {forced_by} forces, so there is no fallback to TCG (unset \
         KTHW_ACCEL to let the probe decide and fall back, or set KTHW_ACCEL=tcg)"
    )]
    ForcedKvmFailed {
        forced_by: String,
        #[source]
        source: Box<ClusterError>,
    },
}

impl ClusterError {
    pub(crate) fn io(what: &'static str, path: &Path, source: std::io::Error) -> ClusterError {
        ClusterError::Io { what, path: path.to_path_buf(), source }
    }
}

/// A cluster: one made by [`Cluster::up`] (torn down when dropped, unless kept) or one found by
/// [`Cluster::open`] (left alone when dropped).
#[derive(Debug)]
pub struct Cluster {
    state: ClusterState,
    run_dir: RunDir,
    client_key: Arc<KeyPair>,
    sessions: Mutex<HashMap<String, Session>>,
    teardown: Option<Teardown>,
    on_panic: Option<PanicHook>,
}

/// What runs when a [`Cluster`] handle is dropped while its thread panics (a test failing with the cluster
/// up), before the handle's teardown: the upper layers' business (a failure bundle, keeping the cluster), set
/// with [`Cluster::on_panic`]. It may keep the cluster ([`Cluster::keep_for`]) so that no teardown follows.
pub struct PanicHook(Box<dyn FnOnce(&mut Cluster) + Send + Sync>);

impl std::fmt::Debug for PanicHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PanicHook")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        if let Some(PanicHook(hook)) = self.on_panic.take() {
            tracing::info!(cluster = %self.state.name, "dropped while its thread panics: running its panic hook");
            hook(self);
        }
    }
}

impl Cluster {
    /// Boots every node of `spec` in parallel as cluster `name` and waits until each answers SSH.
    pub async fn up(
        spec: &ClusterSpec,
        name: &str,
        paths: &Paths,
        options: UpOptions,
    ) -> Result<Cluster, ClusterError> {
        up::up(spec, name, paths, options).await.map_err(|failed| failed.error)
    }

    /// [`Cluster::up`], but a boot that fails once the cluster exists hands the cluster back with the error,
    /// still owned (torn down when dropped): what it left (consoles, SSH logs, domains) can be collected first.
    pub async fn boot(
        spec: &ClusterSpec,
        name: &str,
        paths: &Paths,
        options: UpOptions,
    ) -> Result<Cluster, BootFailure> {
        up::up(spec, name, paths, options).await
    }

    /// A cluster some process brought up, by name. Dropping this handle leaves the cluster running.
    pub fn open(name: &str, paths: &Paths) -> Result<Cluster, ClusterError> {
        validate_name(name)?;
        let run_dir = RunDir::at(paths.run(name));
        if !run_dir.state_file().exists() {
            return Err(ClusterError::NotFound { name: name.to_string(), dir: run_dir.root().to_path_buf() });
        }
        let state = ClusterState::read(&run_dir)?;
        let client_key = Arc::new(ssh::keys::read_private(&run_dir.client_key())?);
        Ok(Cluster { state, run_dir, client_key, sessions: Mutex::default(), teardown: None, on_panic: None })
    }

    pub fn name(&self) -> &str {
        &self.state.name
    }

    pub fn id(&self) -> &str {
        &self.state.id
    }

    pub fn state(&self) -> &ClusterState {
        &self.state
    }

    pub fn spec(&self) -> &ClusterSpec {
        &self.state.spec
    }

    pub fn accel(&self) -> Accel {
        self.state.accel
    }

    pub fn nodes(&self) -> &[NodeState] {
        &self.state.nodes
    }

    pub fn run_dir(&self) -> &RunDir {
        &self.run_dir
    }

    /// The file the node's serial console is logged to.
    pub fn console(&self, node: &str) -> Result<PathBuf, ClusterError> {
        self.node(node).map(|n| self.run_dir.node(&n.name).console())
    }

    pub fn node(&self, node: &str) -> Result<&NodeState, ClusterError> {
        self.state.node(node).ok_or_else(|| ClusterError::UnknownNode {
            cluster: self.state.name.clone(),
            node: node.to_string(),
            known: self.state.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", "),
        })
    }

    /// How to reach `node` over SSH: its loopback forward, pinned host key and the cluster's client key.
    pub fn target(&self, node: &str) -> Result<ssh::Target, ClusterError> {
        let n = self.node(node)?;
        Ok(ssh::Target {
            node: n.name.clone(),
            addr: ([127, 0, 0, 1], n.ssh_port).into(),
            user: "root".to_string(),
            host_key: n.host_key.clone(),
            client_key: self.client_key.clone(),
            log: Some(self.run_dir.node(&n.name).ssh_log()),
        })
    }

    /// An SSH session to `node`, reusing the open one when there is one.
    pub async fn session(&self, node: &str) -> Result<Session, ClusterError> {
        if let Some(s) = self.sessions.lock().unwrap_or_else(|p| p.into_inner()).get(node) {
            if !s.is_closed() {
                return Ok(s.clone());
            }
        }
        let session = Session::connect(&self.target(node)?, self.accel().scale(SESSION_CONNECT)).await?;
        self.sessions.lock().unwrap_or_else(|p| p.into_inner()).insert(node.to_string(), session.clone());
        Ok(session)
    }

    /// A cluster whose run directory and libvirt objects another module made (a golden restore), owned like
    /// one from [`Cluster::up`]: torn down when dropped, unless kept.
    pub(crate) fn adopt(state: ClusterState, run_dir: RunDir, client_key: Arc<KeyPair>) -> Cluster {
        let teardown = Teardown::arm(state.uri.clone(), state.id.clone(), run_dir.clone());
        Cluster { state, run_dir, client_key, sessions: Mutex::default(), teardown: Some(teardown), on_panic: None }
    }

    /// Creation and teardown exclude each other through this gate (see `teardown::Gate`).
    pub(crate) fn gate(&self) -> Gate {
        self.teardown.as_ref().map(|t| t.gate.clone()).unwrap_or_default()
    }

    pub(crate) fn state_mut(&mut self) -> &mut ClusterState {
        &mut self.state
    }

    pub(crate) fn add_session(&self, node: &str, session: Session) {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner()).insert(node.to_string(), session);
    }

    /// Drops every open session, e.g. before the nodes' memory is saved.
    pub(crate) fn close_sessions(&self) {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Whether a session to `node` is open (a node that answered SSH and was not cut off since).
    pub(crate) fn has_session(&self, node: &str) -> bool {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner()).get(node).is_some_and(|s| !s.is_closed())
    }

    /// Runs `hook` if this handle is dropped while its thread panics, before the teardown (replacing any hook
    /// set before). Nothing runs on a drop without a panic, or after [`Cluster::down`].
    pub fn on_panic(&mut self, hook: impl FnOnce(&mut Cluster) + Send + Sync + 'static) {
        self.on_panic = Some(PanicHook(Box::new(hook)));
    }

    /// Runs `work` on this cluster from where no await is possible (a drop), on a thread of its own with a
    /// runtime of its own, and waits for it. The runtime of the dropping thread may be the one stuck in that
    /// drop, and the cached SSH sessions are its: they are closed before `work` (which opens fresh ones) and
    /// again after it (the sessions of the work's runtime die with it).
    pub fn block_on_a_thread<'a, T: Send>(
        &'a self,
        thread: &str,
        work: impl FnOnce(&'a Cluster) -> Pin<Box<dyn Future<Output = T> + 'a>> + Send,
    ) -> Result<T, String> {
        self.close_sessions();
        std::thread::scope(|scope| {
            let worker = std::thread::Builder::new().name(thread.into()).spawn_scoped(scope, || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start a runtime for {thread}: {e}"))?;
                let out = runtime.block_on(work(self));
                self.close_sessions();
                Ok(out)
            });
            match worker {
                Ok(handle) => handle.join().unwrap_or_else(|_| Err(format!("{thread} panicked"))),
                Err(e) => Err(format!("cannot start a thread for {thread}: {e}")),
            }
        })
    }

    /// Leaves the cluster running after this handle and its owner are gone, until `kthw down`, or for
    /// [`DEFAULT_KEEP_TTL`] after which `kthw gc` removes it.
    pub fn keep(&mut self) -> Result<(), ClusterError> {
        self.keep_for(DEFAULT_KEEP_TTL)
    }

    /// [`Cluster::keep`] with a time to live of `ttl` from now.
    pub fn keep_for(&mut self, ttl: Duration) -> Result<(), ClusterError> {
        self.state.kept = true;
        self.state.keep_until = Some(crate::virt::metadata::unix_now().saturating_add(ttl.as_secs()));
        self.state.write(&self.run_dir)?;
        if let Some(t) = self.teardown.take() {
            t.disarm();
        }
        Ok(())
    }

    /// Removes the cluster: its domains, its network, its run directory.
    pub async fn down(mut self) -> Result<(), ClusterError> {
        self.on_panic = None;
        self.sessions.lock().unwrap_or_else(|p| p.into_inner()).clear();
        let teardown = self
            .teardown
            .take()
            .unwrap_or_else(|| Teardown::arm(self.state.uri.clone(), self.state.id.clone(), self.run_dir.clone()));
        teardown.run().await
    }
}

/// How long a kept cluster stays when nobody says otherwise: a working day and a night, for the person who
/// reads a nightly failure in the morning.
pub const DEFAULT_KEEP_TTL: Duration = Duration::from_secs(24 * 3600);

/// A node that answered once needs only seconds to answer again; scaled by the accelerator.
const SESSION_CONNECT: Duration = Duration::from_secs(10);

/// Names become directory names and appear in libvirt metadata: keep them plain.
pub fn validate_name(name: &str) -> Result<(), ClusterError> {
    let why = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 64 {
        Some("it is longer than 64 characters")
    } else if name.starts_with(['.', '-']) {
        Some("it starts with '.' or '-'")
    } else if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        Some("use only letters, digits, '-', '_' and '.'")
    } else {
        None
    };
    match why {
        Some(why) => Err(ClusterError::Name { name: name.to_string(), why }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass_and_path_tricks_do_not() {
        for ok in ["kthw", "bug-1234", "a.b_c"] {
            validate_name(ok).unwrap();
        }
        for bad in ["", "../x", "a/b", ".hidden", "-flag", "sp ace", &"x".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }
}
