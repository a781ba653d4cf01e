//! libvirt: networks, domains, disks and reaping, through the `virt` crate only (no virsh).
//! Its API is blocking: async callers use [`blocking`] (or their own `spawn_blocking`).

pub mod caps;
pub mod connect;
pub mod disk;
pub mod domain;
pub mod metadata;
pub mod names;
pub mod network;
pub mod reap;
pub(crate) mod xml;

use std::path::PathBuf;

pub use metadata::{Owner, Ownership};

/// What went wrong talking to libvirt, with the object and the daemon's own words.
#[derive(Debug, thiserror::Error)]
pub enum VirtError {
    #[error("cannot connect to libvirt at {uri}: {message}\n  is the daemon running? `kthw doctor` checks; `sudo scripts/setup-host` starts it")]
    Connect { uri: String, message: String },
    #[error("libvirt could not {action} {object}: {message}")]
    Libvirt { action: &'static str, object: String, message: String },
    #[error("no {kind} named {name} in libvirt")]
    NotFound { kind: &'static str, name: String },
    #[error("cannot create the overlay {} on {}: {message}", overlay.display(), base.display())]
    Overlay { overlay: PathBuf, base: PathBuf, message: String },
    #[error("no free loopback port for a forward: {0}")]
    Port(std::io::Error),
    #[error("a libvirt call did not finish: {0}")]
    Join(String),
    #[error(transparent)]
    Capabilities(#[from] caps::CapsError),
}

pub fn libvirt_error(action: &'static str, object: &str, e: virt::error::Error) -> VirtError {
    VirtError::Libvirt { action, object: object.to_string(), message: e.message().to_string() }
}

/// Runs blocking libvirt work off the async runtime.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, VirtError> + Send + 'static,
) -> Result<T, VirtError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| VirtError::Join(e.to_string()))?
}

/// A loopback port nothing listens on right now. Another process may take it before QEMU binds it; the
/// caller retries with a new port when starting the domain fails for that reason.
pub fn free_port() -> Result<u16, VirtError> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(VirtError::Port)?;
    Ok(l.local_addr().map_err(VirtError::Port)?.port())
}
