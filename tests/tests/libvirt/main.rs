//! The libvirt tier: see tests/README.md. Runs against libvirt's `test:///default` driver: no daemon, no
//! QEMU, the real libvirt library parsing and keeping the XML kthw generates; the capability probe's tests
//! (`caps`) ask the host's daemon and QEMU, and skip without them.

mod caps;
mod common;
mod domain;
mod network;
mod reap;
