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

/// A version as libvirt encodes it (major * 1,000,000 + minor * 1,000 + release, for itself and for the
/// hypervisor: virConnectGetLibVersion, virConnectGetVersion), as people write it: "11.3.0".
pub fn version_string(v: u32) -> String {
    format!("{}.{}.{}", v / 1_000_000, v / 1000 % 1000, v % 1000)
}
