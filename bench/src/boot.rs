//! The VM layer's benchmark: three nodes to SSH through `Cluster::up` against plain `qemu-system-x86_64`
//! booting the same image (same kernel, initrd, overlays, fw_cfg identity, NICs, memory) on the same host in
//! the same run, and the resident memory of each node's QEMU.

use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use kthw::accel::{self, Accel};
use kthw::identity::NodeIdentity;
use kthw::image::NodeImage;
use kthw::paths::Paths;
use kthw::phase::Phase;
use kthw::ssh::{KeyPair, Session, Target};
use kthw::up::Up;
use kthw::virt::{self, disk};
use kthw::ClusterSpec;

use crate::raw_qemu::RawNode;

/// Both boots of one run, and what each node's QEMU holds in memory once it answers SSH.
#[derive(Debug, Clone)]
pub struct NodesBoot {
    pub accel: Accel,
    /// From `Cluster::up` being called to it returning with every node answering SSH.
    pub harness: Duration,
    /// From starting three QEMUs by hand to every node answering SSH.
    pub raw: Duration,
    /// harness / raw (goal at most 1.2).
    pub ratio: f64,
    /// Each node's own boot under the harness (domain start to SSH).
    pub harness_nodes: Vec<(String, Duration)>,
    /// Resident set of each node's QEMU under the harness, bytes.
    pub rss: Vec<(String, u64)>,
    /// The same for the raw QEMUs.
    pub raw_rss: Vec<(String, u64)>,
}

impl NodesBoot {
    pub fn rss_total(&self) -> u64 {
        self.rss.iter().map(|(_, b)| b).sum()
    }
}

impl std::fmt::Display for NodesBoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |b: u64| b >> 20;
        writeln!(
            f,
            "3 nodes to SSH ({:?}): harness {:.1} s, raw qemu {:.1} s, ratio {:.2} (goal <= 1.2)",
            self.accel,
            self.harness.as_secs_f64(),
            self.raw.as_secs_f64(),
            self.ratio
        )?;
        for ((node, boot), (_, rss)) in self.harness_nodes.iter().zip(&self.rss) {
            writeln!(f, "  {node}: boot {:.1} s, QEMU RSS {} MiB", boot.as_secs_f64(), mib(*rss))?;
        }
        let raw_total: u64 = self.raw_rss.iter().map(|(_, b)| b).sum();
        write!(
            f,
            "  QEMU RSS total {} MiB (goal < 1536 MiB under TCG); raw qemu {} MiB",
            mib(self.rss_total()),
            mib(raw_total)
        )
    }
}

/// The seed's three nodes at 1 vCPU and 1 GiB, as the vm tier boots them.
pub fn small_three_node_spec() -> ClusterSpec {
    let mut spec = ClusterSpec::default();
    for n in &mut spec.nodes {
        n.vcpus = 1;
        n.memory_mib = 1024;
    }
    spec
}

/// Boots the raw baseline first, then the harness, each once, holding /tmp/kthw-vm.lock throughout.
pub async fn three_nodes_vs_raw_qemu(paths: &Paths, image: &NodeImage) -> anyhow::Result<NodesBoot> {
    let _lock = kthw_tests::vm_lock()?;
    let spec = small_three_node_spec();
    let accel = accel::detect(&paths.state, Some(&image.kernel)).accel;
    let scratch = tempfile::tempdir_in(std::env::temp_dir())?;
    let RawBoot { all: raw, rss: raw_rss, .. } = raw_boot(&spec, image, accel, scratch.path()).await?;

    let name = format!("bench-boot-{}", std::process::id());
    let start = Instant::now();
    let up = Up::new(spec.clone()).name(&name).until(Phase::Nodes).paths(paths.clone()).image(image.clone());
    let cluster = up.fresh(true).run().await?.cluster;
    let harness = start.elapsed();
    let harness_nodes =
        cluster.nodes().iter().map(|n| (n.name.clone(), Duration::from_millis(n.boot_ms.unwrap_or(0)))).collect();
    let rss = cluster.nodes().iter().map(|n| (n.name.clone(), qemu_rss_of_domain(&n.domain))).collect();
    cluster.down().await?;
    Ok(NodesBoot { accel, harness, raw, ratio: harness.as_secs_f64() / raw.as_secs_f64(), harness_nodes, rss, raw_rss })
}

/// Kills the raw QEMUs however the benchmark ends.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The raw QEMU baseline's boot: from starting every QEMU to the last answering SSH, each node's own time to
/// SSH, and each QEMU's resident memory then (bytes).
pub struct RawBoot {
    pub all: Duration,
    pub nodes: Vec<(String, Duration)>,
    pub rss: Vec<(String, u64)>,
}

/// What libvirt would run for the domain, without libvirt: same machine, memory, TCG cache, disks, NICs
/// (the cluster NIC on a private hub: boot to SSH does not need the nodes to see each other), console, fw_cfg.
pub async fn raw_boot(spec: &ClusterSpec, image: &NodeImage, accel: Accel, scratch: &Path) -> anyhow::Result<RawBoot> {
    let client = Arc::new(KeyPair::generate("kthw-bench-boot"));
    let mut targets = Vec::new();
    let mut children = Children(Vec::new());
    let mut commands = Vec::new();
    for n in &spec.nodes {
        let dir = scratch.join(&n.name);
        let host = KeyPair::generate(&n.name);
        let id = NodeIdentity::for_node(spec, &n.name, client.public_openssh(), host.private_openssh())
            .context("a node of the spec")?;
        let fw_cfg = id.write(&dir.join("fwcfg"))?;
        let overlay = dir.join("disk.qcow2");
        disk::create_overlay(&image.disk, &overlay)?;
        let port = virt::free_port()?;
        let console = dir.join("console.log");
        let cmdline = image.kernel_cmdline();
        let qemu = RawNode {
            accel,
            memory_mib: n.memory_mib,
            vcpus: n.vcpus,
            kernel: &image.kernel,
            initrd: &image.initrd,
            cmdline: &cmdline,
            overlay: &overlay,
            identity: &id,
            fw_cfg: &fw_cfg,
            ssh_port: port,
            console: &console,
        }
        .command();
        commands.push(qemu);
        targets.push(Target {
            node: n.name.clone(),
            addr: ([127, 0, 0, 1], port).into(),
            user: "root".into(),
            host_key: host.public_openssh(),
            client_key: client.clone(),
            log: None,
        });
    }
    let start = Instant::now();
    for mut c in commands {
        children.0.push(c.spawn().context("starting qemu-system-x86_64")?);
    }
    let deadline = accel.scale(Duration::from_secs(30));
    let mut waits = tokio::task::JoinSet::new();
    for t in targets {
        waits.spawn(async move { Session::connect(&t, deadline).await.map(|_| (t.node, start.elapsed())) });
    }
    let mut nodes = Vec::new();
    while let Some(done) = waits.join_next().await {
        nodes.push(done??);
    }
    let all = start.elapsed();
    let rss = spec.nodes.iter().zip(&children.0).map(|(n, c)| (n.name.clone(), rss_of(c.id()))).collect();
    Ok(RawBoot { all, nodes, rss })
}

/// VmRSS of a process, bytes (0 when it is gone).
fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The RSS of the QEMU running libvirt domain `name` (found by its `-name guest=NAME,` argument).
fn qemu_rss_of_domain(name: &str) -> u64 {
    let needle = format!("guest={name},");
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0 };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&needle) {
            return rss_of(pid);
        }
    }
    0
}
