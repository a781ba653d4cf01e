//! kthw: stand up a Kubernetes-the-hard-way cluster with Cilium on libvirt/QEMU, and test it.
//!
//! Data flows one way: `spec` → `image` → `virt` → `cluster` (with `ssh`) → `bootstrap` → `up`, and the
//! scenarios above them. Lower layers never import upper ones; at the bottom, every layer may name a
//! [`phase::Phase`], spell a path through [`rundir::RunDir`] and emit [`event::Event`]s through
//! [`events::Events`].

pub mod accel;
pub mod access;
pub mod artifacts;
pub mod boot_stage;
pub mod bootstrap;
pub mod bundle;
pub mod cluster;
pub mod diagnosis;
pub mod doctor;
pub mod event;
pub mod events;
pub mod files;
pub mod golden;
pub mod identity;
pub mod image;
pub mod keep;
pub mod kubeconfig;
pub mod oci;
pub mod paths;
pub mod phase;
pub mod pki;
pub mod rundir;
pub mod signals;
pub mod spec;
pub mod ssh;
pub mod tasks;
pub mod testing;
// What users write their tests with: every public item documented (CI's -D warnings holds it).
#[warn(missing_docs)]
pub mod testkit;
pub mod timeline;
pub mod up;
pub mod virt;

pub use spec::ClusterSpec;

// The crates whose types kthw's public API carries, so a user's test names the very types kthw takes and
// returns (`kthw::kube::Client`, `kthw::k8s_openapi::api::core::v1::Pod`, the spec's networks and Cilium
// values) whatever versions its own Cargo.toml would otherwise resolve.
pub use ipnet;
pub use k8s_openapi;
pub use kube;
pub use serde_json;
pub use toml;

/// What `kthw --version` prints: the crate version and the hash of the library's sources (harness/build.rs).
/// The crate version stays put while the code changes; tests that run the `kthw` binary compare this to
/// tell a binary built from other sources (kthw_tests::kthw_bin).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (library sources ", env!("KTHW_SOURCE_HASH"), ")");

/// An error and every cause under it, one per line after the first (`a: b` on one line repeats nothing:
/// each layer writes only its own part).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str("\n  caused by: ");
        text.push_str(&c.to_string().replace('\n', "\n  "));
        cause = c.source();
    }
    text
}
