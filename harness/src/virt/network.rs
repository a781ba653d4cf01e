//! The cluster's isolated network: a bridge with no host address, no forwarding and no DHCP, so the host
//! never routes into it and several clusters can use the same addresses side by side.

use virt::connect::Connect;
use virt::error::ErrorNumber;

use super::metadata::Ownership;
use super::xml::escape;
use super::{libvirt_error, VirtError};

/// One cluster network as kthw defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkDef {
    pub name: String,
    /// Linux limits interface names to 15 characters.
    pub bridge: String,
    pub ownership: Ownership,
}

impl NetworkDef {
    /// No `<forward>` makes it isolated; no `<ip>` leaves the host without an address (and without DHCP) on
    /// the bridge. libvirt also disables IPv6 on a bridge whose network asks for none, so no link-local
    /// address appears either.
    pub fn to_xml(&self) -> String {
        format!(
            "<network>
  <name>{}</name>
  <metadata>
    {}
  </metadata>
  <bridge name='{}' stp='off' delay='0'/>
</network>
",
            escape(&self.name),
            self.ownership.to_xml(),
            escape(&self.bridge),
        )
    }
}

/// Defines and starts the network; a network that fails to start is undefined again.
pub fn create(conn: &Connect, def: &NetworkDef) -> Result<(), VirtError> {
    let net = conn.define_network_xml(&def.to_xml()).map_err(|e| libvirt_error("define network", &def.name, e))?;
    if let Err(e) = net.create() {
        let _ = net.undefine();
        return Err(libvirt_error("start network", &def.name, e));
    }
    Ok(())
}

/// Stops and undefines `name`. Ok(false) when there was no such network.
pub fn remove(conn: &Connect, name: &str) -> Result<bool, VirtError> {
    let net = match conn.lookup_network_by_name(name) {
        Ok(n) => n,
        Err(e) if e.code().is(ErrorNumber::NoNetwork) => return Ok(false),
        Err(e) => return Err(libvirt_error("look up network", name, e)),
    };
    if net.is_active().unwrap_or(false) {
        net.destroy().map_err(|e| libvirt_error("stop network", name, e))?;
    }
    net.undefine().map_err(|e| libvirt_error("undefine network", name, e))?;
    Ok(true)
}

/// The full XML of a defined network.
pub fn xml(conn: &Connect, name: &str) -> Result<String, VirtError> {
    let net = conn.lookup_network_by_name(name).map_err(|e| libvirt_error("look up network", name, e))?;
    net.xml_desc(0).map_err(|e| libvirt_error("read network XML", name, e))
}
