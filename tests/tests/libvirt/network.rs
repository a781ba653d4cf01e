//! The cluster network: isolated, addressless, and carrying kthw's ownership metadata.

use kthw::virt::{names, network, Owner, Ownership};

use crate::common::{network_def, test_driver};

#[test]
fn an_isolated_network_is_defined_started_and_removed() {
    let conn = test_driver();
    let id = names::new_cluster_id();
    let def = network_def(&id, Owner::current());
    network::create(&conn, &def).unwrap();

    let net = conn.lookup_network_by_name(&def.name).unwrap();
    assert!(net.is_active().unwrap());
    assert!(net.is_persistent().unwrap(), "persistent, so a reaper finds it after a daemon restart");
    assert_eq!(net.bridge_name().unwrap(), def.bridge);

    let xml = network::xml(&conn, &def.name).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let children: Vec<&str> =
        doc.root_element().children().filter(|c| c.is_element()).map(|c| c.tag_name().name()).collect();
    for absent in ["forward", "ip", "dns"] {
        assert!(!children.contains(&absent), "an isolated network has no <{absent}>:\n{xml}");
    }

    assert!(network::remove(&conn, &def.name).unwrap());
    assert!(conn.lookup_network_by_name(&def.name).is_err(), "undefined, not only stopped");
    assert!(!network::remove(&conn, &def.name).unwrap(), "removing twice is not an error");
}

#[test]
fn the_network_keeps_our_metadata() {
    let conn = test_driver();
    let id = names::new_cluster_id();
    let def = network_def(&id, Owner::current());
    network::create(&conn, &def).unwrap();
    let back = Ownership::from_object_xml(&network::xml(&conn, &def.name).unwrap());
    network::remove(&conn, &def.name).unwrap();
    assert_eq!(back, Some(def.ownership));
}

#[test]
fn a_second_network_with_the_same_name_is_refused_with_libvirts_reason() {
    let conn = test_driver();
    let id = names::new_cluster_id();
    let def = network_def(&id, Owner::current());
    network::create(&conn, &def).unwrap();
    let clash = network::NetworkDef { bridge: format!("kthw-x{}", &id[..7]), ..def.clone() };
    let err = network::create(&conn, &clash);
    network::remove(&conn, &def.name).unwrap();
    let err = err.unwrap_err().to_string();
    assert!(err.contains(&def.name), "{err}");
}
