//! `kthw-bench soak`: many cluster boots in a row on one image (issue 30), counting what a nightly would
//! lose: stalled boots, retries, failed `up`s; and each node's time to SSH as p50/p95/max beside raw QEMU
//! booting the same image (the `boot` benchmark's baseline, one raw three-node boot every tenth round). The
//! seed's nodes at their full size (2 vCPUs, 2 GiB: a multi-queue virtio disk, as on 2026-12-07). Every
//! twelve rounds it releases /tmp/kthw-vm.lock and takes it again, so that others' VM work interleaves.
//!
//! Goals: no failed `up` over at least 100 node boots, every stall recovered, p95 within 1.5x p50.

use std::fmt;
use std::time::{Duration, Instant};

use kthw::accel;
use kthw::events::{Event, Events};
use kthw::image::NodeImage;
use kthw::paths::Paths;
use kthw::phase::Phase;
use kthw::up::Up;
use kthw::ClusterSpec;

use crate::boot::{raw_boot, RawBoot};

/// Node boots when nobody says: 34 three-node `up`s.
pub const DEFAULT_NODE_BOOTS: usize = 102;
/// One raw QEMU round every this many rounds (the first round included).
const RAW_EVERY: usize = 10;
/// Rounds per hold of /tmp/kthw-vm.lock: about a quarter of an hour at a time, then others' VM work gets its turn (one
/// hold per round spent more time queueing for the lock than booting, on a host shared by several).
const ROUNDS_PER_LOCK: usize = 12;

#[derive(Debug, Default)]
pub struct Soak {
    pub ups: usize,
    pub node_boots: usize,
    pub failed_ups: Vec<String>,
    /// Each stall seen: round, node, stage, attempt of attempts.
    pub stalls: Vec<String>,
    /// Boots started again (a stall that was not a node's last boot).
    pub retries: u32,
    /// Each node's time to SSH under the harness (from its domain's first start, retries included).
    pub harness: Vec<Duration>,
    pub raw: Vec<Duration>,
    pub took: Duration,
}

/// The `p`th percentile (0..=100) of `runs` by the nearest rank; zero when there are none.
pub fn percentile(runs: &[Duration], p: usize) -> Duration {
    let mut sorted = runs.to_vec();
    sorted.sort();
    match sorted.len() {
        0 => Duration::ZERO,
        n => sorted[((p * n).div_ceil(100)).clamp(1, n) - 1],
    }
}

fn spread(runs: &[Duration]) -> String {
    let s = |d: Duration| format!("{:.1}", d.as_secs_f64());
    let (p50, p95) = (percentile(runs, 50), percentile(runs, 95));
    let ratio = if p50.is_zero() { 0.0 } else { p95.as_secs_f64() / p50.as_secs_f64() };
    let max = runs.iter().max().copied().unwrap_or_default();
    format!("p50 {} s, p95 {} s, max {} s (p95/p50 {ratio:.2}), {} boots", s(p50), s(p95), s(max), runs.len())
}

impl fmt::Display for Soak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let recovered =
            self.stalls.len().saturating_sub(self.failed_ups.iter().filter(|f| f.contains("stalled")).count());
        writeln!(
            f,
            "soak: {} node boots in {} ups over {:.0} min: {} failed ups (goal 0), {} stalls seen, {} retries, \
             {recovered} stalls recovered",
            self.node_boots,
            self.ups,
            self.took.as_secs_f64() / 60.0,
            self.failed_ups.len(),
            self.stalls.len(),
            self.retries,
        )?;
        writeln!(f, "  time to SSH per node, harness: {} (goal p95/p50 <= 1.5)", spread(&self.harness))?;
        write!(f, "  time to SSH per node, raw qemu: {}", spread(&self.raw))?;
        for s in &self.stalls {
            write!(f, "\n  stall: {s}")?;
        }
        for u in &self.failed_ups {
            write!(f, "\n  failed up: {u}")?;
        }
        Ok(())
    }
}

/// Brings the seed's cluster up to SSH (`--until nodes --fresh`) `node_boots / 3` times (rounded up) and tears
/// it down each time, with a raw QEMU round every tenth.
pub async fn boots_in_a_row(paths: &Paths, image: &NodeImage, node_boots: usize) -> anyhow::Result<Soak> {
    let spec = ClusterSpec::default();
    let rounds = node_boots.div_ceil(spec.nodes.len());
    let accel = accel::detect(&paths.state, Some(&image.kernel)).accel;
    let started = Instant::now();
    let mut soak = Soak::default();
    let mut lock = None;
    for round in 0..rounds {
        if round % ROUNDS_PER_LOCK == 0 {
            // The previous hold ends before the next begins.
            drop(lock.take());
            lock = Some(kthw_tests::vm_lock()?);
        }
        if round % RAW_EVERY == 0 {
            let scratch = tempfile::tempdir_in(std::env::temp_dir())?;
            let RawBoot { nodes, .. } = raw_boot(&spec, image, accel, scratch.path()).await?;
            soak.raw.extend(nodes.into_iter().map(|(_, d)| d));
        }
        let (events, mut rx) = Events::channel();
        let name = format!("bench-soak-{}-{round}", std::process::id());
        let up = Up::new(spec.clone()).name(&name).until(Phase::Nodes).paths(paths.clone()).image(image.clone());
        let result = up.fresh(true).events(events).run().await;
        soak.ups += 1;
        soak.node_boots += spec.nodes.len();
        while let Ok(e) = rx.try_recv() {
            if let Event::NodeStalled { node, stage, attempt, attempts, quiet, .. } = e {
                let retried = if attempt < attempts { "started again" } else { "given up" };
                soak.stalls.push(format!(
                    "round {round}, {node}: boot {attempt} of {attempts} stalled {} (quiet {:.0} s); {retried}",
                    stage.describe(),
                    quiet.as_secs_f64()
                ));
            }
        }
        match result {
            Ok(running) => {
                let cluster = running.cluster;
                for n in cluster.nodes() {
                    soak.harness.push(Duration::from_millis(n.boot_ms.unwrap_or(0)));
                    soak.retries += n.boot_retries;
                }
                cluster.down().await?;
            }
            Err(e) => {
                let first = kthw::chain(&e).lines().next().unwrap_or("").to_string();
                eprintln!("bench soak: round {round} failed: {first}");
                soak.failed_ups.push(format!("round {round}: {first}"));
            }
        }
        // Each round's numbers as they come, so that a soak cut short still says what it saw.
        let this_round: Vec<String> = soak.harness[soak.harness.len().saturating_sub(spec.nodes.len())..]
            .iter()
            .map(|d| format!("{:.1}", d.as_secs_f64()))
            .collect();
        eprintln!(
            "bench soak: round {} of {rounds} done ({:.0} s so far; {} stalls, {} failed ups; last nodes to SSH {} s; \
             raw so far {})",
            round + 1,
            started.elapsed().as_secs_f64(),
            soak.stalls.len(),
            soak.failed_ups.len(),
            this_round.join(", "),
            crate::seconds(&soak.raw)
        );
    }
    drop(lock);
    soak.took = started.elapsed();
    Ok(soak)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_by_nearest_rank() {
        let runs: Vec<Duration> = (1..=100).map(Duration::from_secs).collect();
        assert_eq!(percentile(&runs, 50), Duration::from_secs(50));
        assert_eq!(percentile(&runs, 95), Duration::from_secs(95));
        assert_eq!(percentile(&runs, 100), Duration::from_secs(100));
        let three = [Duration::from_secs(3), Duration::from_secs(1), Duration::from_secs(2)];
        assert_eq!(percentile(&three, 50), Duration::from_secs(2));
        assert_eq!(percentile(&three, 95), Duration::from_secs(3));
        assert_eq!(percentile(&[], 95), Duration::ZERO);
    }
}
