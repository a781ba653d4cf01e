//! Node image benchmarks: the build cold (`--force`) against plain `mmdebstrap` of the same packages and
//! sources (goal: at most as long, though it also makes the kernel, initrds, filesystem and qcow2) and warm
//! (a cache hit; goal at most 1 s), and one node's boot to SSH with our small initrd against Debian's
//! initramfs, alternating in the same run.
//!
//! The boots use plain `qemu-system-x86_64` (direct kernel boot, fw_cfg identity, a loopback-only SSH forward
//! through slirp with `restrict=on`) so that they measure the image alone, not the VM layer.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use kthw::accel::Accel;
use kthw::identity::NodeIdentity;
use kthw::image::{self, BuildOptions, NodeImage};
use kthw::paths::Paths;
use kthw::ssh::keys::KeyPair;
use kthw::virt::{self, disk};
use kthw::ClusterSpec;

use crate::raw_qemu::RawNode;

/// The image build, cold and warm, and its baseline.
#[derive(Debug, Clone)]
pub struct BuildTimes {
    pub cold: Duration,
    pub warm: Duration,
    /// Plain `mmdebstrap` of the recipe's packages and sources, as a person would type it: the floor a build
    /// of this package set stands on (no kernel, initrds, filesystem or qcow2; no dpkg excludes or speedups).
    pub mmdebstrap: Duration,
    pub size_bytes: u64,
    pub packages: usize,
}

impl std::fmt::Display for BuildTimes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "image build: cold {:.1} s, plain mmdebstrap {:.1} s, ratio {:.2} (goal <= 1.0); warm {:.3} s (goal <= 1 s), \
             {} MiB, {} packages",
            self.cold.as_secs_f64(),
            self.mmdebstrap.as_secs_f64(),
            self.cold.as_secs_f64() / self.mmdebstrap.as_secs_f64(),
            self.warm.as_secs_f64(),
            self.size_bytes >> 20,
            self.packages
        )
    }
}

/// Plain `mmdebstrap` of the recipe's packages, then the current recipe's image from nothing (`--force`),
/// then the image again (the cache hit). Both cold runs download every package: apt keeps no cache between
/// them. Holds /tmp/kthw-vm.lock throughout, like everything that builds images on this host.
pub async fn build_cold_and_warm(paths: &Paths) -> anyhow::Result<BuildTimes> {
    // Waited for off the runtime's threads: a ^C while other runs hold the lock must still be heard.
    let _lock = tokio::task::spawn_blocking(kthw_tests::vm_lock).await?.context("locking /tmp/kthw-vm.lock")?;
    let mmdebstrap = plain_mmdebstrap().await?;
    let start = Instant::now();
    let built = image::build(paths, &BuildOptions { force: true, ..BuildOptions::default() }).await?;
    let cold = start.elapsed();
    let start = Instant::now();
    let hit = image::build(paths, &BuildOptions::default()).await?;
    let warm = start.elapsed();
    if hit.manifest.built_at_unix != built.manifest.built_at_unix {
        bail!("the warm build rebuilt the image instead of taking it from the cache");
    }
    let size_bytes = image::list(paths)?.into_iter().find(|i| i.key == hit.key).map_or(0, |i| i.size_bytes);
    Ok(BuildTimes { cold, warm, mmdebstrap, size_bytes, packages: hit.manifest.packages.len() })
}

/// `mmdebstrap --variant=apt --include=<packages.txt> <release> <dir> <the recipe's sources>` into a
/// scratch directory, in a private mount namespace as the build runs it (mounts die with it).
async fn plain_mmdebstrap() -> anyhow::Result<Duration> {
    let recipe = BuildOptions::default().recipe()?;
    let scratch = tempfile::tempdir()?;
    let rootfs = scratch.path().join("rootfs");
    let mut c = tokio::process::Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "mmdebstrap", "--quiet", "--variant=apt"])
        .arg(format!("--include={}", recipe.packages()?.join(",")))
        .arg(&recipe.config.release)
        .arg(&rootfs)
        .args(recipe.sources())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let start = Instant::now();
    let out = c.output().await.context("starting mmdebstrap")?;
    let took = start.elapsed();
    if !out.status.success() {
        bail!("plain mmdebstrap failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(took)
}

/// Boot to SSH with each initrd: the median of `rounds` boots each, alternating.
#[derive(Debug, Clone)]
pub struct BootComparison {
    pub ours: Duration,
    pub debian: Duration,
    /// ours / debian: below 1 means our initrd is faster.
    pub ratio: f64,
}

impl std::fmt::Display for BootComparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "boot to SSH: our initrd {:.1} s, Debian's initramfs {:.1} s, ratio {:.2} (lower is better)",
            self.ours.as_secs_f64(),
            self.debian.as_secs_f64(),
            self.ratio
        )
    }
}

/// Which initrd a boot uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initrd {
    Ours,
    Debian,
}

/// Boots `image` `rounds` times with each initrd and compares the medians.
/// Holds /tmp/kthw-vm.lock throughout, like every test that boots VMs on this host.
pub fn boot_ours_vs_debian(
    image: &NodeImage,
    accel: Accel,
    rounds: usize,
    scratch: &Path,
) -> anyhow::Result<BootComparison> {
    let _lock = kthw_tests::vm_lock().context("locking /tmp/kthw-vm.lock")?;
    let (mut ours, mut debian) = (Vec::new(), Vec::new());
    for _ in 0..rounds.max(1) {
        ours.push(boot_to_ssh(image, Initrd::Ours, accel, scratch)?);
        debian.push(boot_to_ssh(image, Initrd::Debian, accel, scratch)?);
    }
    let (ours, debian) = (crate::median(ours), crate::median(debian));
    Ok(BootComparison { ours, debian, ratio: ours.as_secs_f64() / debian.as_secs_f64() })
}

/// One boot of control-plane-1's identity: seconds from starting QEMU to sshd's banner on the loopback
/// forward (sshd only starts once the identity unit installed the host key).
pub fn boot_to_ssh(image: &NodeImage, initrd: Initrd, accel: Accel, scratch: &Path) -> anyhow::Result<Duration> {
    let spec = ClusterSpec::default();
    let node = &spec.nodes[0];
    let client = KeyPair::generate("kthw-bench");
    let host = KeyPair::generate(&node.name);
    let identity = NodeIdentity::for_node(&spec, &node.name, client.public_openssh(), host.private_openssh())
        .context("the default spec has no first node")?;
    let entries = identity.write(&scratch.join("fwcfg"))?;
    let overlay = scratch.join("bench-overlay.qcow2");
    let _ = std::fs::remove_file(&overlay);
    disk::create_overlay(&image.disk, &overlay)?;
    let port = virt::free_port()?;
    let cmdline = image.kernel_cmdline();
    let console = scratch.join(format!("bench-serial-{initrd:?}.log"));
    let mut qemu = RawNode {
        accel,
        memory_mib: node.memory_mib,
        vcpus: node.vcpus,
        kernel: &image.kernel,
        initrd: match initrd {
            Initrd::Ours => &image.initrd,
            Initrd::Debian => &image.debian_initrd,
        },
        cmdline: &cmdline,
        overlay: &overlay,
        identity: &identity,
        fw_cfg: &entries,
        ssh_port: port,
        console: &console,
    }
    .command();
    let start = Instant::now();
    let mut child = qemu.spawn().context("starting qemu-system-x86_64")?;
    let result = wait_for_banner(port, start, Duration::from_secs(300));
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&overlay);
    result
}

/// Polls the forward until sshd sends its banner. slirp accepts the connection before the guest listens,
/// so a connection alone proves nothing: only the banner does.
fn wait_for_banner(port: u16, start: Instant, deadline: Duration) -> anyhow::Result<Duration> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut last = String::from("nothing yet");
    while start.elapsed() < deadline {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(mut s) => {
                s.set_read_timeout(Some(Duration::from_secs(2)))?;
                let mut buf = [0u8; 8];
                match s.read(&mut buf) {
                    Ok(n) if buf[..n].starts_with(b"SSH-") => return Ok(start.elapsed()),
                    Ok(n) => last = format!("{n} bytes that are not an SSH banner"),
                    Err(e) => last = e.to_string(),
                }
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bail!("no SSH banner on 127.0.0.1:{port} within {} s (last: {last})", deadline.as_secs())
}
