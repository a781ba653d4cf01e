//! One domain per node: a qcow2 overlay on the shared base image, direct kernel boot, NIC 1 on the cluster
//! network, NIC 2 user-mode carrying only a loopback SSH forward, a serial console logged to a file, the
//! node's identity as fw_cfg files, and kthw's ownership metadata.
//!
//! A virtio-rng device feeds the guest's CRNG from the host's /dev/urandom (libvirt's formatdomain
//! "Random number generator device"). Without it a TCG guest's kernel 6.1 initialized its CRNG 20 to 43 s into
//! the boot, from jitter entropy, and journald, random-seed and kthw-identity blocked in getrandom() until then:
//! the node that got there last set when the cluster answered SSH.

use std::path::PathBuf;

use virt::connect::Connect;
use virt::domain::Domain;
use virt::error::ErrorNumber;

use super::metadata::Ownership;
use super::xml::escape;
use super::{libvirt_error, VirtError};
use crate::accel::Accel;
use crate::identity::{FwCfgEntry, Mac};

/// libvirt does not manage the slirp NIC (it is passed through `<qemu:commandline>`), so it cannot place it
/// on the PCI bus: this slot is far above the few that libvirt hands out to our other devices.
pub const MANAGEMENT_PCI_SLOT: u8 = 0x10;

/// The guest's user-mode NIC: the host reaches the node's sshd through it, on 127.0.0.1 only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagementNic {
    pub mac: Mac,
    /// 127.0.0.1:ssh_port on the host is forwarded to the guest's port 22.
    pub ssh_port: u16,
    /// Without egress, slirp's `restrict=on` drops every connection the guest opens through this NIC, on the
    /// host side, whatever the guest's routes say.
    pub egress: bool,
}

impl ManagementNic {
    /// QEMU's slirp: the only user-mode backend that can forbid guest egress (passt cannot).
    pub(crate) fn netdev(&self) -> String {
        format!(
            "user,id=mgmt,restrict={},hostfwd=tcp:127.0.0.1:{}-:22",
            if self.egress { "off" } else { "on" },
            self.ssh_port
        )
    }

    pub(crate) fn device(&self) -> String {
        format!("virtio-net-pci,netdev=mgmt,mac={},bus=pci.0,addr={:#x}", self.mac, MANAGEMENT_PCI_SLOT)
    }
}

/// One node's domain as kthw defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainDef {
    pub name: String,
    pub accel: Accel,
    pub vcpus: u32,
    pub memory_mib: u32,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: String,
    /// The node's qcow2 overlay.
    pub disk: PathBuf,
    /// The cluster network NIC 1 is on, and its MAC (the guest matches its static address by it).
    pub network: String,
    pub cluster_mac: Mac,
    pub management: ManagementNic,
    /// The serial console is appended to this file.
    pub console: PathBuf,
    pub fw_cfg: Vec<FwCfgEntry>,
    pub ownership: Ownership,
    /// Run QEMU as root instead of libvirt's unprivileged QEMU user; see `seclabel`.
    pub run_as_root: bool,
}

impl DomainDef {
    pub fn to_xml(&self) -> String {
        let fw_cfg: String = self
            .fw_cfg
            .iter()
            .map(|e| format!("\n    <entry name='{}' file='{}'/>", escape(&e.name), escape(&e.file.to_string_lossy())))
            .collect();
        // The translation-block cache defaults to a quarter of guest RAM under TCG; 64 MiB keeps an idle
        // node's QEMU near 380 MB instead of 575 MB with no measurable boot cost.
        let tcg = match self.accel {
            Accel::Tcg => "\n    <tcg><tb-cache unit='MiB'>64</tb-cache></tcg>",
            Accel::Kvm => "",
        };
        let cpu = match self.accel {
            Accel::Kvm => "\n  <cpu mode='host-passthrough'/>",
            Accel::Tcg => "",
        };
        format!(
            "<domain type='{domain_type}' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{name}</name>
  <metadata>
    {metadata}
  </metadata>
  <memory unit='MiB'>{memory}</memory>
  <vcpu>{vcpus}</vcpu>
  <sysinfo type='fwcfg'>{fw_cfg}
  </sysinfo>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>{cmdline}</cmdline>
  </os>
  <features>
    <acpi/>
    <apic/>{tcg}
  </features>{cpu}
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='unsafe' discard='unmap'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='network'>
      <source network='{network}'/>
      <mac address='{cluster_mac}'/>
      <model type='virtio'/>
    </interface>
    <serial type='file'>
      <source path='{console}' append='on'/>
      <target port='0'/>
    </serial>
    <console type='file'>
      <source path='{console}' append='on'/>
      <target type='serial' port='0'/>
    </console>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
    <rng model='virtio'>
      <backend model='random'>/dev/urandom</backend>
    </rng>
  </devices>{seclabel}
  <qemu:commandline>
    <qemu:arg value='-netdev'/>
    <qemu:arg value='{netdev}'/>
    <qemu:arg value='-device'/>
    <qemu:arg value='{device}'/>
  </qemu:commandline>
</domain>
",
            domain_type = self.accel.domain_type(),
            name = escape(&self.name),
            metadata = self.ownership.to_xml(),
            memory = self.memory_mib,
            vcpus = self.vcpus,
            kernel = escape(&self.kernel.to_string_lossy()),
            initrd = escape(&self.initrd.to_string_lossy()),
            cmdline = escape(&self.cmdline),
            disk = escape(&self.disk.to_string_lossy()),
            network = escape(&self.network),
            cluster_mac = self.cluster_mac,
            console = escape(&self.console.to_string_lossy()),
            seclabel = self.seclabel(),
            netdev = escape(&self.management.netdev()),
            device = escape(&self.management.device()),
        )
    }

    /// As root, qemu:///system runs QEMU as its own unprivileged user, which cannot read the image cache
    /// and run directories under a 0700 home, and relabelling (chown) them would fight over the base image
    /// shared by every node and cluster. The node's files are made by this process, so QEMU runs as its
    /// user: root, with DAC relabelling off. Unprivileged users get qemu:///session, where QEMU already
    /// runs as them.
    fn seclabel(&self) -> &'static str {
        if self.run_as_root {
            "\n  <seclabel type='static' model='dac' relabel='no'>\n    <label>+0:+0</label>\n  </seclabel>"
        } else {
            ""
        }
    }
}

/// Whether domains on `uri` run QEMU as root (see [`DomainDef::run_as_root`]): as root on qemu:///system.
pub fn runs_as_root(uri: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    euid == 0 && uri.starts_with("qemu:///system")
}

/// Defines and starts the domain; a domain that fails to start is undefined again, and the error carries
/// libvirt's message (QEMU's own complaint included, e.g. a forward port that is taken).
pub fn create(conn: &Connect, def: &DomainDef) -> Result<(), VirtError> {
    let dom = conn.define_domain_xml(&def.to_xml()).map_err(|e| libvirt_error("define domain", &def.name, e))?;
    if let Err(e) = dom.create() {
        let _ = dom.undefine_flags(UNDEFINE_EVERYTHING);
        return Err(libvirt_error("start domain", &def.name, e));
    }
    Ok(())
}

/// Managed-save images and snapshot metadata go with the domain (libvirt refuses to undefine a
/// domain that still has them). Values of virDomainUndefineFlagsValues, stable in libvirt's ABI.
const UNDEFINE_EVERYTHING: u32 = 1 | 2;

/// Stops (hard) and undefines `name`. Ok(false) when there was no such domain.
pub fn remove(conn: &Connect, name: &str) -> Result<bool, VirtError> {
    let Some(dom) = lookup(conn, name)? else {
        return Ok(false);
    };
    if dom.is_active().unwrap_or(false) {
        if let Err(e) = dom.destroy() {
            // It may have stopped on its own between the two calls.
            if dom.is_active().unwrap_or(true) {
                return Err(libvirt_error("stop domain", name, e));
            }
        }
    }
    match dom.undefine_flags(UNDEFINE_EVERYTHING) {
        // A transient domain (one restored from a save image and not yet defined) is gone once stopped.
        Err(e) if e.code().is(ErrorNumber::NoDomain) => {}
        Err(e) => return Err(libvirt_error("undefine domain", name, e)),
        Ok(_) => {}
    }
    if let Some(log) = conn.uri().ok().and_then(|uri| qemu_log(&uri, name)) {
        let _ = std::fs::remove_file(log);
    }
    Ok(true)
}

/// Where libvirt logs QEMU's command line and stderr for a domain; undefining the domain leaves it behind.
fn qemu_log(uri: &str, name: &str) -> Option<PathBuf> {
    let dir = if uri.starts_with("qemu:///system") {
        PathBuf::from("/var/log/libvirt/qemu")
    } else if uri.starts_with("qemu:///session") {
        dirs::cache_dir()?.join("libvirt/qemu/log")
    } else {
        return None;
    };
    Some(dir.join(format!("{name}.log")))
}

/// QEMU's own answers to the human-monitor `commands` for domain `name`, each under its command, for a person
/// reading why a guest stopped (never parsed). Through libvirt-qemu's virDomainQemuMonitorCommand with
/// VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP (1) (https://libvirt.org/html/libvirt-libvirt-qemu.html); libvirt then
/// marks the domain tainted ("custom-monitor"), which only its log says. A command that fails gives its error
/// in its place.
pub fn monitor(conn: &Connect, name: &str, commands: &[String]) -> Result<String, VirtError> {
    const HMP: u32 = 1;
    let dom = lookup(conn, name)?.ok_or_else(|| VirtError::NotFound { kind: "domain", name: name.to_string() })?;
    let mut text = String::new();
    for c in commands {
        let answer = dom.qemu_monitor_command(c, HMP).unwrap_or_else(|e| format!("(failed: {})", e.message()));
        text.push_str(&format!("(qemu) {c}\n{}\n", answer.trim_end()));
    }
    Ok(text)
}

/// Is `name` defined and running?
pub fn is_active(conn: &Connect, name: &str) -> Result<bool, VirtError> {
    match lookup(conn, name)? {
        Some(d) => d.is_active().map_err(|e| libvirt_error("query domain", name, e)),
        None => Ok(false),
    }
}

/// The full XML of a defined domain.
pub fn xml(conn: &Connect, name: &str) -> Result<String, VirtError> {
    let dom = lookup(conn, name)?.ok_or_else(|| VirtError::NotFound { kind: "domain", name: name.to_string() })?;
    dom.xml_desc(0).map_err(|e| libvirt_error("read domain XML", name, e))
}

fn lookup(conn: &Connect, name: &str) -> Result<Option<Domain>, VirtError> {
    match conn.lookup_domain_by_name(name) {
        Ok(d) => Ok(Some(d)),
        Err(e) if e.code().is(ErrorNumber::NoDomain) => Ok(None),
        Err(e) => Err(libvirt_error("look up domain", name, e)),
    }
}
