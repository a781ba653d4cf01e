//! A node's domain: the XML kthw generates is accepted and kept by libvirt, and its lifecycle works.

use kthw::virt::{domain, names, network, Owner, Ownership};
use roxmltree::{Document, Node};

use crate::common::{domain_def, network_def, test_driver};

fn child<'a>(n: Node<'a, 'a>, name: &str) -> Node<'a, 'a> {
    n.children().find(|c| c.has_tag_name(name)).unwrap_or_else(|| panic!("no <{name}> in <{}>", n.tag_name().name()))
}

#[test]
fn a_node_domain_is_defined_started_stopped_and_undefined() {
    let conn = test_driver();
    let id = names::new_cluster_id();
    network::create(&conn, &network_def(&id, Owner::current())).unwrap();
    let def = domain_def(&id, "control-plane-1", Owner::current());

    domain::create(&conn, &def).unwrap();
    assert!(domain::is_active(&conn, &def.name).unwrap());
    assert!(domain::remove(&conn, &def.name).unwrap());
    assert!(!domain::is_active(&conn, &def.name).unwrap());
    assert!(conn.lookup_domain_by_name(&def.name).is_err(), "undefined, not only stopped");
    assert!(!domain::remove(&conn, &def.name).unwrap(), "removing twice is not an error");
    network::remove(&conn, &names::network(&id)).unwrap();
}

#[test]
fn libvirt_keeps_what_we_generate() {
    let conn = test_driver();
    let id = names::new_cluster_id();
    network::create(&conn, &network_def(&id, Owner::current())).unwrap();
    let def = domain_def(&id, "worker-node-1", Owner::current());
    domain::create(&conn, &def).unwrap();
    let xml = domain::xml(&conn, &def.name).unwrap();
    domain::remove(&conn, &def.name).unwrap();
    network::remove(&conn, &names::network(&id)).unwrap();

    let doc = Document::parse(&xml).unwrap();
    let dom = doc.root_element();
    assert_eq!(dom.attribute("type"), Some("qemu"), "TCG is libvirt's `qemu` domain type");
    assert_eq!(child(dom, "vcpu").text(), Some("1"));
    assert_eq!(child(dom, "memory").text(), Some("1048576"), "1024 MiB in KiB");

    let os = child(dom, "os");
    assert_eq!(child(os, "kernel").text(), def.kernel.to_str());
    assert_eq!(child(os, "initrd").text(), def.initrd.to_str());
    assert_eq!(child(os, "cmdline").text(), Some(def.cmdline.as_str()));

    let features = child(dom, "features");
    child(features, "acpi");
    child(features, "apic");

    let sysinfo = child(dom, "sysinfo");
    assert_eq!(sysinfo.attribute("type"), Some("fwcfg"));
    let entries: Vec<(&str, &str)> = sysinfo
        .children()
        .filter(|c| c.has_tag_name("entry"))
        .map(|e| (e.attribute("name").unwrap(), e.attribute("file").unwrap()))
        .collect();
    let expected: Vec<(&str, &str)> = def.fw_cfg.iter().map(|e| (e.name.as_str(), e.file.to_str().unwrap())).collect();
    assert_eq!(entries, expected);

    let devices = child(dom, "devices");
    let disk = child(devices, "disk");
    assert_eq!(child(disk, "driver").attribute("type"), Some("qcow2"));
    assert_eq!(child(disk, "source").attribute("file"), def.disk.to_str());
    let nic = child(devices, "interface");
    assert_eq!(nic.attribute("type"), Some("network"));
    assert_eq!(child(nic, "source").attribute("network"), Some(def.network.as_str()));
    assert_eq!(child(nic, "mac").attribute("address"), Some(def.cluster_mac.to_string().as_str()));
    let serial = child(devices, "serial");
    assert_eq!(serial.attribute("type"), Some("file"));
    assert_eq!(child(serial, "source").attribute("path"), def.console.to_str());
    let rng = child(devices, "rng");
    assert_eq!(rng.attribute("model"), Some("virtio"), "the guest's CRNG is seeded by the host");
    assert_eq!(child(rng, "backend").text(), Some("/dev/urandom"));

    let seclabel = dom.children().find(|c| c.has_tag_name("seclabel") && c.attribute("model") == Some("dac"));
    let seclabel = seclabel.expect("QEMU runs as root with a static DAC label");
    assert_eq!(seclabel.attribute("relabel"), Some("no"));
    assert_eq!(child(seclabel, "label").text(), Some("+0:+0"));

    assert_eq!(Ownership::from_object_xml(&xml), Some(def.ownership.clone()), "metadata round trip");
}

#[test]
fn the_management_nic_forwards_loopback_only_and_restricts_egress() {
    let def = domain_def(&names::new_cluster_id(), "worker-node-2", Owner::current());
    let xml = def.to_xml();
    let doc = Document::parse(&xml).unwrap();
    let args: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name(("http://libvirt.org/schemas/domain/qemu/1.0", "arg")))
        .map(|n| n.attribute("value").unwrap())
        .collect();
    assert_eq!(args.len(), 4, "{args:?}");
    assert_eq!(args[0], "-netdev");
    assert_eq!(args[1], "user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:40022-:22");
    assert_eq!(args[2], "-device");
    assert!(args[3].contains(&format!("mac={}", def.management.mac)), "{}", args[3]);

    let open = kthw::virt::domain::DomainDef {
        management: domain::ManagementNic { egress: true, ..def.management.clone() },
        ..def
    };
    assert!(open.to_xml().contains("restrict=off"));
}

#[test]
fn under_kvm_the_guest_gets_the_host_cpu_and_no_translation_cache() {
    let conn = test_driver();
    let id = names::new_cluster_id();
    network::create(&conn, &network_def(&id, Owner::current())).unwrap();
    let def = domain::DomainDef {
        accel: kthw::accel::Accel::Kvm,
        run_as_root: false,
        ..domain_def(&id, "control-plane-1", Owner::current())
    };
    domain::create(&conn, &def).unwrap();
    let xml = domain::xml(&conn, &def.name).unwrap();
    domain::remove(&conn, &def.name).unwrap();
    network::remove(&conn, &names::network(&id)).unwrap();

    let doc = Document::parse(&xml).unwrap();
    let dom = doc.root_element();
    assert_eq!(dom.attribute("type"), Some("kvm"));
    assert_eq!(child(dom, "cpu").attribute("mode"), Some("host-passthrough"));
    assert!(!child(dom, "features").children().any(|c| c.has_tag_name("tcg")));
    assert!(!dom.children().any(|c| c.has_tag_name("seclabel")), "unprivileged runs need no label");
}
