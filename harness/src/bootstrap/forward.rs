//! The host's way to the apiserver while a cluster is up, as the seed's admin kubeconfig reaches it: a local
//! forward `127.0.0.1:<port>` → the control plane's address and apiserver port, through control-plane-1.
//!
//! The forward must outlive the command that asks for it (`kthw kubeconfig`), so a detached process serves it
//! ([`serve`]) and records itself among the run's helpers ([`record_path`]: its pid and start time, the
//! cluster id, the port), which the cluster's teardown and the reaper SIGTERM before removing the run
//! directory. It also ends by itself when the cluster's state file goes away or names another cluster, when its
//! SSH connection closes (the node went down), or on SIGTERM/SIGINT.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::secrets::{kubeconfig_dir, pki_dir};
use super::BootstrapError;
use crate::cluster::{Cluster, ClusterState, HELPERS_DIR};
use crate::kubeconfig;
use crate::pki::ClusterPki;
use crate::virt::Owner;

/// Where the forwarder's own log goes, relative to the run directory.
pub const LOG: &str = "apiserver-forward.log";
/// The host kubeconfig `kthw kubeconfig` prints, relative to the run directory.
pub const HOST_KUBECONFIG: &str = "kubeconfigs/host-admin.kubeconfig";

/// How often the forwarder looks whether its cluster is still there.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// A running forwarder, as it records itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwarderRecord {
    pub owner: Owner,
    pub cluster_id: String,
    /// 127.0.0.1:port reaches the apiserver.
    pub port: u16,
}

fn access_err(cluster: &str, detail: impl std::fmt::Display) -> BootstrapError {
    BootstrapError::Access { cluster: cluster.to_string(), detail: detail.to_string() }
}

/// The forwarder's record in a run directory.
pub fn record_path(run_dir: &Path) -> PathBuf {
    run_dir.join(HELPERS_DIR).join("apiserver-forward.json")
}

pub fn read_record(run_dir: &Path) -> Option<ForwarderRecord> {
    serde_json::from_slice(&std::fs::read(record_path(run_dir)).ok()?).ok()
}

/// The forwarder serving cluster `cluster_id` now: recorded, alive, and accepting on its port.
pub fn live_forwarder(run_dir: &Path, cluster_id: &str) -> Option<ForwarderRecord> {
    let r = read_record(run_dir)?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, r.port));
    let accepts = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok();
    (r.cluster_id == cluster_id && r.owner.is_alive() && accepts).then_some(r)
}

/// Serves the forward until the cluster is gone, the connection to the control plane closes, or `stop`
/// completes. Returns why it ended.
pub async fn serve(cluster: &Cluster, stop: impl Future<Output = ()>) -> Result<String, BootstrapError> {
    let name = cluster.name();
    let spec = cluster.spec();
    let cp = spec.control_plane();
    let session = cluster.session(&cp.name).await.map_err(|e| access_err(name, e))?;
    let tunnel = session
        .forward_local(&cp.address.to_string(), spec.network.apiserver_port)
        .await
        .map_err(|e| access_err(name, e))?;
    let record =
        ForwarderRecord { owner: Owner::current(), cluster_id: cluster.id().to_string(), port: tunnel.local.port() };
    write_record(cluster.run_dir(), &record).map_err(|e| access_err(name, e))?;
    tracing::info!(cluster = name, local = %tunnel.local, target = %format!("{}:{}", cp.address, spec.network.apiserver_port), "forwarding");

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
        let _ = std::fs::remove_file(record_path(cluster.run_dir()));
    }
    Ok(why)
}

fn write_record(run_dir: &Path, r: &ForwarderRecord) -> std::io::Result<()> {
    let path = record_path(run_dir);
    let dir = path.parent().expect("the record is in a directory");
    std::fs::create_dir_all(dir)?;
    crate::files::write_atomic(&path, &serde_json::to_vec_pretty(r).expect("a record serializes"), 0o644)
}

/// Writes the admin kubeconfig for the host with its server at `https://127.0.0.1:<port>` (the apiserver
/// certificate has 127.0.0.1 among its SANs) and returns its path. Needs the pki phase done.
pub fn write_host_kubeconfig(cluster: &Cluster, port: u16) -> Result<PathBuf, BootstrapError> {
    let name = cluster.name();
    let pki_dir = pki_dir(cluster.run_dir());
    if !pki_dir.exists() {
        return Err(access_err(name, format!("no PKI in {}: bring the cluster up through the kubeconfigs phase first (`kthw up --until kubeconfigs`)", pki_dir.display())));
    }
    let pki = ClusterPki::load(&pki_dir).map_err(|e| access_err(name, e))?;
    let admin = kubeconfig::all(cluster.spec(), &pki)
        .map_err(|e| access_err(name, e))?
        .into_iter()
        .find(|k| k.name == "admin")
        .expect("kubeconfig::all makes admin");
    let host = retarget(&admin, "host-admin", port);
    kubeconfig::write_all(&kubeconfig_dir(cluster.run_dir()), &[host]).map_err(|e| access_err(name, e))?;
    Ok(cluster.run_dir().join(HOST_KUBECONFIG))
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
        let dir = tempfile::tempdir().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mine = ForwarderRecord { owner: Owner::current(), cluster_id: "c1".into(), port };
        write_record(dir.path(), &mine).unwrap();
        assert_eq!(live_forwarder(dir.path(), "c1"), Some(mine.clone()));
        assert_eq!(live_forwarder(dir.path(), "c2"), None, "another cluster's");
        let dead = ForwarderRecord { owner: Owner { pid: mine.owner.pid, start: mine.owner.start + 1 }, ..mine };
        write_record(dir.path(), &dead).unwrap();
        assert_eq!(live_forwarder(dir.path(), "c1"), None, "a later process with a reused pid");
    }
}
