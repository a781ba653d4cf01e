//! libvirt: networks, domains, consoles and reaping, through the `virt` crate only (no virsh).
//! Its API is blocking: async callers wrap calls in `tokio::task::spawn_blocking`.

pub mod connect;

/// What went wrong talking to libvirt, with the object and the daemon's own words.
#[derive(Debug, thiserror::Error)]
pub enum VirtError {
    #[error("cannot connect to libvirt at {uri}: {message}\n  is the daemon running? `kthw doctor` checks; `sudo scripts/setup-host` starts it")]
    Connect { uri: String, message: String },
}
