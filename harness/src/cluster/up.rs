//! Bringing a cluster up: reap dead runs, prepare the run directory (state file first, so even a run killed
//! a moment later can be reaped), create the network, overlays and domains, then wait until every node
//! answers SSH. The caller dropping the future tears down what was made; a failure hands the cluster back
//! with the error ([`BootFailure`]), to be collected before it is torn down.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::virt::connect::Connect;
use tokio::task::JoinSet;

use super::state::{ClusterState, NodeState};
use super::teardown::{Gate, Teardown};
use super::watch::{self, NodeBoot, StallPolicy};
use super::{gc, validate_name, Cluster, ClusterError};
use crate::accel::{self, Accel};
use crate::events::{Event, Events};
use crate::identity::{Mac, Nic, NodeIdentity};
use crate::image::{self, NodeImage};
use crate::paths::Paths;
use crate::rundir::{CreateError, RunDir};
use crate::spec::ClusterSpec;
use crate::ssh::{self, KeyPair};
use crate::virt::domain::{DomainDef, ManagementNic};
use crate::virt::network::NetworkDef;
use crate::virt::{self, caps, disk, domain, metadata, names, network, Owner, VirtError};

/// Written for KVM, where a node reaches sshd in under 10 s; scaled by the accelerator (x6 under TCG). Each
/// boot of a node that stalled and was started again has its own.
const BOOT_DEADLINE: Duration = Duration::from_secs(30);

/// How to bring a cluster up.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// The node image; None: the cached one (an error if there is none).
    pub image: Option<NodeImage>,
    /// The libvirt URI; None: `virt::connect::uri()`.
    pub uri: Option<String>,
    /// How long a node may take to answer SSH, written for KVM and scaled by the accelerator.
    pub boot_deadline: Option<Duration>,
    /// Where the acceleration verdict and each node's boot are announced.
    pub events: Events,
}

/// A boot that failed. Once the run directory and libvirt objects exist, the cluster comes back with the
/// error, still owned (torn down when dropped), so that a caller can collect what explains the failure (the
/// consoles, the SSH logs, the domains) before the teardown removes it.
#[derive(Debug)]
pub struct BootFailure {
    pub error: ClusterError,
    /// None when the failure came before anything was made (a bad spec or name, no image).
    pub cluster: Option<Cluster>,
}

impl From<ClusterError> for BootFailure {
    fn from(error: ClusterError) -> BootFailure {
        BootFailure { error, cluster: None }
    }
}

pub(super) async fn up(
    spec: &ClusterSpec,
    name: &str,
    paths: &Paths,
    options: UpOptions,
) -> Result<Cluster, BootFailure> {
    validate_name(name)?;
    spec.validate(&format!("the spec of cluster {name}")).map_err(ClusterError::from)?;
    let uri = options.uri.clone().unwrap_or_else(virt::connect::uri);
    let reaped = gc(paths, &uri).await?;
    if !reaped.objects.is_empty() || !reaped.run_dirs.is_empty() {
        tracing::info!(objects = reaped.objects.len(), run_dirs = reaped.run_dirs.len(), "reaped what dead runs left");
    }
    let image = match options.image.clone() {
        Some(i) => i,
        None => image::cached(paths).map_err(ClusterError::from)?.ok_or(ClusterError::NoImage)?,
    };
    let image = absolute_image(image)?;
    let probe = accel::detect(&paths.state, Some(&image.kernel));
    tracing::info!(accel = ?probe.accel, reason = %probe.reason, "acceleration");
    let probe = host_capabilities(&uri, probe, paths, &options.events).await?;
    let failure = match attempt(spec, name, paths, &options, &uri, &image, probe.accel, &probe.reason, probe.took).await
    {
        Ok(cluster) => return Ok(cluster),
        Err(failure) => failure,
    };
    match kvm_fallback(&probe, &failure.error) {
        Fallback::None => Err(failure),
        Fallback::Refused => {
            let BootFailure { error, cluster } = failure;
            let error = ClusterError::ForcedKvmFailed { forced_by: probe.reason, source: Box::new(error) };
            Err(BootFailure { error, cluster })
        }
        Fallback::ToTcg { reason } => {
            // Dropping the failed attempt's cluster tears down what it made, run directory included.
            drop(failure);
            tracing::warn!(cluster = name, %reason, "a domain failed to start under KVM; retrying the cluster under TCG");
            options.events.emit(Event::AccelFallback { reason: reason.clone() });
            let tcg = accel::remember_kvm_failure(&paths.state, &format!("a KVM domain failed to start: {reason}"));
            attempt(spec, name, paths, &options, &uri, &image, tcg.accel, &tcg.reason, None).await
        }
    }
}

/// What the domains need from libvirt and QEMU, checked (once per process) before anything is defined, so
/// an unsuitable host is named before any boot. libvirt or QEMU refusing a probed KVM domain is a KVM start
/// failure like any other: the verdict becomes TCG when the host passes under TCG; otherwise (or when
/// KTHW_ACCEL forces KVM) the refusal stands.
async fn host_capabilities(
    uri: &str,
    probe: accel::Probe,
    paths: &Paths,
    events: &Events,
) -> Result<accel::Probe, ClusterError> {
    let check = |accel: Accel| {
        let uri = uri.to_string();
        virt::blocking(move || Ok(caps::check_once(&virt::connect::open(&uri)?, accel)))
    };
    match check(probe.accel).await? {
        Ok(found) => {
            tracing::info!(found = %found.summary(), "host capabilities");
            Ok(probe)
        }
        Err(refusal) if probe.accel == Accel::Kvm && !probe.forced => {
            let found = check(Accel::Tcg).await?.map_err(VirtError::from)?;
            tracing::info!(found = %found.summary(), "host capabilities");
            let reason = refusal.missing.to_string();
            tracing::warn!(%reason, "libvirt or QEMU cannot run a KVM domain here; using TCG");
            events.emit(Event::AccelFallback { reason: reason.clone() });
            Ok(accel::remember_kvm_failure(&paths.state, &format!("libvirt or QEMU refuses a KVM domain: {reason}")))
        }
        Err(refusal) => Err(VirtError::from(refusal).into()),
    }
}

/// What to do when a cluster failed to start under the accelerator `probe` chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fallback {
    /// Not a KVM start failure (or not under KVM): the error stands.
    None,
    /// A KVM start failure, but `KTHW_ACCEL=kvm` forced KVM: fail, saying so.
    Refused,
    /// A KVM start failure under a probed KVM: retry under TCG, for this reason.
    ToTcg { reason: String },
}

/// How a KVM start fails: libvirt refuses to start the domain, or the guest never gets going (nested KVM that
/// opens but cannot run a Linux kernel spins without output until the KVM boot deadline, or QEMU dies with
/// "KVM internal error", which stops the domain). Anything else is not the accelerator's fault.
pub(crate) fn kvm_fallback(probe: &accel::Probe, error: &ClusterError) -> Fallback {
    if probe.accel != Accel::Kvm {
        return Fallback::None;
    }
    let reason = match error {
        ClusterError::StartFailed { node, source, .. } => format!("libvirt could not start {node}: {source}"),
        ClusterError::NodeDidNotAnswer { node, waited, .. } => {
            format!("{node} did not answer SSH within the KVM boot deadline ({} s)", waited.as_secs())
        }
        ClusterError::NodeStopped { node, .. } => format!("{node}'s domain stopped while booting"),
        ClusterError::NodeStalled { node, stage, attempts, .. } => {
            format!("{node} stalled {} on each of its {attempts} boots", stage.describe())
        }
        _ => return Fallback::None,
    };
    if probe.forced {
        Fallback::Refused
    } else {
        Fallback::ToTcg { reason }
    }
}

/// One try at bringing the cluster up under `accel`; a failure hands back what it made.
#[allow(clippy::too_many_arguments)]
async fn attempt(
    spec: &ClusterSpec,
    name: &str,
    paths: &Paths,
    options: &UpOptions,
    uri: &str,
    image: &NodeImage,
    accel: Accel,
    reason: &str,
    probe: Option<Duration>,
) -> Result<Cluster, BootFailure> {
    let deadline = accel.scale(options.boot_deadline.unwrap_or(BOOT_DEADLINE));
    let id = names::new_cluster_id();
    let (state, host_keys) = initial_state(spec, name, &id, uri, accel, image)?;
    let run_dir = create_run_dir(paths, name, &state)?;
    let teardown = Teardown::arm(uri.to_string(), id.clone(), run_dir.clone());
    let events = options.events.with_timeline(&run_dir);
    events.emit(Event::Accel { accel: format!("{accel:?}").to_uppercase(), reason: reason.to_string(), probe });
    let mut cluster = Cluster {
        state,
        run_dir: run_dir.clone(),
        client_key: Arc::new(KeyPair::generate(&format!("kthw-client@{name}"))),
        sessions: Default::default(),
        teardown: Some(teardown),
        on_panic: None,
    };
    match boot(&mut cluster, spec, host_keys, image, uri, deadline, &events).await {
        Ok(()) => Ok(cluster),
        Err(error) => Err(BootFailure { error, cluster: Some(cluster) }),
    }
}

/// Provisions the planned libvirt objects of `cluster`, then waits until every node answers SSH, starting a
/// node whose boot stalls again ([`watch::boot_node`]).
async fn boot(
    cluster: &mut Cluster,
    spec: &ClusterSpec,
    host_keys: Vec<KeyPair>,
    image: &NodeImage,
    uri: &str,
    deadline: Duration,
    events: &Events,
) -> Result<(), ClusterError> {
    let run_dir = cluster.run_dir.clone();
    let plan = plan(spec, &cluster.state, host_keys, image, &run_dir, &cluster.client_key)?;
    let gate = cluster.gate();
    let (base, uri2, gate2) = (image.disk.clone(), uri.to_string(), gate.clone());
    let (started, conn) = tokio::task::spawn_blocking(move || provision(&uri2, &base, plan, &gate2))
        .await
        .map_err(|e| VirtError::Join(e.to_string()))??;
    for (node, def, _) in &started {
        if let Some(n) = cluster.state.nodes.iter_mut().find(|n| &n.name == node) {
            n.ssh_port = def.management.ssh_port;
        }
    }
    cluster.state.write(&run_dir)?;

    let conn = Arc::new(conn);
    let policy = StallPolicy::for_accel(cluster.state.accel);
    let mut waits = JoinSet::new();
    for (node, def, at) in started {
        events.emit(Event::NodeBooting { node: node.clone() });
        waits.spawn(watch::boot_node(NodeBoot {
            target: cluster.target(&node)?,
            def,
            base: image.disk.clone(),
            conn: conn.clone(),
            gate: gate.clone(),
            started: at,
            deadline,
            policy,
            events: events.clone(),
        }));
    }
    while let Some(done) = waits.join_next().await {
        let booted = done.map_err(|e| VirtError::Join(e.to_string()))??;
        events.emit(Event::NodeUp { node: booted.node.clone(), took: booted.took });
        if let Some(n) = cluster.state.nodes.iter_mut().find(|n| n.name == booted.node) {
            n.boot_ms = Some(booted.took.as_millis() as u64);
            n.ssh_port = booted.ssh_port;
            n.boot_retries = booted.retries;
        }
        cluster.state.write(&run_dir)?;
        cluster.sessions.lock().unwrap_or_else(|p| p.into_inner()).insert(booted.node, booted.session);
    }
    Ok(())
}

/// The run directory of cluster `name`, born with `state`.
pub(crate) fn create_run_dir(paths: &Paths, name: &str, state: &ClusterState) -> Result<RunDir, ClusterError> {
    RunDir::create(&paths.runs(), name, &state.to_json()).map_err(|e| match e {
        CreateError::Exists(dir) => ClusterError::AlreadyExists { name: name.to_string(), dir },
        CreateError::Io { action, path, source } => ClusterError::Io { what: action, path, source },
    })
}

/// Paths stored in overlays and domain XML must not depend on the working directory.
fn absolute_image(mut image: NodeImage) -> Result<NodeImage, ClusterError> {
    for p in [&mut image.disk, &mut image.kernel, &mut image.initrd] {
        *p = std::fs::canonicalize(&*p).map_err(|e| ClusterError::io("find the node image file", p, e))?;
    }
    Ok(image)
}

/// Everything decided before libvirt is touched.
struct Plan {
    network: NetworkDef,
    domains: Vec<(String, DomainDef)>,
}

/// The state the run directory is born with, and each node's host key (made here, pinned in the state).
fn initial_state(
    spec: &ClusterSpec,
    name: &str,
    id: &str,
    uri: &str,
    accel: Accel,
    image: &NodeImage,
) -> Result<(ClusterState, Vec<KeyPair>), ClusterError> {
    let host_keys: Vec<KeyPair> = spec.nodes.iter().map(|n| KeyPair::generate(&format!("{}@{name}", n.name))).collect();
    let mut state = ClusterState {
        name: name.to_string(),
        id: id.to_string(),
        uri: uri.to_string(),
        accel,
        owner: Owner::current(),
        kept: false,
        keep_until: None,
        created: metadata::unix_now(),
        harness_version: env!("CARGO_PKG_VERSION").to_string(),
        image_key: image.key.clone(),
        network: names::network(id),
        bridge: names::bridge(id),
        spec: spec.clone(),
        nodes: Vec::new(),
    };
    for (n, key) in spec.nodes.iter().zip(&host_keys) {
        state.nodes.push(NodeState {
            name: n.name.clone(),
            address: n.address,
            domain: names::domain(id, &n.name),
            ssh_port: virt::free_port()?,
            host_key: key.public_openssh(),
            boot_ms: None,
            boot_retries: 0,
        });
    }
    Ok((state, host_keys))
}

/// Writes the client key and each node's fw_cfg files into the run directory, and decides every libvirt
/// object.
fn plan(
    spec: &ClusterSpec,
    state: &ClusterState,
    host_keys: Vec<KeyPair>,
    image: &NodeImage,
    run_dir: &RunDir,
    client_key: &KeyPair,
) -> Result<Plan, ClusterError> {
    let ownership = |node: Option<&str>| state.ownership(run_dir, node);
    let (uri, accel) = (&state.uri, state.accel);
    ssh::keys::write_private(&run_dir.client_key(), client_key)?;
    let run_as_root = domain::runs_as_root(uri);
    let mut domains = Vec::new();
    for ((n, key), node) in spec.nodes.iter().zip(&host_keys).zip(&state.nodes) {
        let dir = run_dir.node(&n.name);
        let identity = NodeIdentity::for_node(spec, &n.name, client_key.public_openssh(), key.private_openssh())
            .expect("every node of the spec has an identity");
        let fw_cfg =
            identity.write(&dir.fw_cfg()).map_err(|e| ClusterError::io("write fw_cfg files", &dir.fw_cfg(), e))?;
        let def = DomainDef {
            name: node.domain.clone(),
            accel,
            vcpus: n.vcpus,
            memory_mib: n.memory_mib,
            kernel: image.kernel.clone(),
            initrd: image.initrd.clone(),
            cmdline: image.kernel_cmdline(),
            disk: dir.disk(),
            network: state.network.clone(),
            cluster_mac: Mac::for_node(&n.name, Nic::Cluster),
            management: ManagementNic {
                mac: Mac::for_node(&n.name, Nic::Management),
                ssh_port: node.ssh_port,
                egress: spec.egress,
            },
            console: dir.console(),
            fw_cfg,
            ownership: ownership(Some(&n.name)),
            run_as_root,
        };
        domains.push((n.name.clone(), def));
    }
    let network = NetworkDef { name: state.network.clone(), bridge: state.bridge.clone(), ownership: ownership(None) };
    Ok(Plan { network, domains })
}

/// A node whose domain is running: its name, its domain as started (with the forward port it got), and when.
type Started = (String, DomainDef, Instant);

/// Creates the network, then each node's overlay and domain, through the gate so a concurrent teardown
/// either sees an object or prevents it. Returns each node's domain and when it started, and the connection
/// for watching the domains.
fn provision(uri: &str, base: &Path, plan: Plan, gate: &Gate) -> Result<(Vec<Started>, Connect), ClusterError> {
    let conn = virt::connect::open(uri)?;
    gate.create(|| Ok(network::create(&conn, &plan.network)?))?;
    let mut started = Vec::new();
    for (node, mut def) in plan.domains {
        disk::create_overlay(base, &def.disk)?;
        watch::start_domain(&conn, gate, &node, &mut def)?;
        started.push((node, def, Instant::now()));
    }
    Ok((started, conn))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn probe(accel: Accel, forced: bool) -> accel::Probe {
        accel::Probe { accel, reason: "test".into(), boot_id: "b".into(), method: 2, forced, took: None }
    }

    fn hang() -> ClusterError {
        ClusterError::NodeDidNotAnswer {
            node: "worker-node-1".into(),
            waited: Duration::from_secs(30),
            reason: "connection refused".into(),
            console: PathBuf::from("/run/console.log"),
            console_tail: String::new(),
        }
    }

    fn refused_by_libvirt() -> ClusterError {
        ClusterError::StartFailed {
            node: "control-plane-1".into(),
            accel: Accel::Kvm,
            source: VirtError::Libvirt {
                action: "create domain",
                object: "kthw-x".into(),
                message:
                    "internal error: process exited while connecting to monitor: Could not access KVM kernel module"
                        .into(),
            },
        }
    }

    #[test]
    fn a_kvm_start_failure_under_a_probed_kvm_falls_back_to_tcg_with_the_reason() {
        let kvm = probe(Accel::Kvm, false);
        let Fallback::ToTcg { reason } = kvm_fallback(&kvm, &hang()) else { panic!("a hang falls back") };
        assert_eq!(reason, "worker-node-1 did not answer SSH within the KVM boot deadline (30 s)");
        let Fallback::ToTcg { reason } = kvm_fallback(&kvm, &refused_by_libvirt()) else { panic!("libvirt refused") };
        assert!(
            reason.starts_with("libvirt could not start control-plane-1: ") && reason.contains("KVM kernel module")
        );
        let stopped = ClusterError::NodeStopped {
            node: "worker-node-2".into(),
            domain: "kthw-x-worker-node-2".into(),
            console: PathBuf::from("/run/console.log"),
            console_tail: "KVM internal error. Suberror: 1".into(),
        };
        assert_eq!(
            kvm_fallback(&kvm, &stopped),
            Fallback::ToTcg { reason: "worker-node-2's domain stopped while booting".into() }
        );
    }

    #[test]
    fn a_node_that_stalls_on_every_boot_under_kvm_falls_back_to_tcg_too() {
        let stalled = ClusterError::NodeStalled {
            node: "worker-node-1".into(),
            stage: crate::boot_stage::BootStage::Firmware,
            attempts: 3,
            quiet: Duration::from_secs(4),
            console: PathBuf::from("/run/console.log"),
            console_tail: String::new(),
        };
        let Fallback::ToTcg { reason } = kvm_fallback(&probe(Accel::Kvm, false), &stalled) else {
            panic!("a KVM that never prints falls back")
        };
        assert!(reason.starts_with("worker-node-1 stalled in the firmware") && reason.ends_with("3 boots"), "{reason}");
        assert!(stalled.to_string().contains("on each of its 3 boots"), "{stalled}");
        assert_eq!(kvm_fallback(&probe(Accel::Tcg, false), &stalled), Fallback::None);
    }

    #[test]
    fn forced_kvm_fails_clearly_and_tcg_or_other_errors_never_fall_back() {
        assert_eq!(kvm_fallback(&probe(Accel::Kvm, true), &hang()), Fallback::Refused);
        let err =
            ClusterError::ForcedKvmFailed { forced_by: "forced by KTHW_ACCEL=kvm".into(), source: Box::new(hang()) };
        let text = err.to_string();
        assert!(text.contains("KTHW_ACCEL=kvm forces") && text.contains("no fallback to TCG"), "{text}");
        assert!(std::error::Error::source(&err).unwrap().to_string().contains("did not answer SSH"));
        // Under TCG there is nothing to fall back to; a bad spec or a missing image is not the accelerator's fault.
        assert_eq!(kvm_fallback(&probe(Accel::Tcg, false), &hang()), Fallback::None);
        assert_eq!(kvm_fallback(&probe(Accel::Kvm, false), &ClusterError::NoImage), Fallback::None);
        assert_eq!(kvm_fallback(&probe(Accel::Kvm, false), &ClusterError::Cancelled), Fallback::None);
    }
}
