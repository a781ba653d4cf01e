//! Restore against boot: three nodes booted and bootstrapped to `etcd` (the furthest phase this host's
//! artifacts reach), saved as a golden snapshot, then restored several times; the ratio of the boot to the
//! median restore (goal: at least 10, and a restore within 5 s under TCG here), and what the snapshot costs on
//! disk. The snapshot is this run's own (its key names the benchmark's pid) and is pruned at the end.

use std::time::{Duration, Instant};

use kthw::events::Events;
use kthw::golden::{self, store, GoldenManifest};
use kthw::image::NodeImage;
use kthw::paths::Paths;
use kthw::phase::Phase;
use kthw::up::Up;

const RESTORES: usize = 3;

pub struct RestoreVsBoot {
    boot: Duration,
    save: Duration,
    restores: Vec<Duration>,
    manifest: GoldenManifest,
    disk_bytes: u64,
}

impl std::fmt::Display for RestoreVsBoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let median = crate::median(self.restores.clone());
        writeln!(
            f,
            "3 nodes to etcd: boot {:.1} s, restore median {:.1} s (runs: {} s), ratio {:.1} (goal >= 10; restore goal <= 5 s)",
            self.boot.as_secs_f64(),
            median.as_secs_f64(),
            crate::seconds(&self.restores),
            self.boot.as_secs_f64() / median.as_secs_f64()
        )?;
        writeln!(
            f,
            "  save {:.1} s; snapshot {} MiB on disk ({} MiB of files)",
            self.save.as_secs_f64(),
            self.disk_bytes >> 20,
            self.manifest.bytes() >> 20
        )?;
        for n in &self.manifest.nodes {
            writeln!(f, "  {}: memory {} MiB, disk {} MiB", n.name, n.save.size >> 20, n.disk.size >> 20)?;
        }
        Ok(())
    }
}

pub async fn restore_vs_boot(paths: &Paths, image: &NodeImage) -> anyhow::Result<RestoreVsBoot> {
    let _lock = kthw_tests::vm_lock()?;
    let spec = kthw_tests::etcd_spec();
    let name = format!("bench-golden-{}", std::process::id());
    let start = Instant::now();
    let up = Up::new(spec.clone()).name(&name).until(Phase::Etcd).paths(paths.clone()).image(image.clone()).fresh(true);
    let cluster = up.run().await?.cluster;
    let boot = start.elapsed();

    let uri = kthw::virt::connect::uri();
    let inputs = kthw_tests::private_golden_inputs(image, &cluster, Phase::Etcd, &name);
    let key = inputs.key();
    let start = Instant::now();
    let manifest = golden::save(cluster, inputs, paths, std::fs::canonicalize(&image.disk)?, Some(boot)).await?;
    let save = start.elapsed();
    let disk_bytes = store::disk_usage(&store::dir(paths, &key));

    let mut restores = Vec::new();
    let mut failure = None;
    for i in 0..RESTORES {
        match golden::restore(paths, &key, &format!("{name}-{i}"), &uri, &Events::default()).await {
            Ok((copy, restored)) => {
                eprintln!("bench golden: restore {i}: {:.1} s {:?}", restored.took.as_secs_f64(), restored.stages);
                restores.push(restored.took);
                copy.down().await?;
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    store::prune(paths, |k| k == key);
    if let Some(e) = failure {
        return Err(anyhow::anyhow!("restoring the benchmark's snapshot: {}", kthw::chain(&e)));
    }
    Ok(RestoreVsBoot { boot, save, restores, manifest, disk_bytes })
}
