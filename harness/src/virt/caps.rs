//! What kthw's domain XML needs from this host's libvirt and QEMU, detected rather than assumed from a
//! version, so that an older or differently built host fails before any node boots, naming what is missing.
//!
//! Three checks, cheapest first:
//! 1. libvirt's domain capabilities (`virConnectGetDomainCapabilities`, documented in
//!    <https://libvirt.org/formatdomaincaps.html>) for the domain type and machine kthw uses: that the
//!    hypervisor type exists at all, the emulator libvirt runs, virtio disks, and under KVM the
//!    `host-passthrough` CPU mode.
//! 2. QEMU itself, for what kthw passes through `<qemu:commandline>` and libvirt therefore never checks: the
//!    slirp `user` netdev with `restrict` and `hostfwd`, and `virtio-net-pci` at a fixed slot on `pci.0`.
//! 3. A probe domain built by the real [`DomainDef::to_xml`], defined (never started) with
//!    `VIR_DOMAIN_DEFINE_VALIDATE` and undefined at once: libvirt validates it against its RelaxNG schema,
//!    and the QEMU driver's define-time validation (src/qemu/qemu_validate.c) checks every element against
//!    the emulator's capabilities (`<tcg><tb-cache>`, fw_cfg `<sysinfo>`, the disk driver's `cache` and
//!    `discard`, file consoles with `append`, the machine's vCPU limit, ...).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{LazyLock, Mutex};

use virt::connect::Connect;

use super::connect::version_string;
use super::domain::{self, DomainDef, ManagementNic};
use super::metadata::{unix_now, Owner, Ownership};
use super::names;
use crate::accel::Accel;
use crate::identity::{FwCfgEntry, Mac, Nic};

/// What to do about a refusal, on every error: the host setup kthw is tested on.
pub const FIX: &str =
    "`sudo scripts/setup-host` installs QEMU 10 and libvirt 11 (Debian 12: from bookworm-backports); \
                   the oldest pair kthw's domains are known to need is libvirt 8.0 with QEMU 5.0";
/// The machine type every node uses (`<type machine='pc'>`); its root bus is `pci.0`.
const MACHINE: &str = "pc";
const ARCH: &str = "x86_64";
/// A paused QEMU with no disk reaches its monitor in about 0.1 s.
const DRY_RUN_SECS: u32 = 10;
/// `VIR_DOMAIN_DEFINE_VALIDATE` of virDomainDefineFlags: "Validate the XML document against schema"
/// (<https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainDefineFlags>).
const DEFINE_VALIDATE: u32 = virt::sys::VIR_DOMAIN_DEFINE_VALIDATE;

/// What the probe found on a host that can run kthw's domains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCaps {
    pub accel: Accel,
    /// The daemon's libvirt, e.g. "11.3.0".
    pub libvirt: String,
    /// The hypervisor libvirt reports, e.g. "10.0.2".
    pub qemu: String,
    /// The emulator libvirt runs for this domain type.
    pub emulator: PathBuf,
    /// What machine type `pc` resolves to, e.g. "pc-i440fx-10.0".
    pub machine: String,
}

impl HostCaps {
    /// One line for `kthw doctor` and the logs.
    pub fn summary(&self) -> String {
        format!(
            "libvirt {} with QEMU {} ({}, machine {}) defines kthw's {} domain and runs its slirp NIC",
            self.libvirt,
            self.qemu,
            self.emulator.display(),
            self.machine,
            self.accel.domain_type()
        )
    }
}

/// This host's libvirt or QEMU cannot run kthw's domains: what is missing, what was found, what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "this host's libvirt {libvirt} with QEMU {qemu} cannot run kthw's `{}` domains: {missing}\n  fix: {FIX}",
    accel.domain_type()
)]
pub struct CapsError {
    pub accel: Accel,
    pub libvirt: String,
    pub qemu: String,
    /// Boxed: a `Result` carrying this error stays small.
    pub missing: Box<Missing>,
}

/// The one thing the probe found missing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Missing {
    #[error("libvirt describes no `{virttype}` domain for {ARCH} machine `{MACHINE}`: {message}")]
    DomainType { virttype: &'static str, message: String },
    #[error("libvirt's domain capabilities do not offer {what}")]
    Capability { what: String },
    #[error("cannot run the emulator {}: {message}", emulator.display())]
    Emulator { emulator: PathBuf, message: String },
    #[error(
        "{} has no slirp user-mode networking (`-netdev help` lists {listed:?}, no `user`): it was built \
         without libslirp, and each node's SSH forward needs it",
        emulator.display()
    )]
    Slirp { emulator: PathBuf, listed: Vec<String> },
    #[error("{} refuses the management NIC kthw passes through <qemu:commandline> ({args}): {message}", emulator.display())]
    CommandLine { emulator: PathBuf, args: String, message: String },
    #[error(
        "libvirt refuses kthw's domain definition (checked with VIR_DOMAIN_DEFINE_VALIDATE, never started): {message}"
    )]
    Definition { message: String },
}

/// Successful verdicts, per libvirt URI and domain type: a process brings clusters up many times (tests,
/// the TCG fallback) and the host cannot lose a capability meanwhile. A refusal is not kept, so a host fixed
/// while a long process runs is probed again.
static VERDICTS: LazyLock<Mutex<HashMap<(String, Accel), HostCaps>>> = LazyLock::new(Default::default);

/// [`check`], once per process for each URI and domain type. Blocking.
pub fn check_once(conn: &Connect, accel: Accel) -> Result<HostCaps, CapsError> {
    let key = (conn.uri().unwrap_or_default(), accel);
    let verdicts = || VERDICTS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(found) = verdicts().get(&key) {
        return Ok(found.clone());
    }
    let found = check(conn, accel)?;
    verdicts().insert(key, found.clone());
    Ok(found)
}

/// Probes this host for everything kthw's domains under `accel` need. Blocking; defines and undefines one
/// domain, runs the emulator twice (about 0.1 s each), starts nothing.
pub fn check(conn: &Connect, accel: Accel) -> Result<HostCaps, CapsError> {
    let started = std::time::Instant::now();
    let version = |v: Result<u32, virt::error::Error>| v.map(version_string).unwrap_or_else(|_| "(unknown)".into());
    let (libvirt, qemu) = (version(conn.lib_version()), version(conn.hyp_version()));
    let fail = |missing: Missing| CapsError {
        accel,
        libvirt: libvirt.clone(),
        qemu: qemu.clone(),
        missing: Box::new(missing),
    };

    let virttype = accel.domain_type();
    let xml = conn
        .domain_capabilities(None, Some(ARCH), Some(MACHINE), Some(virttype), 0)
        .map_err(|e| fail(Missing::DomainType { virttype, message: e.message().to_string() }))?;
    let caps = DomainCaps::parse(&xml).map_err(|what| fail(Missing::Capability { what }))?;
    let lacks = caps.lacks(accel);
    if !lacks.is_empty() {
        return Err(fail(Missing::Capability { what: lacks.join("; ") }));
    }
    check_emulator(&caps.emulator).map_err(fail)?;
    validate(conn, &probe_def(conn, accel)).map_err(|message| fail(Missing::Definition { message }))?;
    let found = HostCaps { accel, libvirt, qemu, emulator: caps.emulator, machine: caps.machine };
    tracing::debug!(took_ms = started.elapsed().as_millis() as u64, found = %found.summary(), "host capabilities");
    Ok(found)
}

/// Defines `def` with `VIR_DOMAIN_DEFINE_VALIDATE` and undefines it again, whatever happened in between;
/// Err is libvirt's refusal, which names the element (schema errors: "Extra element devices in
/// interleave"; capability errors: "unsupported configuration: ...").
pub fn validate(conn: &Connect, def: &DomainDef) -> Result<(), String> {
    let dom = conn.define_domain_xml_flags(&def.to_xml(), DEFINE_VALIDATE).map_err(|e| e.message().to_string())?;
    if let Err(e) = dom.undefine() {
        // Its ownership metadata names this process, so `kthw gc` reaps it once the process is gone.
        tracing::warn!(domain = %def.name, error = %e, "the capability probe's domain could not be undefined");
    }
    Ok(())
}

/// A domain like a node's, for a cluster that does not exist: its files are never created, because a
/// domain that is only defined opens none of them. kthw-owned by this process, so a leftover is reaped.
fn probe_def(conn: &Connect, accel: Accel) -> DomainDef {
    let id = names::new_cluster_id();
    let node = "capabilities-probe";
    let dir = std::env::temp_dir().join(format!("kthw-capabilities-probe-{id}"));
    DomainDef {
        name: names::domain(&id, node),
        accel,
        vcpus: 1,
        memory_mib: 256,
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initrd.img"),
        cmdline: "console=ttyS0".into(),
        disk: dir.join("disk.qcow2"),
        network: names::network(&id),
        cluster_mac: Mac::for_node(node, Nic::Cluster),
        management: probe_nic(node),
        console: dir.join("console.log"),
        fw_cfg: vec![FwCfgEntry { name: "opt/org.kthw/hostname".into(), file: dir.join("hostname") }],
        ownership: Ownership {
            cluster_id: id,
            cluster_name: node.into(),
            node: Some(node.into()),
            run_dir: dir,
            owner: Owner::current(),
            created: unix_now(),
            harness_version: env!("CARGO_PKG_VERSION").to_string(),
        },
        run_as_root: domain::runs_as_root(&conn.uri().unwrap_or_default()),
    }
}

/// Port 0: QEMU's slirp takes any free port, so the probe never races a real forward for one.
fn probe_nic(node: &str) -> ManagementNic {
    ManagementNic { mac: Mac::for_node(node, Nic::Management), ssh_port: 0, egress: false }
}

/// The emulator has slirp, and accepts the management NIC's `-netdev` and `-device` exactly as a node's
/// `<qemu:commandline>` gives them.
fn check_emulator(emulator: &Path) -> Result<(), Missing> {
    let run_failed = |message: String| Missing::Emulator { emulator: emulator.to_path_buf(), message };
    // QEMU prints the backends compiled into the binary: `user` only `#ifdef CONFIG_SLIRP` (net/net.c,
    // show_netdevs()). Without it `-netdev user` fails too, but naming slirp is the clearer diagnosis.
    let help = Command::new(emulator).args(["-netdev", "help"]).output().map_err(|e| run_failed(e.to_string()))?;
    let listed = netdev_backends(&String::from_utf8_lossy(&help.stdout));
    if !help.status.success() || listed.is_empty() {
        return Err(run_failed(format!("`-netdev help` failed: {}", String::from_utf8_lossy(&help.stderr).trim())));
    }
    if !listed.iter().any(|b| b == "user") {
        return Err(Missing::Slirp { emulator: emulator.to_path_buf(), listed });
    }
    // The options themselves (`restrict`, `hostfwd`, the device, its bus and slot) are only checked by QEMU
    // creating them: a paused machine (-S) with no disk or kernel does that before its monitor reads
    // `quit` from stdin. coreutils' timeout ends a QEMU that never reaches its monitor.
    let nic = probe_nic("capabilities-probe");
    let (netdev, device) = (nic.netdev(), nic.device());
    let mut child = Command::new("timeout")
        .arg(DRY_RUN_SECS.to_string())
        .arg(emulator)
        .args(["-machine", &format!("{MACHINE},accel=tcg"), "-nodefaults", "-no-user-config", "-display", "none"])
        .args(["-S", "-monitor", "stdio", "-netdev", &netdev, "-device", &device])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| run_failed(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // QEMU may already have exited over a bad argument; its status says so.
        let _ = stdin.write_all(b"quit\n");
    }
    let out = child.wait_with_output().map_err(|e| run_failed(e.to_string()))?;
    if out.status.success() {
        return Ok(());
    }
    // 124: timeout(1)'s status for a command it had to end.
    if out.status.code() == Some(124) {
        return Err(run_failed(format!("a paused machine did not reach its monitor within {DRY_RUN_SECS} s")));
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let message = stderr.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("no message").trim().to_string();
    Err(Missing::CommandLine {
        emulator: emulator.to_path_buf(),
        args: format!("-netdev {netdev} -device {device}"),
        message: format!("{message} ({})", out.status),
    })
}

/// The backend names in `qemu-system-* -netdev help`: the lines after "Available netdev backend types:".
pub fn netdev_backends(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Available netdev backend types"))
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// The parts of libvirt's domain capabilities kthw's domains depend on
/// (<https://libvirt.org/formatdomaincaps.html>).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainCaps {
    /// `<path>`: the emulator binary libvirt runs.
    pub emulator: PathBuf,
    /// `<machine>`: the canonical name of the machine type asked for.
    pub machine: String,
    /// `<devices><disk supported='yes'>`'s `<enum name='diskDevice'>` and `<enum name='bus'>` values.
    pub disk_devices: Vec<String>,
    pub disk_buses: Vec<String>,
    /// `<cpu><mode name='host-passthrough' supported='yes'>`.
    pub host_passthrough: bool,
}

impl DomainCaps {
    pub fn parse(xml: &str) -> Result<DomainCaps, String> {
        let doc = roxmltree::Document::parse(xml).map_err(|e| format!("well-formed XML ({e})"))?;
        let root = doc.root_element();
        fn child<'a, 'i>(n: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
            n.children().find(|c| c.has_tag_name(name))
        }
        let text = |name: &str| child(root, name).and_then(|n| n.text()).map(|t| t.trim().to_string());
        let supported = |n: &roxmltree::Node<'_, '_>| n.attribute("supported") == Some("yes");
        let disk = child(root, "devices").and_then(|d| child(d, "disk")).filter(supported);
        let values = |name: &str| -> Vec<String> {
            let Some(disk) = disk else { return Vec::new() };
            disk.children()
                .filter(|e| e.has_tag_name("enum") && e.attribute("name") == Some(name))
                .flat_map(|e| e.children().filter(|v| v.has_tag_name("value")).filter_map(|v| v.text()))
                .map(|v| v.trim().to_string())
                .collect()
        };
        let host_passthrough = child(root, "cpu").is_some_and(|cpu| {
            cpu.children()
                .any(|m| m.has_tag_name("mode") && m.attribute("name") == Some("host-passthrough") && supported(&m))
        });
        Ok(DomainCaps {
            emulator: text("path").map(PathBuf::from).ok_or("an emulator (<path>)")?,
            machine: text("machine").ok_or("a machine type (<machine>)")?,
            disk_devices: values("diskDevice"),
            disk_buses: values("bus"),
            host_passthrough,
        })
    }

    /// What a node's domain under `accel` uses that these capabilities do not offer, each naming where
    /// libvirt would list it.
    pub fn lacks(&self, accel: Accel) -> Vec<String> {
        let mut lacks = Vec::new();
        if !self.disk_devices.iter().any(|d| d == "disk") {
            lacks.push("disk devices (<devices><disk><enum name='diskDevice'> has no `disk`)".to_string());
        }
        if !self.disk_buses.iter().any(|b| b == "virtio") {
            lacks.push("virtio disks (<devices><disk><enum name='bus'> has no `virtio`)".to_string());
        }
        if accel == Accel::Kvm && !self.host_passthrough {
            lacks
                .push("the host CPU for KVM guests (<cpu><mode name='host-passthrough'> is not supported)".to_string());
        }
        lacks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `virsh domcapabilities --virttype qemu` on our CI host; see tests/fixtures/README.md.
    const DOMCAPS_TCG: &str = include_str!("../../tests/fixtures/domcaps-tcg-libvirt-11.3-qemu-10.0.xml");
    const NETDEV_HELP: &str = include_str!("../../tests/fixtures/netdev-help-qemu-10.0.txt");

    #[test]
    fn our_hosts_domain_capabilities_offer_what_a_tcg_node_needs() {
        let caps = DomainCaps::parse(DOMCAPS_TCG).unwrap();
        assert_eq!(caps.emulator, PathBuf::from("/usr/bin/qemu-system-x86_64"));
        assert_eq!(caps.machine, "pc-i440fx-10.0");
        assert!(caps.disk_buses.contains(&"virtio".to_string()), "{:?}", caps.disk_buses);
        assert_eq!(caps.lacks(Accel::Tcg), Vec::<String>::new());
    }

    #[test]
    fn a_tcg_host_cannot_give_a_kvm_guest_the_host_cpu_and_says_where_libvirt_lists_it() {
        // libvirt offers host-passthrough only where KVM runs; these capabilities are for `qemu` domains.
        let caps = DomainCaps::parse(DOMCAPS_TCG).unwrap();
        assert!(!caps.host_passthrough);
        let lacks = caps.lacks(Accel::Kvm);
        assert_eq!(lacks.len(), 1, "{lacks:?}");
        assert!(lacks[0].contains("<cpu><mode name='host-passthrough'>"), "{}", lacks[0]);
    }

    #[test]
    fn capabilities_without_virtio_disks_name_the_enum_that_lacks_them() {
        let old = DOMCAPS_TCG.replace("<value>virtio</value>\n        <value>usb</value>", "<value>usb</value>");
        let lacks = DomainCaps::parse(&old).unwrap().lacks(Accel::Tcg);
        assert_eq!(lacks, vec!["virtio disks (<devices><disk><enum name='bus'> has no `virtio`)".to_string()]);
        let unsupported = DOMCAPS_TCG.replace("<disk supported='yes'>", "<disk supported='no'>");
        assert_eq!(DomainCaps::parse(&unsupported).unwrap().lacks(Accel::Tcg).len(), 2);
    }

    #[test]
    fn capabilities_without_an_emulator_are_refused_naming_the_element() {
        let err = DomainCaps::parse("<domainCapabilities><machine>pc</machine></domainCapabilities>").unwrap_err();
        assert!(err.contains("<path>"), "{err}");
        assert!(DomainCaps::parse("not xml").unwrap_err().starts_with("well-formed XML"));
    }

    #[test]
    fn netdev_help_lists_the_backends_compiled_in() {
        let listed = netdev_backends(NETDEV_HELP);
        assert_eq!(listed.first().map(String::as_str), Some("socket"));
        assert!(listed.iter().any(|b| b == "user"), "{listed:?}");
        assert!(!listed.iter().any(|b| b.contains("Available")), "{listed:?}");
        let without_slirp = NETDEV_HELP.replace("user\n", "");
        assert!(!netdev_backends(&without_slirp).iter().any(|b| b == "user"));
        assert!(netdev_backends("qemu-system-x86_64: -netdev help: unknown option").is_empty());
    }

    #[test]
    fn a_refusal_says_what_is_missing_what_was_found_and_what_to_do() {
        let err = CapsError {
            accel: Accel::Kvm,
            libvirt: "7.0.0".into(),
            qemu: "4.2.0".into(),
            missing: Box::new(Missing::Slirp {
                emulator: "/usr/bin/qemu-system-x86_64".into(),
                listed: vec!["socket".into(), "tap".into()],
            }),
        };
        let text = err.to_string();
        assert!(
            text.starts_with("this host's libvirt 7.0.0 with QEMU 4.2.0 cannot run kthw's `kvm` domains: "),
            "{text}"
        );
        assert!(text.contains("no slirp user-mode networking") && text.contains("[\"socket\", \"tap\"]"), "{text}");
        assert!(text.contains("sudo scripts/setup-host") && text.contains("libvirt 8.0 with QEMU 5.0"), "{text}");
    }
}
