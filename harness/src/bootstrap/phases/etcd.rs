//! The `etcd` phase: etcd with TLS on the control plane, from the pinned upstream release or the node image's
//! Debian package (etcd 3.4; `etcd_from = "debian"`), done when `etcdctl endpoint health` answers with our
//! client certificate.
//!
//! Debian's own `etcd.service` (a plaintext single node on localhost) is disabled in the image; ours is
//! installed under the same name in /etc/systemd/system, which shadows the package's unit entirely (masking it
//! would mask ours too).

use std::path::Path;
use std::time::Duration;

use crate::bootstrap::context::Ctx;
use crate::bootstrap::node::{install, start, wait, Put, Wait};
use crate::bootstrap::node_files::etcd_files;
use crate::bootstrap::BootstrapError;
use crate::spec::Origin;
use crate::ssh::shell_quote;

/// Written for KVM (Debian's etcd answers in about a second), scaled by the accelerator.
const HEALTHY_DEADLINE: Duration = Duration::from_secs(30);

/// The upstream tarball's members the control plane runs.
fn members(upstream_version: &str) -> Vec<String> {
    ["etcd", "etcdctl"].iter().map(|b| format!("etcd-{upstream_version}-linux-amd64/{b}")).collect()
}

pub(super) async fn run(ctx: &Ctx<'_>) -> Result<Vec<String>, BootstrapError> {
    let (phase, spec, layout, b) = (ctx.phase, ctx.spec(), ctx.layout(), ctx.b);
    let cp = &spec.control_plane().name;
    let s = ctx.session(cp).await?;

    let mut files: Vec<Put> = match spec.etcd_from {
        Origin::Upstream => {
            let (a, _) = b.artifact(phase, "etcd")?;
            let bins = b.binaries(phase, "etcd", &members(&a.upstream_version))?;
            bins.into_iter()
                .map(|p| Put::file(layout.bin_dir.join(p.file_name().expect("a binary")), p, 0o755))
                .collect()
        }
        Origin::Debian => {
            let (etcd, etcdctl) = (layout.etcd_binary(spec), layout.etcdctl_binary(spec));
            let q = |p: &Path| shell_quote(&p.display().to_string());
            let probe = format!("test -x {} && test -x {}", q(&etcd), q(&etcdctl));
            if !ctx.ssh(s.exec(&probe, Duration::from_secs(30)).await)?.success() {
                return Err(BootstrapError::Node {
                    phase,
                    detail: format!(
                        "{cp} has no {} or {}: etcd_from = \"debian\" needs the node image's etcd-server and \
                         etcd-client packages (rebuild the image with `kthw image build`)",
                        etcd.display(),
                        etcdctl.display()
                    ),
                });
            }
            Vec::new()
        }
    };
    files.extend(etcd_files(spec, layout, ctx.accel()).into_iter().map(Put::from));
    let changed = install(phase, &s, &files).await?;
    // etcd refuses, or warns about, a data directory others can read.
    let data = shell_quote(&layout.etcd_data_dir.display().to_string());
    ctx.ssh(s.succeed(&format!("install -d -m 0700 {data}")).await)?;
    start(phase, &s, &["etcd"], !changed.is_empty()).await?;
    let check = format!("{} endpoint health", layout.etcdctl(spec));
    let w = Wait {
        what: "etcd to answer `endpoint health` over TLS with the etcd-client certificate".into(),
        check,
        unit: Some("etcd".into()),
        deadline: ctx.accel().scale(HEALTHY_DEADLINE),
    };
    wait(phase, &s, &w, ctx.events).await?;
    Ok(changed.into_iter().map(|p| format!("{cp}:{}", p.display())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upstream_members_follow_the_release_layout() {
        assert_eq!(members("v3.5.21"), ["etcd-v3.5.21-linux-amd64/etcd", "etcd-v3.5.21-linux-amd64/etcdctl"]);
    }
}
