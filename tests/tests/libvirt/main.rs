//! The libvirt tier: see tests/README.md.
