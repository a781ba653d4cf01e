//! Restoring a private copy of a golden snapshot: a new cluster id, run directory and isolated network (same
//! addresses), per node a new overlay backed by the frozen disk and a save image carrying the copy's XML
//! (names, UUID, paths, a fresh loopback forward port, ownership), restored running; each node, as soon as its
//! domain runs, answers SSH with its pinned host key and has its clock set from the host's and checked.
//!
//! The copy is an ordinary [`Cluster`]: its state file and ownership metadata are born before any libvirt
//! object, so `kthw down` removes it and `kthw gc` reaps it after its owner died, even mid-restore.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc::UnboundedSender;

use super::saveimage::SaveImage;
use super::store::{self, GoldenManifest, KeyLock};
use super::{template, GoldenError};
use crate::cluster::{self, Cluster, ClusterError, ClusterState, Gate};
use crate::events::{Event, Events};
use crate::paths::Paths;
use crate::rundir::RunDir;
use crate::ssh::{self, Session};
use crate::virt::network::NetworkDef;
use crate::virt::{self, disk, domain, metadata, names, network, Owner, Ownership, VirtError};

/// Written for KVM; scaled by the accelerator. A restored node's sshd is already running.
const SSH_DEADLINE: Duration = Duration::from_secs(10);
/// How far a node's clock may be from the host's after it was set (an SSH round trip under load).
const CLOCK_TOLERANCE: Duration = Duration::from_secs(2);
/// libvirt's VIR_DOMAIN_SAVE_RUNNING: resume the restored domain whatever state it was saved in.
const SAVE_RUNNING: u32 = 2;
const PORT_ATTEMPTS: usize = 5;

/// What a restore measured.
#[derive(Debug, Clone)]
pub struct Restored {
    pub key: String,
    /// From the call to every node answering SSH with its clock set.
    pub took: Duration,
    /// How far each node's clock lagged the host's before it was set.
    pub clock_lag: Vec<(String, Duration)>,
    /// Where the time went: the run directory and gc, the network and domains, SSH and clocks.
    pub stages: Vec<(&'static str, Duration)>,
}

/// Restores snapshot `key` as cluster `name`.
pub async fn restore(
    paths: &Paths,
    key: &str,
    name: &str,
    uri: &str,
    events: &Events,
) -> Result<(Cluster, Restored), GoldenError> {
    let start = Instant::now();
    cluster::validate_name(name)?;
    // Shared: a builder replacing this key, or a prune, waits until the copy's files exist.
    let _lock = KeyLock::acquire(paths, key, false, true)?.expect("a waiting lock is always granted");
    let manifest = store::open(paths, key)?.ok_or_else(|| GoldenError::NotFound { key: key.to_string() })?;
    cluster::gc(paths, uri).await?;

    let id = names::new_cluster_id();
    let mut state = ClusterState {
        name: name.to_string(),
        id: id.clone(),
        uri: uri.to_string(),
        owner: Owner::current(),
        kept: false,
        created: metadata::unix_now(),
        harness_version: env!("CARGO_PKG_VERSION").to_string(),
        network: names::network(&id),
        bridge: names::bridge(&id),
        ..manifest.state.clone()
    };
    for n in &mut state.nodes {
        n.domain = names::domain(&id, &n.name);
        n.ssh_port = virt::free_port()?;
        n.boot_ms = None;
    }
    let run_dir = cluster::create_run_dir(paths, name, &state)?;
    let marker = run_dir.golden_origin();
    let golden = store::dir(paths, key);
    let prepared = std::fs::write(&marker, key)
        .map_err(|e| GoldenError::io("write", &marker, e))
        .and_then(|()| copy_rundir(&golden, &manifest, &run_dir))
        .and_then(|()| {
            ssh::keys::read_private(&run_dir.client_key()).map_err(|e| GoldenError::Cluster(ClusterError::from(e)))
        });
    let client_key = match prepared {
        Ok(k) => Arc::new(k),
        Err(e) => {
            let _ = run_dir.remove();
            return Err(e);
        }
    };
    // From here on the copy has a timeline of its own: each node's restore is a bar in its picture.
    let events = &events.with_timeline(&run_dir);
    let mut stages = vec![("prepare", start.elapsed())];
    let mut cluster = Cluster::adopt(state.clone(), run_dir.clone(), client_key);
    let gate = cluster.gate();
    // Each node's SSH starts as soon as its own domain runs, while the others are still being restored.
    let (restored_tx, mut restored_rx) = tokio::sync::mpsc::unbounded_channel();
    let provisioning = {
        let (golden, run_dir) = (golden.clone(), run_dir.clone());
        tokio::task::spawn_blocking(move || provision(&golden, &manifest, &state, &run_dir, &gate, &restored_tx))
    };
    let deadline = cluster.accel().scale(SSH_DEADLINE);
    let mut tasks = tokio::task::JoinSet::new();
    let mut failed = None;
    while let Some(node) = restored_rx.recv().await {
        let (node, port) = match node {
            Ok(restored) => restored,
            Err(e) => {
                failed.get_or_insert(e);
                continue;
            }
        };
        if let Some(n) = cluster.state_mut().nodes.iter_mut().find(|n| n.name == node) {
            n.ssh_port = port;
        }
        let target = cluster.target(&node)?;
        tasks.spawn(async move {
            let session = Session::connect(&target, deadline).await.map_err(ClusterError::from)?;
            let lag = set_clock(&session).await?;
            // Measured here: the results are read only once every domain runs, maybe long after.
            Ok::<_, GoldenError>((target.node, session, lag, start.elapsed(), SystemTime::now()))
        });
    }
    provisioning.await.map_err(|e| GoldenError::Virt(VirtError::Join(e.to_string())))??;
    if let Some(e) = failed {
        return Err(e);
    }
    cluster.state().write(&run_dir)?;
    stages.push(("domains", start.elapsed() - stages.iter().map(|s| s.1).sum::<Duration>()));

    let mut clock_lag = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (node, session, lag, took, at) = done.map_err(|e| GoldenError::Virt(VirtError::Join(e.to_string())))??;
        events.emit_at(Event::NodeRestored { node: node.clone(), took, clock_lag: lag }, at);
        cluster.add_session(&node, session);
        clock_lag.push((node, lag));
    }
    let took = start.elapsed();
    stages.push(("ssh and clocks", took - stages.iter().map(|s| s.1).sum::<Duration>()));
    let said: Vec<String> = stages.iter().map(|(what, d)| format!("{what} {:.1} s", d.as_secs_f64())).collect();
    run_dir.log_timeline(&format!(
        "{} restored from golden snapshot {key} in {:.1} s ({})",
        metadata::unix_now(),
        took.as_secs_f64(),
        said.join(", ")
    ));
    Ok((cluster, Restored { key: key.to_string(), took, clock_lag, stages }))
}

fn copy_rundir(golden: &Path, manifest: &GoldenManifest, run_dir: &RunDir) -> Result<(), GoldenError> {
    for f in &manifest.files {
        let rel = f.path.strip_prefix("rundir/").unwrap_or(&f.path);
        let (from, to) = (golden.join(&f.path), run_dir.root().join(rel));
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| GoldenError::io("create", parent, e))?;
        }
        std::fs::copy(&from, &to).map_err(|e| GoldenError::io("copy", &from, e))?;
    }
    Ok(())
}

/// Blocking: the network, then every node in parallel, each sending its name and forward port (or why it
/// failed) on `restored` the moment its domain runs.
fn provision(
    golden: &Path,
    manifest: &GoldenManifest,
    state: &ClusterState,
    run_dir: &RunDir,
    gate: &Gate,
    restored: &UnboundedSender<Result<(String, u16), GoldenError>>,
) -> Result<(), GoldenError> {
    let ownership = |node: Option<&str>| state.ownership(run_dir, node);
    let conn = virt::connect::open(&state.uri)?;
    let net = NetworkDef { name: state.network.clone(), bridge: state.bridge.clone(), ownership: ownership(None) };
    gate.create(|| Ok(network::create(&conn, &net)?))?;
    std::thread::scope(|s| {
        for n in &state.nodes {
            let (conn, ownership) = (&conn, ownership(Some(&n.name)));
            s.spawn(move || {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    restore_node(conn, golden, manifest, state, run_dir, &n.name, n.ssh_port, &ownership, gate)
                }))
                .unwrap_or_else(|_| Err(GoldenError::Virt(VirtError::Join(format!("restoring {} panicked", n.name)))));
                // The receiver is gone only when the restore as a whole was dropped.
                let _ = restored.send(result);
            });
        }
    });
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn restore_node(
    conn: &::virt::connect::Connect,
    golden: &Path,
    manifest: &GoldenManifest,
    state: &ClusterState,
    run_dir: &RunDir,
    node: &str,
    mut port: u16,
    ownership: &Ownership,
    gate: &Gate,
) -> Result<(String, u16), GoldenError> {
    let entry = manifest.nodes.iter().find(|e| e.name == node).ok_or_else(|| GoldenError::Corrupt {
        dir: golden.to_path_buf(),
        why: format!("the manifest has no node {node}"),
    })?;
    let dir = run_dir.node(node);
    std::fs::create_dir_all(dir.root()).map_err(|e| GoldenError::io("create", dir.root(), e))?;
    disk::create_overlay(&golden.join(&entry.disk.path), &dir.disk())?;
    let template_path = golden.join(&entry.template.path);
    let template = std::fs::read_to_string(&template_path).map_err(|e| GoldenError::io("read", &template_path, e))?;
    let saved = golden.join(&entry.save.path);
    let image = SaveImage::read(&saved).map_err(|e| GoldenError::io("read the save image", &saved, e))?;
    let copy = dir.root().join("restore.save");
    let domain_name = names::domain(&state.id, node);
    for attempt in 1..=PORT_ATTEMPTS {
        let uuid = template::new_uuid();
        let root = run_dir.root().to_string_lossy();
        let fill = template::Copy { id: &state.id, run_dir: &root, ssh_port: port, uuid: &uuid, ownership };
        let xml = template::fill(&template, &fill);
        let _ = std::fs::remove_file(&copy);
        image.write_copy(&saved, &xml, &copy).map_err(|e| GoldenError::io("write the save image", &copy, e))?;
        let restored = conn
            .restore_domain_flags(&copy.to_string_lossy(), None, SAVE_RUNNING)
            .map_err(|e| virt::libvirt_error("restore domain", &domain_name, e));
        // QEMU has read the image (or failed to): it is not needed again, and never written to disk if it goes now.
        let _ = std::fs::remove_file(&copy);
        match restored {
            Ok(()) => {
                // Not under the gate (that would restore one node at a time): a teardown that began meanwhile
                // did not see this domain, so it is removed here.
                if gate.create(|| Ok(())).is_err() {
                    let _ = domain::remove(conn, &domain_name);
                    return Err(ClusterError::Cancelled.into());
                }
                // Persistent, like every node `up` makes, so `down` and `gc` treat both alike.
                conn.define_domain_xml(&xml).map_err(|e| virt::libvirt_error("define domain", &domain_name, e))?;
                return Ok((node.to_string(), port));
            }
            Err(VirtError::Libvirt { message, .. })
                if message.contains("host forwarding") && attempt < PORT_ATTEMPTS =>
            {
                tracing::debug!(node, port, "forward port taken; another");
                port = virt::free_port()?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    unreachable!("the last attempt returns")
}

/// Sets the node's clock from the host's and checks it; returns how far it lagged before.
async fn set_clock(session: &Session) -> Result<Duration, GoldenError> {
    let now = || SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let sent = now();
    let cmd = format!(
        "before=$(date +%s.%N) && date -u -s @{}.{:09} >/dev/null && echo \"$before $(date +%s.%N)\"",
        sent.as_secs(),
        sent.subsec_nanos()
    );
    let out = session.exec(&cmd, SSH_DEADLINE * 3).await.map_err(ClusterError::from)?;
    let back = now();
    let node = session.node().to_string();
    let text = out.stdout_lossy();
    let times: Vec<f64> = text.split_whitespace().filter_map(|t| t.parse().ok()).collect();
    let [before, after] = times[..] else {
        return Err(GoldenError::Clock { node, why: format!("`{cmd}` said {:?}: {}", text, out.summary()) });
    };
    let (lo, hi) =
        (sent.as_secs_f64() - CLOCK_TOLERANCE.as_secs_f64(), back.as_secs_f64() + CLOCK_TOLERANCE.as_secs_f64());
    if !(lo..=hi).contains(&after) {
        let why = format!(
            "after setting it reads {after:.3}, the host read {:.3}..{:.3}",
            sent.as_secs_f64(),
            back.as_secs_f64()
        );
        return Err(GoldenError::Clock { node, why });
    }
    Ok(Duration::from_secs_f64((sent.as_secs_f64() - before).max(0.0)))
}
