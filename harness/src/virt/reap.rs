//! Finding and removing what kthw defined in libvirt. Which objects may go is the caller's decision (it
//! knows whether the owning run is alive or was kept); this module only recognises kthw's objects by their
//! metadata and removes them, domains before the networks they use.

use virt::connect::Connect;

use super::metadata::Ownership;
use super::{domain, libvirt_error, network, VirtError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Domain,
    Network,
}

/// A libvirt object that carries kthw's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    pub kind: Kind,
    pub name: String,
    pub ownership: Ownership,
}

/// Every domain and network (running or only defined) that kthw made, on this connection.
pub fn owned(conn: &Connect) -> Result<Vec<Owned>, VirtError> {
    let mut found = Vec::new();
    for dom in conn.list_all_domains(0).map_err(|e| libvirt_error("list domains", "all", e))? {
        let (Ok(name), Ok(xml)) = (dom.name(), dom.xml_desc(0)) else { continue };
        if let Some(ownership) = Ownership::from_object_xml(&xml) {
            found.push(Owned { kind: Kind::Domain, name, ownership });
        }
    }
    for net in conn.list_all_networks(0).map_err(|e| libvirt_error("list networks", "all", e))? {
        let (Ok(name), Ok(xml)) = (net.name(), net.xml_desc(0)) else { continue };
        if let Some(ownership) = Ownership::from_object_xml(&xml) {
            found.push(Owned { kind: Kind::Network, name, ownership });
        }
    }
    Ok(found)
}

/// Removes every kthw object for which `keep` says no: domains first (in parallel: QEMU takes a second or
/// two to exit), then networks. Returns what was removed; an object that vanished meanwhile (its own run
/// tore it down) is not an error.
pub fn reap(conn: &Connect, keep: impl Fn(&Ownership) -> bool) -> Result<Vec<Owned>, VirtError> {
    let (domains, networks): (Vec<Owned>, Vec<Owned>) =
        owned(conn)?.into_iter().filter(|o| !keep(&o.ownership)).partition(|o| o.kind == Kind::Domain);
    let domain_results: Vec<Result<bool, VirtError>> = std::thread::scope(|s| {
        let handles: Vec<_> = domains.iter().map(|o| s.spawn(|| domain::remove(conn, &o.name))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(VirtError::Join("domain removal panicked".into()))))
            .collect()
    });
    let mut removed = Vec::new();
    for (o, result) in domains.into_iter().zip(domain_results) {
        if result? {
            removed.push(o);
        }
    }
    for o in networks {
        if network::remove(conn, &o.name)? {
            removed.push(o);
        }
    }
    for o in &removed {
        tracing::debug!(kind = ?o.kind, name = %o.name, cluster = %o.ownership.cluster_id, owner = o.ownership.owner.pid, "removed");
    }
    Ok(removed)
}
