//! Upload throughput of `kthw::ssh` against OpenSSH's `scp`, same file, same server, same run.
//! Goal: ratio (ours / scp) at least 0.8.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use kthw::cluster::Cluster;
use kthw::ssh::{keys, Session, Target};
use kthw_tests::write_random_file;

/// Megabytes (10^6 bytes) per second of each tool, and ours divided by scp's.
#[derive(Debug, Clone, Copy)]
pub struct UploadThroughput {
    pub mib: usize,
    pub ours_mb_s: f64,
    pub scp_mb_s: f64,
    pub ratio: f64,
}

impl std::fmt::Display for UploadThroughput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "upload {} MiB: kthw::ssh {:.0} MB/s, scp {:.0} MB/s, ratio {:.2} (goal >= 0.8)",
            self.mib, self.ours_mb_s, self.scp_mb_s, self.ratio
        )
    }
}

/// The benchmark: [`upload_throughput`] to `node` of a running cluster, through its loopback forward,
/// with scp checking the node's pinned host key. scp runs with its defaults, as a person would; both sides
/// then negotiate ChaCha20-Poly1305 with the node.
pub async fn upload_vs_scp_on_node(cluster: &Cluster, node: &str, mib: usize) -> anyhow::Result<UploadThroughput> {
    let target = cluster.target(node)?;
    let scratch = tempfile::tempdir().context("a scratch directory for the benchmark")?;
    upload_throughput(&target, &[], mib, scratch.path()).await
}

/// Uploads the same `mib` MiB file to `target` with [`Session::upload`] and with `scp` (`scp_args` added to
/// its command line, e.g. `-c aes256-gcm@openssh.com`), each timed from connecting to the file being in
/// place, and checks both copies' sha256 on the server. `scratch` holds the file, the key and known_hosts.
/// scp checks the same pinned host key as we do; host key checking is never off.
pub async fn upload_throughput(
    target: &Target,
    scp_args: &[&str],
    mib: usize,
    scratch: &Path,
) -> anyhow::Result<UploadThroughput> {
    let local = scratch.join("bench-upload.bin");
    let expected = write_random_file(&local, mib)?;
    let key = scratch.join("bench-client-key");
    keys::write_private(&key, &target.client_key)?;
    let known_hosts = scratch.join("bench-known-hosts");
    std::fs::write(
        &known_hosts,
        format!("[{}]:{} {}\n", target.addr.ip(), target.addr.port(), target.host_key.trim()),
    )?;
    let remote = format!("/tmp/kthw-bench-upload-{}", std::process::id());

    let started = Instant::now();
    let node = Session::connect(target, Duration::from_secs(30)).await?;
    node.upload(&local, &remote, 0o600).await?;
    let ours = started.elapsed();
    check_sum(&node, &remote, &expected).await.context("after kthw::ssh upload")?;
    node.succeed(&format!("rm -f {remote}")).await?;

    let started = Instant::now();
    let scp = Command::new("scp")
        .arg("-q")
        .arg("-i")
        .arg(&key)
        .args(["-P", &target.addr.port().to_string()])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
        .args(scp_args)
        .arg(&local)
        .arg(format!("{}@{}:{remote}", target.user, target.addr.ip()))
        .output()
        .context("running scp")?;
    let theirs = started.elapsed();
    if !scp.status.success() {
        bail!("scp failed with {}: {}", scp.status, String::from_utf8_lossy(&scp.stderr));
    }
    check_sum(&node, &remote, &expected).await.context("after scp upload")?;
    node.succeed(&format!("rm -f {remote}")).await?;
    std::fs::remove_file(&local)?;

    let mb = (mib * 1024 * 1024) as f64 / 1e6;
    let (ours_mb_s, scp_mb_s) = (mb / ours.as_secs_f64(), mb / theirs.as_secs_f64());
    Ok(UploadThroughput { mib, ours_mb_s, scp_mb_s, ratio: ours_mb_s / scp_mb_s })
}

async fn check_sum(node: &Session, remote: &str, expected: &str) -> anyhow::Result<()> {
    let out = node.succeed(&format!("sha256sum {remote}")).await?.stdout_lossy();
    match out.split_whitespace().next() {
        Some(sum) if sum == expected => Ok(()),
        other => bail!("{remote} on {} has sha256 {other:?}, expected {expected}", node.node()),
    }
}
