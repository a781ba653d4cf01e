//! Debian packages of another suite on a node, for running on a Debian 12 node the versions a version set pins
//! the major of (containerd 2.x from sid, DESIGN.md's table): fetched by the host through the library's
//! `kthw::artifacts::debian` (an apt configuration of its own, signed by Debian's archive keyring), installed
//! by `kthw::bootstrap::install_debs`.

use std::path::{Path, PathBuf};

use kthw::artifacts::debian;
use kthw::ssh::Session;

/// The .deb of each of `packages` (unpinned: the suite's current version) from Debian `suite`, downloaded
/// once into `cache` and kept there. Err says what failed (apt's own words), for the caller to skip or fail on.
pub fn fetch(suite: &str, packages: &[&str], cache: &Path) -> Result<Vec<PathBuf>, String> {
    let dir = debian::suite_dir(cache, suite);
    if let Some(all) = packages.iter().map(|p| debian::find(&dir, p)).collect::<Option<Vec<_>>>() {
        return Ok(all);
    }
    let wanted: Vec<String> = packages.iter().map(|p| p.to_string()).collect();
    debian::download(suite, &wanted, &dir).map_err(|e| kthw::chain(&e))?;
    packages
        .iter()
        .map(|p| {
            debian::find(&dir, p)
                .ok_or_else(|| format!("apt-get download {p} ({suite}) left no {p}_*.deb in {}", dir.display()))
        })
        .collect()
}

/// [`fetch`] into the test cache, or None (the test skips, saying why) where Debian's package registry cannot
/// be reached; a failure under `CI=true`.
pub fn fetch_or_skip(suite: &str, packages: &[&str]) -> Option<Vec<PathBuf>> {
    kthw::testing::needs(
        fetch(suite, packages, &crate::test_paths().cache)
            .map_err(|why| format!("Debian {suite}'s {packages:?} on a node: {why}")),
    )
}

/// The pinned packages `debs` in the test cache (the one `kthw up` of the test home uses), or None as
/// [`fetch_or_skip`].
pub fn fetch_pinned_or_skip(debs: &[debian::Deb]) -> Option<Vec<PathBuf>> {
    kthw::testing::needs(
        debian::fetch_pinned(debs, &crate::test_paths().cache)
            .map_err(|e| format!("pinned Debian packages on a node: {}", kthw::chain(&e))),
    )
}

/// Installs `debs` on the node as the etcd phase does, without starting what they ship.
pub async fn install(node: &Session, debs: &[PathBuf]) {
    if let Err(e) = kthw::bootstrap::install_debs(node, debs).await {
        panic!("installing {debs:?}: {}", kthw::chain(&e));
    }
}
