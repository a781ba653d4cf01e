//! A node booted by hand with `qemu-system-x86_64`, as libvirt runs our domains (machine, TCG cache, disk
//! options, NICs, console, fw_cfg identity): the benchmarks' baseline, so they measure the harness or the
//! image and nothing else. The cluster NIC sits on a private hub: boot to SSH does not need the nodes to meet.

use std::path::Path;
use std::process::{Command, Stdio};

use kthw::accel::Accel;
use kthw::identity::{FwCfgEntry, NodeIdentity};

pub struct RawNode<'a> {
    pub accel: Accel,
    pub memory_mib: u32,
    pub vcpus: u32,
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub cmdline: &'a str,
    pub overlay: &'a Path,
    pub identity: &'a NodeIdentity,
    pub fw_cfg: &'a [FwCfgEntry],
    /// The loopback port forwarded to the guest's port 22 (slirp with restrict=on: no egress).
    pub ssh_port: u16,
    pub console: &'a Path,
}

impl RawNode<'_> {
    pub fn command(&self) -> Command {
        let mut qemu = Command::new("qemu-system-x86_64");
        match self.accel {
            Accel::Tcg => qemu.args(["-accel", "tcg,tb-size=64"]),
            Accel::Kvm => qemu.args(["-accel", "kvm", "-cpu", "host"]),
        };
        let id = self.identity;
        qemu.args(["-machine", "pc", "-nodefaults", "-no-user-config", "-display", "none"])
            .args(["-m", &self.memory_mib.to_string(), "-smp", &self.vcpus.to_string()])
            .arg("-kernel")
            .arg(self.kernel)
            .arg("-initrd")
            .arg(self.initrd)
            .args(["-append", self.cmdline])
            .arg("-drive")
            .arg(format!("file={},if=virtio,format=qcow2,cache=unsafe,discard=unmap", self.overlay.display()))
            .args(["-netdev", "hubport,id=cluster,hubid=0"])
            .args(["-device", &format!("virtio-net-pci,netdev=cluster,mac={}", id.cluster_mac)])
            .args(["-netdev", &format!("user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:{}-:22", self.ssh_port)])
            .args(["-device", &format!("virtio-net-pci,netdev=mgmt,mac={}", id.management_mac)])
            .arg("-serial")
            .arg(format!("file:{}", self.console.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for e in self.fw_cfg {
            qemu.arg("-fw_cfg").arg(format!("name={},file={}", e.name, e.file.display()));
        }
        qemu
    }
}
