//! The host's way to the apiserver while a cluster is up, as the seed's admin kubeconfig reaches it: a local
//! forward `127.0.0.1:<port>` → the control plane's address and apiserver port, through control-plane-1.
//!
//! The forward must outlive the command that asks for it (`kthw kubeconfig`), so a detached process serves it
//! ([`serve`], started by [`start_forwarder`]) and records itself among the run's helpers (its pid and start
//! time, the cluster id, the port), which the cluster's teardown and the reaper SIGTERM before removing the
//! run directory. It also ends by itself when the cluster's state file goes away or names another cluster, when its
//! SSH connection closes (the node went down), or on SIGTERM/SIGINT.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cluster::{console_tail, Cluster, ClusterError, ClusterState};
use crate::kubeconfig::{self, KubeconfigError};
use crate::pki::{ClusterPki, PkiError};
use crate::rundir::RunDir;
use crate::ssh::SshError;
use crate::virt::Owner;

/// The forwarder's name among the run's helpers (its record and its log).
const HELPER: &str = "apiserver-forward";

/// How often the forwarder looks whether its cluster is still there.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);
/// Written for KVM: the forwarder only opens one SSH connection to a node that is up; scaled under TCG.
const FORWARDER_START: Duration = Duration::from_secs(15);

/// Why the host cannot reach a cluster's apiserver.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("cluster {cluster}: no SSH connection to the control plane for the apiserver forward")]
    Connect {
        cluster: String,
        #[source]
        source: Box<ClusterError>,
    },
    #[error("cluster {cluster}: cannot forward a host port to the apiserver through the control plane")]
    Tunnel {
        cluster: String,
        #[source]
        source: Box<SshError>,
    },
    #[error("cluster {cluster}: no PKI in {}: bring the cluster up through the kubeconfigs phase first (`kthw up --until kubeconfigs`)", dir.display())]
    NoPki { cluster: String, dir: PathBuf },
    #[error("cluster {cluster}: cannot load the PKI")]
    Pki {
        cluster: String,
        #[source]
        source: PkiError,
    },
    #[error("cluster {cluster}: cannot write the host's kubeconfig")]
    Kubeconfig {
        cluster: String,
        #[source]
        source: KubeconfigError,
    },
    #[error("cluster {cluster}: cannot {action} {}", path.display())]
    Io {
        cluster: String,
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cluster {cluster}: the forwarder {why}; its log ({}):\n{tail}", log.display())]
    ForwarderFailed { cluster: String, why: String, log: PathBuf, tail: String },
    #[error("cluster {cluster}: cannot make an API client from the admin kubeconfig")]
    Client {
        cluster: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A Kubernetes API client for the host, as the admin identity, through an SSH forward to the apiserver that
/// lives as long as this value (the host never routes into the cluster network). The phases, the tests and
/// the scenarios share one.
pub struct ApiClient {
    pub client: kube::Client,
    /// 127.0.0.1:port on the host that reaches the apiserver.
    pub local: SocketAddr,
    _tunnel: crate::ssh::Tunnel,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient").field("local", &self.local).finish_non_exhaustive()
    }
}

/// An [`ApiClient`] for `cluster`: a forward opened in this process, the cluster CA, the admin identity.
/// Needs the pki phase done; answers once the control-plane phase is.
pub async fn client(cluster: &Cluster) -> Result<ApiClient, AccessError> {
    let name = || cluster.name().to_string();
    let spec = cluster.spec();
    let cp = spec.control_plane();
    let session =
        cluster.session(&cp.name).await.map_err(|e| AccessError::Connect { cluster: name(), source: Box::new(e) })?;
    let tunnel = session
        .forward_local(&cp.address.to_string(), spec.network.apiserver_port)
        .await
        .map_err(|e| AccessError::Tunnel { cluster: name(), source: Box::new(e) })?;
    let admin = host_admin(cluster, tunnel.local.port())?;
    let client_err = |e: Box<dyn std::error::Error + Send + Sync>| AccessError::Client { cluster: name(), source: e };
    let parsed = kube::config::Kubeconfig::from_yaml(&admin.yaml).map_err(|e| client_err(Box::new(e)))?;
    let config = kube::Config::from_custom_kubeconfig(parsed, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| client_err(Box::new(e)))?;
    let client = kube::Client::try_from(config).map_err(|e| client_err(Box::new(e)))?;
    Ok(ApiClient { client, local: tunnel.local, _tunnel: tunnel })
}

/// The admin kubeconfig with its server at `https://127.0.0.1:<port>` (the apiserver certificate has
/// 127.0.0.1 among its SANs).
fn host_admin(cluster: &Cluster, port: u16) -> Result<kubeconfig::Kubeconfig, AccessError> {
    let name = || cluster.name().to_string();
    let run_dir = cluster.run_dir();
    if !run_dir.pki().exists() {
        return Err(AccessError::NoPki { cluster: name(), dir: run_dir.pki() });
    }
    let pki = ClusterPki::load(&run_dir.pki()).map_err(|source| AccessError::Pki { cluster: name(), source })?;
    let admin = kubeconfig::all(cluster.spec(), &pki)
        .map_err(|source| AccessError::Kubeconfig { cluster: name(), source })?
        .into_iter()
        .find(|k| k.name == "admin")
        .expect("kubeconfig::all makes admin");
    Ok(retarget(&admin, "host-admin", port))
}

/// A running forwarder, as it records itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwarderRecord {
    pub owner: Owner,
    pub cluster_id: String,
    /// 127.0.0.1:port reaches the apiserver.
    pub port: u16,
}

/// The forwarder's record in a run directory, if there is one.
pub fn read_record(run_dir: &RunDir) -> Option<ForwarderRecord> {
    serde_json::from_slice(&std::fs::read(run_dir.helper_record(HELPER)).ok()?).ok()
}

/// The forwarder serving cluster `cluster_id` now: recorded, alive, and accepting on its port.
pub fn live_forwarder(run_dir: &RunDir, cluster_id: &str) -> Option<ForwarderRecord> {
    let r = read_record(run_dir)?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, r.port));
    let accepts = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok();
    (r.cluster_id == cluster_id && r.owner.is_alive() && accepts).then_some(r)
}

/// Serves the forward until the cluster is gone, the connection to the control plane closes, or `stop`
/// completes. Returns why it ended.
pub async fn serve(cluster: &Cluster, stop: impl Future<Output = ()>) -> Result<String, AccessError> {
    let name = cluster.name().to_string();
    let spec = cluster.spec();
    let cp = spec.control_plane();
    let session = cluster
        .session(&cp.name)
        .await
        .map_err(|e| AccessError::Connect { cluster: name.clone(), source: Box::new(e) })?;
    let tunnel = session
        .forward_local(&cp.address.to_string(), spec.network.apiserver_port)
        .await
        .map_err(|e| AccessError::Tunnel { cluster: name.clone(), source: Box::new(e) })?;
    let record =
        ForwarderRecord { owner: Owner::current(), cluster_id: cluster.id().to_string(), port: tunnel.local.port() };
    let path = cluster.run_dir().helper_record(HELPER);
    write_record(cluster.run_dir(), &record).map_err(|source| AccessError::Io {
        cluster: name.clone(),
        action: "write the forwarder's record",
        path,
        source,
    })?;
    tracing::info!(cluster = %name, local = %tunnel.local, target = %format!("{}:{}", cp.address, spec.network.apiserver_port), "forwarding");

    tokio::pin!(stop);
    let why = loop {
        tokio::select! {
            () = &mut stop => break "asked to stop".to_string(),
            () = tokio::time::sleep(WATCH_INTERVAL) => {
                if session.is_closed() {
                    break format!("the SSH connection to {} closed", cp.name);
                }
                match ClusterState::read(cluster.run_dir()) {
                    Ok(s) if s.id == cluster.id() => {}
                    _ => break "the cluster is gone".to_string(),
                }
            }
        }
    };
    drop(tunnel);
    if read_record(cluster.run_dir()).is_some_and(|r| r == record) {
        let _ = std::fs::remove_file(cluster.run_dir().helper_record(HELPER));
    }
    Ok(why)
}

fn write_record(run_dir: &RunDir, r: &ForwarderRecord) -> std::io::Result<()> {
    let path = run_dir.helper_record(HELPER);
    let dir = path.parent().expect("the record is in a directory");
    std::fs::create_dir_all(dir)?;
    crate::files::write_atomic(&path, &serde_json::to_vec_pretty(r).expect("a record serializes"), 0o644)
}

/// Writes the admin kubeconfig for the host with its server at `https://127.0.0.1:<port>` (the apiserver
/// certificate has 127.0.0.1 among its SANs) and returns its path. Needs the pki phase done.
pub fn write_host_kubeconfig(cluster: &Cluster, port: u16) -> Result<PathBuf, AccessError> {
    let name = || cluster.name().to_string();
    let run_dir = cluster.run_dir();
    let host = host_admin(cluster, port)?;
    kubeconfig::write_all(&run_dir.kubeconfigs(), &[host])
        .map_err(|source| AccessError::Kubeconfig { cluster: name(), source })?;
    let path = run_dir.host_kubeconfig();
    debug_assert!(path.exists(), "kubeconfig::write_all writes <dir>/host-admin.kubeconfig");
    Ok(path)
}

/// The forwarder of `cluster`: the live one, or one started now as `exe forward-apiserver NAME`, detached
/// (its own process group, so a terminal's ^C does not reach it; no terminal for stdio), once it has
/// recorded itself. `exe` is the `kthw` binary.
pub fn start_forwarder(cluster: &Cluster, exe: &Path) -> Result<ForwarderRecord, AccessError> {
    let run_dir = cluster.run_dir();
    if let Some(r) = live_forwarder(run_dir, cluster.id()) {
        return Ok(r);
    }
    let name = || cluster.name().to_string();
    let log_path = run_dir.helper_log(HELPER);
    let io = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| AccessError::Io { cluster: cluster.name().to_string(), action, path, source }
    };
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).map_err(io("open", &log_path))?;
    let mut child = Command::new(exe)
        .args(["forward-apiserver", cluster.name()])
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(io("open", &log_path))?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(io("start the forwarder", exe))?;
    let deadline = cluster.accel().scale(FORWARDER_START);
    let start = Instant::now();
    let failed = |why: String| AccessError::ForwarderFailed {
        cluster: name(),
        why,
        tail: console_tail(&log_path, 20),
        log: log_path.clone(),
    };
    loop {
        if let Some(r) = read_record(run_dir).filter(|r| r.owner.pid == child.id()) {
            return Ok(r);
        }
        if let Some(status) = child.try_wait().map_err(io("wait for the forwarder", exe))? {
            return Err(failed(format!("exited with {status} before forwarding")));
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            return Err(failed(format!("did not start forwarding within {deadline:?}")));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `k` renamed `name`, its one server line pointing at 127.0.0.1:`port`.
fn retarget(k: &kubeconfig::Kubeconfig, name: &str, port: u16) -> kubeconfig::Kubeconfig {
    let server = format!("https://127.0.0.1:{port}");
    let from = format!("server: {}\n", k.server);
    assert_eq!(k.yaml.matches(&from).count(), 1, "a kubeconfig names its server once");
    let yaml = k.yaml.replace(&from, &format!("server: {server}\n"));
    kubeconfig::Kubeconfig { name: name.to_string(), user: k.user.clone(), server, yaml }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ClusterSpec;

    #[test]
    fn the_host_kubeconfig_points_at_the_forward_and_keeps_the_admin_identity() {
        let spec = ClusterSpec::default();
        let pki = ClusterPki::generate(&spec).unwrap();
        let admin = kubeconfig::all(&spec, &pki).unwrap().into_iter().find(|k| k.name == "admin").unwrap();
        let host = retarget(&admin, "host-admin", 41234);
        assert!(host.yaml.contains("server: https://127.0.0.1:41234\n"), "{}", host.yaml);
        assert!(!host.yaml.contains(":6443"), "{}", host.yaml);
        assert_eq!(host.yaml.replace("41234", "6443"), admin.yaml);
        assert_eq!((host.server.as_str(), host.user.as_str()), ("https://127.0.0.1:41234", "admin"));
    }

    #[test]
    fn a_record_of_a_dead_process_is_not_a_live_forwarder() {
        let home = tempfile::tempdir().unwrap();
        let dir = RunDir::at(home.path());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mine = ForwarderRecord { owner: Owner::current(), cluster_id: "c1".into(), port };
        write_record(&dir, &mine).unwrap();
        assert_eq!(live_forwarder(&dir, "c1"), Some(mine.clone()));
        assert_eq!(live_forwarder(&dir, "c2"), None, "another cluster's");
        let dead = ForwarderRecord { owner: Owner { pid: mine.owner.pid, start: mine.owner.start + 1 }, ..mine };
        write_record(&dir, &dead).unwrap();
        assert_eq!(live_forwarder(&dir, "c1"), None, "a later process with a reused pid");
    }
}
