//! The `etcd` phase: etcd with TLS on the control plane, from the pinned upstream release or the node image's
//! Debian package (etcd 3.4; `etcd_from = "debian"`), done when `etcdctl endpoint health` answers with our
//! client certificate.
//!
//! Debian's own `etcd.service` (a plaintext single node on localhost) is disabled in the image; ours is
//! installed under the same name in /etc/systemd/system, which shadows the package's unit entirely (masking it
//! would mask ours too).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::node::{install, ssh, start, wait, Put, Wait};
use super::run::session;
use super::{etcd_files, Bootstrap, BootstrapError, Layout, Phase};
use crate::cluster::Cluster;
use crate::spec::{ClusterSpec, EtcdSource};
use crate::ssh::shell_quote;

/// Written for KVM (Debian's etcd answers in about a second), scaled by the accelerator.
const HEALTHY_DEADLINE: Duration = Duration::from_secs(30);

/// The upstream tarball's members the control plane runs.
fn members(upstream_version: &str) -> Vec<String> {
    ["etcd", "etcdctl"].iter().map(|b| format!("etcd-{upstream_version}-linux-amd64/{b}")).collect()
}

/// etcdctl beside the etcd binary the spec chooses.
pub fn etcdctl_binary(spec: &ClusterSpec, layout: &Layout) -> PathBuf {
    layout.etcd_binary(spec).with_file_name("etcdctl")
}

/// An etcdctl command line (API v3, which etcd 3.4's etcdctl needs asked for) against the control plane's
/// client URL over TLS, as the client whose certificate and key are at `cert` and `key`.
pub fn etcdctl_as(spec: &ClusterSpec, layout: &Layout, cert: &Path, key: &Path) -> String {
    let q = |p: &Path| shell_quote(&p.display().to_string());
    format!(
        "ETCDCTL_API=3 {} --endpoints=https://{}:2379 --cacert={} --cert={} --key={}",
        q(&etcdctl_binary(spec, layout)),
        spec.control_plane().address,
        q(&layout.cert("ca")),
        q(cert),
        q(key),
    )
}

/// etcdctl as the apiserver's etcd client (`etcd-client`).
pub fn etcdctl(spec: &ClusterSpec, layout: &Layout) -> String {
    etcdctl_as(spec, layout, &layout.cert("etcd-client"), &layout.key("etcd-client"))
}

pub(super) async fn run(b: &Bootstrap, cluster: &Cluster) -> Result<Vec<String>, BootstrapError> {
    let phase = Phase::Etcd;
    let spec = cluster.spec();
    let layout = &b.layout;
    let cp = &spec.control_plane().name;
    let s = session(cluster, phase, cp).await?;

    let mut files: Vec<Put> = match spec.etcd_from {
        EtcdSource::Upstream => {
            let (a, _) = b.artifact(phase, "etcd")?;
            let bins = b.binaries(phase, "etcd", &members(&a.upstream_version))?;
            bins.into_iter()
                .map(|p| Put::file(layout.bin_dir.join(p.file_name().expect("a binary")), p, 0o755))
                .collect()
        }
        EtcdSource::Debian => {
            let (etcd, etcdctl) = (layout.etcd_binary(spec), etcdctl_binary(spec, layout));
            let q = |p: &Path| shell_quote(&p.display().to_string());
            let probe = format!("test -x {} && test -x {}", q(&etcd), q(&etcdctl));
            if !ssh(phase, s.exec(&probe, Duration::from_secs(30)).await)?.success() {
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
    files.extend(etcd_files(spec, layout, cluster.accel()).into_iter().map(Put::from));
    let changed = install(phase, &s, &files).await?;
    // etcd refuses, or warns about, a data directory others can read.
    let data = shell_quote(&layout.etcd_data_dir.display().to_string());
    ssh(phase, s.succeed(&format!("install -d -m 0700 {data}")).await)?;
    start(phase, &s, &["etcd"], !changed.is_empty()).await?;
    let check = format!("{} endpoint health", etcdctl(spec, layout));
    let w = Wait {
        what: "etcd to answer `endpoint health` over TLS with the etcd-client certificate".into(),
        check,
        unit: Some("etcd".into()),
        deadline: cluster.accel().scale(HEALTHY_DEADLINE),
    };
    wait(phase, &s, &w).await?;
    Ok(changed.into_iter().map(|p| format!("{cp}:{}", p.display())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcdctl_speaks_v3_over_tls_to_the_control_plane_with_the_chosen_binary() {
        let mut spec = ClusterSpec { etcd_from: EtcdSource::Debian, ..ClusterSpec::default() };
        let cmd = etcdctl(&spec, &Layout::default());
        assert_eq!(
            cmd,
            "ETCDCTL_API=3 /usr/bin/etcdctl --endpoints=https://10.0.0.4:2379 --cacert=/etc/kubernetes/pki/ca.crt \
             --cert=/etc/kubernetes/pki/etcd-client.crt --key=/etc/kubernetes/pki/etcd-client.key"
        );
        spec.etcd_from = EtcdSource::Upstream;
        assert!(etcdctl(&spec, &Layout::default()).starts_with("ETCDCTL_API=3 /usr/local/bin/etcdctl "));
    }

    #[test]
    fn the_upstream_members_follow_the_release_layout() {
        assert_eq!(members("v3.5.21"), ["etcd-v3.5.21-linux-amd64/etcd", "etcd-v3.5.21-linux-amd64/etcdctl"]);
    }
}
