//! kthw: stand up a Kubernetes-the-hard-way cluster with Cilium on libvirt/QEMU, and test it.
//!
//! Data flows one way: `spec` → `image` → `virt` → `ssh` → `bootstrap` → scenarios. Lower layers never
//! import upper ones.

pub mod accel;
pub mod artifacts;
pub mod bootstrap;
pub mod cluster;
pub mod doctor;
pub mod files;
pub mod identity;
pub mod image;
pub mod kubeconfig;
pub mod paths;
pub mod pki;
pub mod spec;
pub mod ssh;
pub mod virt;

pub use spec::ClusterSpec;
