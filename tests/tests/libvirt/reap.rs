//! Reaping: what a dead owner left goes, a live owner's objects and foreign objects stay.

use kthw::virt::reap::{self, Kind};
use kthw::virt::{domain, names, network, Owner};

use crate::common::{dead_owner, domain_def, network_def, test_driver};

#[test]
fn a_dead_owners_cluster_is_reaped_and_a_live_ones_is_not() {
    let conn = test_driver();
    let live = names::new_cluster_id();
    let dead = names::new_cluster_id();
    for (id, owner) in [(&live, Owner::current()), (&dead, dead_owner())] {
        network::create(&conn, &network_def(id, owner)).unwrap();
        for node in ["control-plane-1", "worker-node-1"] {
            domain::create(&conn, &domain_def(id, node, owner)).unwrap();
        }
    }

    let removed = reap::reap(&conn, |o| o.owner.is_alive()).unwrap();

    let mut got: Vec<(Kind, String)> = removed.iter().map(|o| (o.kind, o.name.clone())).collect();
    got.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        got,
        vec![
            (Kind::Network, names::network(&dead)),
            (Kind::Domain, names::domain(&dead, "control-plane-1")),
            (Kind::Domain, names::domain(&dead, "worker-node-1")),
        ]
    );
    assert_eq!(removed.last().unwrap().kind, Kind::Network, "domains go before the network they use");
    assert!(conn.lookup_network_by_name(&names::network(&dead)).is_err());

    let left: Vec<String> = reap::owned(&conn).unwrap().into_iter().map(|o| o.name).collect();
    for node in ["control-plane-1", "worker-node-1"] {
        assert!(left.contains(&names::domain(&live, node)), "{left:?}");
    }
    assert!(left.contains(&names::network(&live)));
    assert!(conn.lookup_domain_by_name("test").is_ok(), "the driver's own domain is not ours to reap");

    for node in ["control-plane-1", "worker-node-1"] {
        domain::remove(&conn, &names::domain(&live, node)).unwrap();
    }
    network::remove(&conn, &names::network(&live)).unwrap();
}
