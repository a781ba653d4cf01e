//! The preload benchmark: an image the size of the seed's Cilium image (257 MB, incompressible) into three
//! nodes' containerd by `kthw load` (what the phases' preload does), against the three pulling it at once
//! from a registry on the cluster network (Debian's docker-registry, copied from the host onto
//! control-plane-1 and serving 10.0.0.4:5000 over plain HTTP), both in one run on the same cluster.

use std::fmt;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use kthw::cluster::Cluster;
use kthw::image::NodeImage;
use kthw::oci::{self, ImageRef};
use kthw::paths::Paths;
use kthw::phase::Phase;
use kthw::spec::ClusterSpec;
use kthw::up::Up;
use kthw_tests::oci_layout::{layer, OciLayout};
use kthw_tests::write_random_file;
use tokio::task::JoinSet;

/// The seed's cold image: "a 257MB image from quay.io".
const SEED_IMAGE_MB: usize = 257;
const REGISTRY_PORT: u16 = 5000;

pub struct Preload {
    pub nodes: usize,
    pub preload: Duration,
    pub pull: Duration,
}

impl fmt::Display for Preload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a {SEED_IMAGE_MB} MB image into {} nodes: preload (kthw load) {:.1} s, pulled from a registry on the \
             cluster network {:.1} s, ratio {:.2} (below 1: preload is faster)",
            self.nodes,
            self.preload.as_secs_f64(),
            self.pull.as_secs_f64(),
            self.preload.as_secs_f64() / self.pull.as_secs_f64()
        )
    }
}

pub async fn preload_vs_registry_pull(cluster: &Cluster) -> anyhow::Result<Preload> {
    let scratch = tempfile::tempdir()?;
    let payload = scratch.path().join("payload.bin");
    write_random_file(&payload, SEED_IMAGE_MB)?;
    let layout = OciLayout::new(scratch.path().join("layout"));
    let image = layout.image("amd64", &layer(scratch.path(), &[("payload.bin", &payload)]));
    let archive = scratch.path().join("seed-size.oci.tar");
    let name = "kthw.bench/seed-size:1";
    layout.archive(image, name, &archive);
    let images = oci::read_archive(&archive)?;

    let started = Instant::now();
    oci::load(cluster, &archive, &images).await?;
    let preload = started.elapsed();

    let cp = cluster.spec().control_plane().clone();
    let s = cluster.session(&cp.name).await?;
    s.upload(std::path::Path::new("/usr/bin/docker-registry"), "/usr/local/bin/docker-registry", 0o755).await?;
    let config = format!(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/kthw-registry\nhttp:\n  addr: {}:{REGISTRY_PORT}\n",
        cp.address
    );
    s.upload_bytes(config.as_bytes(), "/etc/kthw-registry.yml", 0o644).await?;
    s.succeed("systemd-run --unit=kthw-bench-registry /usr/local/bin/docker-registry serve /etc/kthw-registry.yml")
        .await?;
    s.wait_until_succeeds(&format!("ss -Hltn 'sport = :{REGISTRY_PORT}' | grep -q ."), Duration::from_secs(60)).await?;
    // The image reaches the registry from the host through an SSH forward (the host has no route in).
    let tunnel = s.forward_local(&cp.address.to_string(), REGISTRY_PORT).await?;
    let push = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci-archive:{}", archive.display()))
        .arg(format!("docker://127.0.0.1:{}/bench/seed-size:1", tunnel.local.port()))
        .output()
        .context("run skopeo")?;
    if !push.status.success() {
        bail!("pushing to the registry on {}: {}", cp.name, String::from_utf8_lossy(&push.stderr));
    }
    drop(tunnel);

    let pulled = ImageRef {
        reference: format!("{}:{REGISTRY_PORT}/bench/seed-size:1", cp.address),
        digest: images[0].digest.clone(),
    };
    let started = Instant::now();
    let mut set = JoinSet::new();
    for n in cluster.nodes() {
        let node = cluster.session(&n.name).await?;
        let cmd = format!("ctr -n k8s.io images pull --plain-http {}", pulled.reference);
        set.spawn(async move { node.exec(&cmd, Duration::from_secs(1800)).await });
    }
    while let Some(done) = set.join_next().await {
        let out = done??;
        if !out.success() {
            bail!("a pull from the registry failed: {}", out.summary());
        }
    }
    let pull = started.elapsed();
    Ok(Preload { nodes: cluster.nodes().len(), preload, pull })
}

/// The cluster tier's side: `kthw up` through `cilium` twice on the seed's cluster, once with the images
/// preloaded and once pulled cold by the nodes (`images.preload = false`, `egress = true`: the seed's first
/// install), comparing the cilium phase's time (install to `cilium status --wait` success). Needs the pinned
/// artifacts; refused before booting anything without them.
pub async fn cilium_with_and_without_preload(paths: &Paths, image: &NodeImage) -> anyhow::Result<String> {
    let mut took = Vec::new();
    for preload in [true, false] {
        let mut spec = ClusterSpec { egress: !preload, ..ClusterSpec::default() };
        spec.images.preload = preload;
        let name = format!("bench-cilium-{}-{}", if preload { "warm" } else { "cold" }, std::process::id());
        let up = Up::new(spec).name(&name).until(Phase::Cilium).paths(paths.clone()).image(image.clone());
        let running = up.run().await.map_err(|e| anyhow::anyhow!(kthw::chain(&e)))?;
        let cilium =
            running.reports.iter().find(|r| r.phase == Phase::Cilium).map(|r| r.took).context("no cilium phase ran")?;
        running.cluster.down().await?;
        took.push(cilium);
    }
    Ok(format!(
        "the cilium phase with preload {:.1} s, pulling cold {:.1} s, ratio {:.2}",
        took[0].as_secs_f64(),
        took[1].as_secs_f64(),
        took[0].as_secs_f64() / took[1].as_secs_f64()
    ))
}
