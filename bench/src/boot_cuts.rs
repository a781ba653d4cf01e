//! The node image's boot cuts (images/debian/boot-cuts/): three nodes to SSH on the current recipe against
//! the same three on the recipe without its cuts (the recipe as it was before them, kept as the baseline),
//! both booted through `Up --until nodes --fresh` in the same run, alternating which goes first so neither
//! always meets a cold page cache. Goal: at most 0.6. Also what `systemd-analyze` says on worker-node-1.

use std::time::{Duration, Instant};

use kthw::image::{self, BuildOptions, NodeImage};
use kthw::paths::Paths;
use kthw::phase::Phase;
use kthw::up::Up;

use crate::boot::small_three_node_spec;

pub struct BootCuts {
    current: Vec<Boot>,
    baseline: Vec<Boot>,
    keys: (String, String),
}

struct Boot {
    took: Duration,
    /// `systemd-analyze` on worker-node-1: the kernel and userspace times of its boot.
    analyze: String,
}

impl std::fmt::Display for BootCuts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let took = |boots: &[Boot]| boots.iter().map(|b| b.took).collect::<Vec<_>>();
        let (current, baseline) = (took(&self.current), took(&self.baseline));
        let (cur, base) = (crate::median(current.clone()), crate::median(baseline.clone()));
        writeln!(
            f,
            "3 nodes to SSH: current recipe {:.1} s (runs: {} s), without its boot cuts {:.1} s (runs: {} s), ratio {:.2} (goal <= 0.6)",
            cur.as_secs_f64(),
            crate::seconds(&current),
            base.as_secs_f64(),
            crate::seconds(&baseline),
            cur.as_secs_f64() / base.as_secs_f64()
        )?;
        writeln!(f, "  images: current {}, baseline {}", self.keys.0, self.keys.1)?;
        for (what, boots) in [("current", &self.current), ("baseline", &self.baseline)] {
            for b in boots.iter() {
                writeln!(f, "  {what}, worker-node-1: {}", b.analyze)?;
            }
        }
        Ok(())
    }
}

/// Builds the baseline image if the cache lacks it (a cold build: minutes), then boots `rounds` pairs.
pub async fn current_vs_baseline(paths: &Paths, current: &NodeImage, rounds: usize) -> anyhow::Result<BootCuts> {
    let opts = BuildOptions { without_boot_cuts: true, ..BuildOptions::default() };
    let baseline = image::build(paths, &opts).await?;
    let _lock = kthw_tests::vm_lock()?;
    let (mut cur, mut base) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let order = if round % 2 == 0 { [true, false] } else { [false, true] };
        for is_current in order {
            let (image, out) = if is_current { (current, &mut cur) } else { (&baseline, &mut base) };
            let boot = boot_three(paths, image, &format!("bench-cuts-{}-{round}", std::process::id())).await?;
            eprintln!(
                "bench boot-cuts: round {round}, {}: {:.1} s",
                if is_current { "current" } else { "baseline" },
                boot.took.as_secs_f64()
            );
            out.push(boot);
        }
    }
    Ok(BootCuts { current: cur, baseline: base, keys: (current.key.clone(), baseline.key) })
}

async fn boot_three(paths: &Paths, image: &NodeImage, name: &str) -> anyhow::Result<Boot> {
    let start = Instant::now();
    let up = Up::new(small_three_node_spec())
        .name(name)
        .until(Phase::Nodes)
        .paths(paths.clone())
        .image(image.clone())
        .fresh(true);
    let cluster = up.run().await?.cluster;
    let took = start.elapsed();
    let analyze = match cluster.session("worker-node-1").await?.exec("systemd-analyze", Duration::from_secs(60)).await {
        Ok(out) => out.stdout_lossy().lines().next().unwrap_or("").trim().to_string(),
        Err(e) => format!("systemd-analyze failed: {e}"),
    };
    cluster.down().await?;
    Ok(Boot { took, analyze })
}
