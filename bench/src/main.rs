//! `just bench`: every speed and memory goal, each measured as a ratio against a baseline run in the same
//! command on the same host. Goals are reported, never asserted: a slow machine is not a failing test.
//!
//! Usage: kthw-bench [first] [image] [boot] [boot-cuts] [golden] [initrd] [ssh] [preload] [cilium-preload]   (no argument: all of
//! them, in that order; cilium-preload needs the pinned upstream artifacts and a host whose guests may reach the internet).
//! `first` is the README's first command's parts that have a baseline: `image` and `boot`.
//! `kthw-bench soak [--node-boots=N]` (never part of "all": about 40 minutes under TCG) boots the seed's cluster
//! N/3 times in a row (102 node boots by default) and reports stalls, retries, failed ups and time to SSH.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use kthw::accel;
use kthw::image::{self, BuildOptions};
use kthw::phase::Phase;
use kthw::up::Up;
use kthw_tests::test_paths;

mod boot;
mod boot_cuts;
mod golden;
mod image_build;
mod preload;
mod raw_qemu;
mod soak;
mod ssh;

/// The middle of several runs of one measurement (the upper middle of an even count).
pub(crate) fn median(mut runs: Vec<std::time::Duration>) -> std::time::Duration {
    runs.sort();
    runs[runs.len() / 2]
}

/// Runs in seconds, one decimal, as a report lists them: "68.1, 68.6".
pub(crate) fn seconds(runs: &[std::time::Duration]) -> String {
    runs.iter().map(|d| format!("{:.1}", d.as_secs_f64())).collect::<Vec<_>>().join(", ")
}

/// The README's first command (`kthw up --partial`) is setup, a build, the node image, the boot and the
/// phases; the image and the boot are the parts with a baseline to run beside them (plain mmdebstrap, raw
/// QEMU), so `first` names those two benchmarks.
const FIRST: &str = "first";
const FIRST_PARTS: [&str; 2] = ["image", "boot"];

const ALL: [&str; 8] = ["image", "boot", "boot-cuts", "golden", "initrd", "ssh", "preload", "cilium-preload"];
/// Asked for by name only.
const SOAK: &str = "soak";
const NODE_BOOTS: &str = "--node-boots=";

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt().with_env_filter("warn").with_writer(std::io::stderr).init();
    let (options, names): (Vec<String>, Vec<String>) = std::env::args().skip(1).partition(|a| a.starts_with("--"));
    let mut node_boots = soak::DEFAULT_NODE_BOOTS;
    for o in options {
        match o.strip_prefix(NODE_BOOTS).map(str::parse::<usize>) {
            Some(Ok(n)) if n > 0 => node_boots = n,
            _ => anyhow::bail!("unknown option {o:?}; the one option is {NODE_BOOTS}N (soak's node boots)"),
        }
    }
    let mut wanted: Vec<String> = names
        .into_iter()
        .flat_map(|w| if w == FIRST { FIRST_PARTS.map(String::from).to_vec() } else { vec![w] })
        .collect();
    if let Some(bad) = wanted.iter().find(|w| !ALL.contains(&w.as_str()) && *w != SOAK) {
        anyhow::bail!("unknown benchmark {bad:?}; choose from {FIRST}, {}, {SOAK}", ALL.join(", "));
    }
    if wanted.is_empty() {
        wanted = ALL.iter().map(|s| s.to_string()).collect();
    }
    if let Some(why) = kthw_tests::vm_host_missing() {
        anyhow::bail!("the benchmarks boot VMs and this host cannot: {why}");
    }
    // Dropping the benchmarks' futures drops their cluster handles, which tear their clusters down: a ^C
    // leaves nothing for `kthw gc`.
    tokio::select! {
        done = run(&wanted, node_boots) => done.map(|()| ExitCode::SUCCESS),
        signal = kthw::signals::interrupted() => {
            eprintln!("\ninterrupted by {signal}: the benchmark's clusters were torn down");
            Ok(ExitCode::from(130))
        }
    }
}

async fn run(wanted: &[String], node_boots: usize) -> anyhow::Result<()> {
    let paths = test_paths();
    let started = Instant::now();
    let mut report = Vec::new();

    if wanted.iter().any(|w| w == "image") {
        eprintln!("bench image: plain mmdebstrap of the recipe's packages, a forced (cold) build, then a warm one (cache hit)...");
        let t = image_build::build_cold_and_warm(&paths).await?;
        report.push(t.to_string());
    }
    let image = image::build(&paths, &BuildOptions::default()).await.context("the node image")?;
    let probe = accel::detect(&paths.state, Some(&image.kernel));
    report.insert(0, format!("acceleration: {:?} ({})", probe.accel, probe.reason));

    if wanted.iter().any(|w| w == "boot") {
        eprintln!("bench boot: three nodes by hand with qemu-system-x86_64, then through Cluster::up...");
        let b = boot::three_nodes_vs_raw_qemu(&paths, &image).await?;
        report.push(b.to_string());
    }
    if wanted.iter().any(|w| w == SOAK) {
        eprintln!("bench soak: the seed's cluster to SSH, {node_boots} node boots in a row, beside raw qemu...");
        report.push(soak::boots_in_a_row(&paths, &image, node_boots).await?.to_string());
    }
    if wanted.iter().any(|w| w == "boot-cuts") {
        eprintln!("bench boot-cuts: three nodes on the current recipe and on it without its boot cuts, alternating...");
        report.push(boot_cuts::current_vs_baseline(&paths, &image, 2).await?.to_string());
    }
    if wanted.iter().any(|w| w == "golden") {
        eprintln!("bench golden: three nodes booted to etcd and saved, then restored {} times...", 3);
        report.push(golden::restore_vs_boot(&paths, &image).await?.to_string());
    }
    if wanted.iter().any(|w| w == "initrd") {
        eprintln!("bench initrd: one node to SSH with our initrd and with Debian's initramfs, alternating...");
        let scratch = tempfile::tempdir()?;
        let c = image_build::boot_ours_vs_debian(&image, probe.accel, 2, scratch.path())?;
        report.push(c.to_string());
    }
    if wanted.iter().any(|w| w == "ssh") {
        eprintln!("bench ssh: 256 MiB to a node with kthw::ssh and with OpenSSH scp...");
        let mut spec = boot::small_three_node_spec();
        spec.nodes.truncate(2);
        let name = format!("bench-ssh-{}", std::process::id());
        let cluster = {
            let _lock = kthw_tests::vm_lock()?;
            let up = Up::new(spec.clone()).name(&name).until(Phase::Nodes).paths(paths.clone()).image(image.clone());
            up.run().await?.cluster
        };
        let node = spec.control_plane().name.clone();
        let result = ssh::upload_vs_scp_on_node(&cluster, &node, 256).await;
        cluster.down().await?;
        report.push(format!("ssh upload: {}", result?));
    }
    if wanted.iter().any(|w| w == "preload") {
        eprintln!("bench preload: a {}-MB image into three nodes by kthw load, then pulled from a registry on the cluster network...", 257);
        let name = format!("bench-preload-{}", std::process::id());
        let _lock = kthw_tests::vm_lock()?;
        let up = Up::new(boot::small_three_node_spec())
            .name(&name)
            .until(Phase::Nodes)
            .paths(paths.clone())
            .image(image.clone());
        let cluster = up.run().await?.cluster;
        let result = preload::preload_vs_registry_pull(&cluster).await;
        cluster.down().await?;
        report.push(format!("preload: {}", result?));
    }
    if wanted.iter().any(|w| w == "cilium-preload") {
        eprintln!("bench cilium-preload: the cilium phase with the images preloaded, then pulled cold (egress on)...");
        let _lock = kthw_tests::vm_lock()?;
        report.push(format!("cilium-preload: {}", preload::cilium_with_and_without_preload(&paths, &image).await?));
    }

    println!("\nkthw benchmarks ({:.0} s in all)", started.elapsed().as_secs_f64());
    for line in report {
        println!("{line}");
    }
    Ok(())
}
