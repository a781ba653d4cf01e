//! What the libvirt-tier tests share: a connection to the test driver and kthw's definitions for one node.

use std::path::PathBuf;

use kthw::accel::Accel;
use kthw::identity::{FwCfgEntry, Mac, Nic};
use kthw::virt::domain::{DomainDef, ManagementNic};
use kthw::virt::network::NetworkDef;
use kthw::virt::{names, Owner, Ownership};
use virt::connect::Connect;

/// libvirt's in-process test driver: every connection from this process shares one fresh state.
pub fn test_driver() -> Connect {
    kthw::virt::connect::open("test:///default").expect("the test driver needs only the libvirt library")
}

pub fn ownership(cluster_id: &str, node: Option<&str>, owner: Owner) -> Ownership {
    Ownership {
        cluster_id: cluster_id.to_string(),
        cluster_name: "libvirt-tier".to_string(),
        node: node.map(str::to_string),
        run_dir: PathBuf::from(format!("/tmp/kthw-libvirt-tier/{cluster_id}")),
        owner,
        created: kthw::virt::metadata::unix_now(),
        harness_version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

pub fn network_def(cluster_id: &str, owner: Owner) -> NetworkDef {
    NetworkDef {
        name: names::network(cluster_id),
        bridge: names::bridge(cluster_id),
        ownership: ownership(cluster_id, None, owner),
    }
}

pub fn domain_def(cluster_id: &str, node: &str, owner: Owner) -> DomainDef {
    let run = PathBuf::from(format!("/tmp/kthw-libvirt-tier/{cluster_id}/{node}"));
    DomainDef {
        name: names::domain(cluster_id, node),
        accel: Accel::Tcg,
        vcpus: 1,
        memory_mib: 1024,
        kernel: run.join("vmlinuz"),
        initrd: run.join("initrd.img"),
        cmdline: "console=ttyS0 root=/dev/vda rw".to_string(),
        disk: run.join("disk.qcow2"),
        network: names::network(cluster_id),
        cluster_mac: Mac::for_node(node, Nic::Cluster),
        management: ManagementNic { mac: Mac::for_node(node, Nic::Management), ssh_port: 40022, egress: false },
        console: run.join("console.log"),
        fw_cfg: vec![
            FwCfgEntry { name: "opt/org.kthw/hostname".to_string(), file: run.join("fwcfg/hostname") },
            FwCfgEntry { name: "opt/org.kthw/cluster.network".to_string(), file: run.join("fwcfg/cluster.network") },
        ],
        ownership: ownership(cluster_id, Some(node), owner),
        run_as_root: true,
    }
}

/// An owner that cannot be running: a pid above the kernel's limit.
pub fn dead_owner() -> Owner {
    Owner { pid: u32::MAX - 1, start: 1 }
}
