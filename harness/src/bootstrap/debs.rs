//! Installing Debian packages the host fetched (`artifacts::debian`) on a node, which has no egress.

use std::path::PathBuf;

use crate::artifacts::debian::Deb;
use crate::ssh::{shell_quote, Session, SshError};

/// Where uploaded packages wait on the node for dpkg.
const NODE_DEBS: &str = "/var/lib/kthw/debs";

/// Uploads `debs` and installs them with dpkg without starting what they ship (a policy-rc.d that says 101,
/// Debian's invoke-rc.d rule: the phases start what they need under the units they render), keeping the
/// configuration files already there.
pub async fn install_debs(node: &Session, debs: &[PathBuf]) -> Result<(), SshError> {
    node.succeed(&format!("mkdir -p {NODE_DEBS}")).await?;
    let mut remote = Vec::new();
    for deb in debs {
        let name = deb.file_name().and_then(|n| n.to_str()).expect("a .deb file name");
        let at = format!("{NODE_DEBS}/{name}");
        node.upload(deb, &at, 0o644).await?;
        remote.push(shell_quote(&at));
    }
    let cmd = format!(
        "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && \
         DEBIAN_FRONTEND=noninteractive dpkg --force-confold -i {} >/dev/null; rc=$?; \
         rm -f /usr/sbin/policy-rc.d {}; exit $rc",
        remote.join(" "),
        remote.join(" ")
    );
    node.succeed(&cmd).await.map(drop)
}

/// The pinned packages of `pinned` the node does not have at their pinned version (dpkg's view).
pub async fn not_installed<'a>(node: &Session, pinned: &'a [Deb]) -> Result<Vec<&'a Deb>, SshError> {
    let names: Vec<String> = pinned.iter().map(|d| shell_quote(d.package)).collect();
    let out = node
        .succeed(&format!(
            "dpkg-query -W -f '${{Package}} ${{Version}} ${{db:Status-Status}}\\n' {} 2>/dev/null; true",
            names.join(" ")
        ))
        .await?;
    let have = out.stdout_lossy();
    Ok(pinned.iter().filter(|d| !have.lines().any(|l| l == format!("{} {} installed", d.package, d.version))).collect())
}
