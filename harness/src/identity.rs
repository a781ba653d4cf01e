//! A node's identity, delivered at boot through QEMU fw_cfg rather than baked into a per-node image:
//! hostname, the static address of its cluster NIC (matched by MAC), the authorized key, the SSH host key the
//! harness made for it, and optionally an /etc/hosts naming every node.
//!
//! Each item is one fw_cfg file under `opt/org.kthw/`; the guest unit in `images/debian` copies them into
//! place before networking and sshd start. The format is documented in images/README.md.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::spec::ClusterSpec;

/// fw_cfg names live under `opt/` with a reverse-domain prefix, as QEMU's documentation asks.
pub const FW_CFG_PREFIX: &str = "opt/org.kthw/";

/// A locally administered unicast MAC in QEMU's 52:54:00 range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

/// Which of a node's two NICs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nic {
    /// NIC 1: on the cluster's isolated network, with the spec's static address.
    Cluster,
    /// NIC 2: user-mode, carrying only the loopback SSH forward (and egress when the spec allows it).
    Management,
}

impl Mac {
    /// Stable for a node and NIC, so a restored or re-created node keeps its addresses. The cluster id is
    /// not mixed in: clusters never share a network, and golden-state copies must keep the saved MACs.
    pub fn for_node(node: &str, nic: Nic) -> Mac {
        let mut h = Sha256::new();
        h.update(node.as_bytes());
        h.update([match nic {
            Nic::Cluster => 1u8,
            Nic::Management => 2u8,
        }]);
        let d = h.finalize();
        Mac([0x52, 0x54, 0x00, d[0], d[1], d[2]])
    }
}

/// Everything a node learns about itself at boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    pub hostname: String,
    pub cluster_mac: Mac,
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub management_mac: Mac,
    /// May the management NIC carry traffic beyond the SSH forward (a default route through it).
    pub egress: bool,
    /// authorized_keys for root: the harness's per-cluster client key.
    pub authorized_keys: String,
    /// The node's ed25519 host key in OpenSSH private-key format; the harness pins its public half.
    pub host_key: String,
    /// /etc/hosts naming every node, or None to leave name resolution to systemd-resolved (the seed's setup).
    pub hosts: Option<String>,
}

/// One fw_cfg entry: its name in the guest and the host file QEMU reads it from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FwCfgEntry {
    pub name: String,
    pub file: PathBuf,
}

impl NodeIdentity {
    /// The identity of `node` in `spec`, with keys made by the harness.
    pub fn for_node(spec: &ClusterSpec, node: &str, authorized_keys: String, host_key: String) -> Option<Self> {
        let n = spec.node(node)?;
        Some(NodeIdentity {
            hostname: n.name.clone(),
            cluster_mac: Mac::for_node(&n.name, Nic::Cluster),
            address: n.address,
            prefix_len: spec.network.nodes.prefix_len(),
            management_mac: Mac::for_node(&n.name, Nic::Management),
            egress: spec.egress,
            authorized_keys,
            host_key,
            hosts: spec.resolve_node_names.then(|| hosts_file(spec, &n.name)),
        })
    }

    /// The files, by fw_cfg name suffix. `hosts` is absent when node names are left unresolved.
    pub fn files(&self) -> Vec<(&'static str, String)> {
        let mut files = vec![
            ("hostname", format!("{}\n", self.hostname)),
            ("cluster.network", self.cluster_network()),
            ("management.network", self.management_network()),
            ("authorized_keys", ensure_newline(&self.authorized_keys)),
            ("ssh_host_ed25519_key", ensure_newline(&self.host_key)),
        ];
        if let Some(h) = &self.hosts {
            files.push(("hosts", h.clone()));
        }
        files
    }

    /// Writes the files into `dir` (private: one holds a host key) and returns the fw_cfg entries.
    pub fn write(&self, dir: &Path) -> std::io::Result<Vec<FwCfgEntry>> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        let mut entries = Vec::new();
        for (name, content) in self.files() {
            let file = dir.join(name);
            crate::files::write_atomic(&file, content.as_bytes(), 0o600)?;
            entries.push(FwCfgEntry { name: format!("{FW_CFG_PREFIX}{name}"), file });
        }
        Ok(entries)
    }

    fn cluster_network(&self) -> String {
        format!(
            "[Match]\nMACAddress={}\n\n[Link]\nRequiredForOnline=yes\n\n[Network]\nAddress={}/{}\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n",
            self.cluster_mac, self.address, self.prefix_len
        )
    }

    fn management_network(&self) -> String {
        // Without egress the management NIC still needs its address (the SSH forward arrives on it) but
        // must not become the default route: nothing in the cluster should try to leave through it.
        let routes = if self.egress { "" } else { "UseRoutes=no\nUseGateway=no\n" };
        format!(
            "[Match]\nMACAddress={}\n\n[Link]\nRequiredForOnline=no\n\n[Network]\nDHCP=ipv4\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n\n[DHCPv4]\nUseDNS={}\nUseHostname=no\n{routes}",
            self.management_mac,
            if self.egress { "yes" } else { "no" },
        )
    }
}

fn ensure_newline(s: &str) -> String {
    if s.ends_with('\n') {
        s.to_string()
    } else {
        format!("{s}\n")
    }
}

/// /etc/hosts for `me`: localhost, then every node by its cluster address (so the apiserver reaches
/// kubelets by name, which is what kube-apiserver's default `--kubelet-preferred-address-types` tries first).
pub fn hosts_file(spec: &ClusterSpec, me: &str) -> String {
    let mut s = format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n# every node of cluster {}, written by kthw (resolve_node_names = true)\n", spec.name);
    for n in &spec.nodes {
        let mark = if n.name == me { "\t# this node" } else { "" };
        s.push_str(&format!("{}\t{}{mark}\n", n.address, n.name));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(spec: &ClusterSpec, node: &str) -> NodeIdentity {
        NodeIdentity::for_node(
            spec,
            node,
            "ssh-ed25519 AAAA test".into(),
            "-----BEGIN OPENSSH PRIVATE KEY-----\n...\n-----END OPENSSH PRIVATE KEY-----".into(),
        )
        .unwrap()
    }

    #[test]
    fn macs_are_stable_distinct_and_locally_administered() {
        let spec = ClusterSpec::default();
        let mut seen = std::collections::HashSet::new();
        for n in &spec.nodes {
            for nic in [Nic::Cluster, Nic::Management] {
                let m = Mac::for_node(&n.name, nic);
                assert_eq!(m, Mac::for_node(&n.name, nic));
                assert_eq!(&m.0[..3], &[0x52, 0x54, 0x00]);
                assert!(seen.insert(m), "duplicate MAC {m}");
            }
        }
        assert_eq!(Mac([0x52, 0x54, 0, 1, 0xab, 2]).to_string(), "52:54:00:01:ab:02");
    }

    #[test]
    fn the_cluster_nic_gets_the_spec_address_matched_by_mac() {
        let spec = ClusterSpec::default();
        let id = identity(&spec, "control-plane-1");
        let files: std::collections::HashMap<_, _> = id.files().into_iter().collect();
        assert_eq!(files["hostname"], "control-plane-1\n");
        assert!(files["cluster.network"].contains(&format!("MACAddress={}", id.cluster_mac)));
        assert!(files["cluster.network"].contains("Address=10.0.0.4/24"));
        assert!(files["management.network"].contains("UseGateway=no"), "no egress: no default route");
        assert!(files["hosts"].contains("10.0.0.6\tworker-node-2"));
        assert!(files["ssh_host_ed25519_key"].ends_with("KEY-----\n"));
    }

    #[test]
    fn without_resolve_node_names_there_is_no_hosts_file() {
        let spec = ClusterSpec { resolve_node_names: false, egress: true, ..ClusterSpec::default() };
        let id = identity(&spec, "worker-node-1");
        assert!(id.files().iter().all(|(n, _)| *n != "hosts"));
        assert!(!id.management_network().contains("UseGateway=no"));
    }

    #[test]
    fn written_files_are_private_and_named_for_fw_cfg() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let entries = identity(&ClusterSpec::default(), "worker-node-1").write(&dir.path().join("fwcfg")).unwrap();
        assert_eq!(entries.len(), 6);
        for e in &entries {
            assert!(e.name.starts_with("opt/org.kthw/") && e.name.len() <= 55, "{}", e.name);
            let mode = std::fs::metadata(&e.file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", e.file.display());
        }
    }
}
