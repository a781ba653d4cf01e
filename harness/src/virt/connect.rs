//! Which libvirt daemon kthw talks to, and opening a connection to it with an error that says what to do.

use virt::connect::Connect;

use super::VirtError;

/// `KTHW_LIBVIRT_URI`, else qemu:///system for root (no user session daemon there) and qemu:///session
/// for everyone else.
pub fn uri() -> String {
    if let Ok(u) = std::env::var("KTHW_LIBVIRT_URI") {
        if !u.is_empty() {
            return u;
        }
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        "qemu:///system".to_string()
    } else {
        "qemu:///session".to_string()
    }
}

/// A blocking connection; call it from `spawn_blocking` in async code.
pub fn open(uri: &str) -> Result<Connect, VirtError> {
    Connect::open(Some(uri)).map_err(|e| VirtError::Connect { uri: uri.to_string(), message: e.to_string() })
}
