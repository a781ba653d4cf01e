//! Debian packages of another suite, fetched by the host through Debian's package registry (nodes have no
//! egress) with an apt configuration of its own: its own source list, signed by Debian's archive keyring,
//! its own lists and cache under the test cache, so the host's apt is left as it was. For running on a
//! Debian 12 node the versions a version set pins the major of (containerd 2.x from sid, DESIGN.md's table).

use std::path::{Path, PathBuf};
use std::process::Command;

use kthw::ssh::Session;

use crate::succeed;

/// The image recipe's Debian mirror, or `KTHW_DEBIAN_MIRROR`.
fn mirror() -> String {
    std::env::var("KTHW_DEBIAN_MIRROR").unwrap_or_else(|_| "http://deb.debian.org/debian".to_string())
}

/// The .deb of each of `packages` from Debian `suite`, downloaded once into `cache` and kept there.
/// Err says what failed (apt's own words), for the caller to skip or fail on.
pub fn fetch(suite: &str, packages: &[&str], cache: &Path) -> Result<Vec<PathBuf>, String> {
    let root = cache.join(format!("debs-{suite}"));
    let found = |p: &str| -> Option<PathBuf> {
        std::fs::read_dir(&root).ok()?.flatten().map(|e| e.path()).find(|f| {
            f.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{p}_")) && n.ends_with(".deb"))
        })
    };
    if let Some(all) = packages.iter().map(|p| found(p)).collect::<Option<Vec<_>>>() {
        return Ok(all);
    }
    let apt = root.join("apt");
    std::fs::create_dir_all(apt.join("lists/partial")).map_err(|e| e.to_string())?;
    let sources = apt.join("sources.list");
    std::fs::write(
        &sources,
        format!("deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {} {suite} main\n", mirror()),
    )
    .map_err(|e| e.to_string())?;
    let options = [
        format!("-oDir::Etc::SourceList={}", sources.display()),
        "-oDir::Etc::SourceParts=/dev/null".to_string(),
        format!("-oDir::State::Lists={}", apt.join("lists").display()),
        format!("-oDir::Cache={}", apt.join("cache").display()),
        // Downloads into a directory _apt cannot write are done as root, with a warning, not refused.
        "-oAPT::Sandbox::User=root".to_string(),
    ];
    let run = |args: &[&str]| -> Result<(), String> {
        let out = Command::new("apt-get")
            .args(&options)
            .args(["-q", "-y"])
            .args(args)
            .current_dir(&root)
            .output()
            .map_err(|e| format!("cannot run apt-get: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "apt-get {} ({suite}): {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(())
    };
    run(&["update"])?;
    let mut download = vec!["download"];
    download.extend_from_slice(packages);
    run(&download)?;
    packages
        .iter()
        .map(|p| {
            found(p).ok_or_else(|| format!("apt-get download {p} ({suite}) left no {p}_*.deb in {}", root.display()))
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

/// Installs `debs` on the node without starting what they ship (policy-rc.d, Debian's invoke-rc.d rule; the test
/// starts what it needs under the files it renders), keeping the configuration files already there.
pub async fn install(node: &Session, debs: &[PathBuf]) {
    succeed(node, "mkdir -p /var/lib/kthw/debs").await;
    let mut remote = Vec::new();
    for deb in debs {
        let at = format!("/var/lib/kthw/debs/{}", deb.file_name().unwrap().to_str().unwrap());
        node.upload(deb, &at, 0o644).await.unwrap();
        remote.push(at);
    }
    succeed(
        node,
        &format!(
            "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && \
             DEBIAN_FRONTEND=noninteractive dpkg --force-confold -i {} >/dev/null; rc=$?; rm -f /usr/sbin/policy-rc.d; exit $rc",
            remote.join(" ")
        ),
    )
    .await;
}
