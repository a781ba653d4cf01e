//! libvirt names are global on a connection, so each cluster's objects carry its unique id: two clusters
//! (two people's tests, or two copies of one saved state) never collide, while node names and addresses
//! stay identical inside each.

/// Every kthw object name starts with this.
pub const PREFIX: &str = "kthw-";

/// A fresh cluster id: 8 hex digits.
pub fn new_cluster_id() -> String {
    format!("{:08x}", rand::random::<u32>())
}

pub fn network(cluster_id: &str) -> String {
    format!("{PREFIX}{cluster_id}")
}

/// The bridge interface: at most 15 characters (IFNAMSIZ - 1) for an 8-digit id.
pub fn bridge(cluster_id: &str) -> String {
    format!("{PREFIX}{cluster_id}")
}

pub fn domain(cluster_id: &str, node: &str) -> String {
    format!("{PREFIX}{cluster_id}-{node}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_bridge_names_fit_linux() {
        let a = new_cluster_id();
        let b = new_cluster_id();
        assert_ne!(a, b);
        assert!(bridge(&a).len() <= 15, "{}", bridge(&a));
        assert_eq!(domain(&a, "worker-node-1"), format!("kthw-{a}-worker-node-1"));
    }
}
