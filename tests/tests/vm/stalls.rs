//! A boot that stalls costs a retry, not the run (issue 30). The test makes a stall happen: once the node's
//! console shows our initrd running, it suspends the node's domain through libvirt, a guest that makes no
//! more progress with its console quiet, as worker-node-1 of 2026-12-07 did (an idle QEMU after
//! `virtio_blk ... [vda]`). The boot watch must see the quiet console, start the node again on a fresh
//! overlay, and the cluster come up, the retry told in the events, the state, the console and the timeline.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kthw::boot_stage::BootStage;
use kthw::cluster::{ClusterState, StallPolicy};
use kthw::events::{Event, Events};
use kthw::paths::Paths;
use kthw::phase::Phase;
use kthw::rundir::RunDir;
use kthw_tests::{
    host_prerequisite, small_spec, test_paths, timeline_bars, unique_name, up, up_or_panic, vm_host_missing,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_suspended_in_its_initrd_is_started_again_and_comes_up() {
    let Some(()) = host_prerequisite("vm", vm_host_missing()) else { return };
    // The smallest valid cluster (a control plane and a worker); the worker stalls, as on 2026-12-07.
    let spec = small_spec(2);
    let node = spec.nodes[1].name.clone();
    let name = unique_name("vm-stall");
    let (events, mut rx) = Events::channel();
    let suspender = tokio::spawn(suspend_once_in_initrd(test_paths(), name.clone(), node.clone()));
    let started = Instant::now();
    // Fresh: the boot is what this test watches, and a golden snapshot of these two nodes (other tests save one)
    // would be restored instead, with no boot to stall.
    let running = up_or_panic(up(&spec, &name).await.until(Phase::Nodes).fresh(true).events(events)).await;
    let took = started.elapsed();
    let suspended = suspender.await.unwrap();
    let cluster = running.cluster;
    eprintln!("suspended the domain {suspended}; the cluster came up after {:.1} s", took.as_secs_f64());

    let state = cluster.node(&node).unwrap();
    assert_eq!(state.boot_retries, 1, "one stalled boot, then one that answered");
    let mut stalls = Vec::new();
    while let Ok(e) = rx.try_recv() {
        if let Event::NodeStalled { stage, quiet, attempt, attempts, .. } = e {
            stalls.push((stage, quiet, attempt, attempts));
        }
    }
    assert_eq!(stalls.len(), 1, "{stalls:?}");
    let (stage, quiet, attempt, attempts) = stalls[0];
    assert!((BootStage::Initrd..=BootStage::RootMounted).contains(&stage), "suspended in the initrd: {stage}");
    let policy = StallPolicy::for_accel(cluster.accel());
    assert!(quiet >= policy.quiet && quiet < policy.quiet + Duration::from_secs(10), "{quiet:?}");
    assert_eq!((attempt, attempts), (1, policy.attempts()));

    // The console holds both boots with the retry marked between them; the second reached sshd.
    let console = std::fs::read_to_string(cluster.console(&node).unwrap()).unwrap();
    let (first, second) = console.split_once("---- kthw: boot 1 of 3 of ").expect("the retry is marked");
    assert_eq!(BootStage::reached(first), stage);
    assert_eq!(BootStage::reached(second), BootStage::Sshd, "{second}");

    // QEMU's own view of the stalled boot was kept beside the console: the disk's queues and each vCPU.
    let view = cluster.console(&node).unwrap().with_file_name("stall-1.qemu.txt");
    let view = std::fs::read_to_string(&view).unwrap_or_else(|e| panic!("{}: {e}", view.display()));
    for said in ["(qemu) info virtio-queue-status", "used_idx", "(qemu) info registers -a", "paused"] {
        assert!(view.contains(said), "{said:?} in QEMU's view:\n{view}");
    }

    // The timeline records it, and its picture draws the stalled boot red and the second one finished.
    let typed = kthw::events::read(cluster.run_dir());
    assert!(typed.iter().any(|s| matches!(&s.event, Event::NodeStalled { node: n, .. } if *n == node)));
    let bars = timeline_bars(
        &cluster.run_dir().timeline_svg(),
        "a_node_suspended_in_its_initrd_is_started_again_and_comes_up",
    );
    let boots: Vec<&str> = bars.iter().filter(|(c, ..)| c == "boot").map(|(_, fill, _)| fill.as_str()).collect();
    // control-plane-1's boot, the worker's stalled one (red), the worker's second.
    assert_eq!(boots.len(), 3, "{bars:?}");
    assert_eq!(boots.iter().filter(|f| **f == "#d62728").count(), 1, "{bars:?}");
    cluster.down().await.unwrap();
}

/// Waits for cluster `name`'s state file, then for `node`'s console to show the initrd, suspends the node's
/// domain, and returns what the console showed then. Panics after a few minutes without it; a task, so that
/// the test ending for another reason ends it too.
async fn suspend_once_in_initrd(paths: Paths, name: String, node: String) -> String {
    let run_dir = RunDir::at(paths.run(&name));
    let deadline = Instant::now() + Duration::from_secs(300);
    let (domain, console): (String, PathBuf) = loop {
        assert!(Instant::now() < deadline, "cluster {name} never wrote its state");
        if let Some(n) = ClusterState::read(&run_dir).ok().and_then(|s| s.node(&node).cloned()) {
            break (n.domain, run_dir.node(&node).console());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let text = loop {
        assert!(Instant::now() < deadline, "{node} never reached its initrd: {}", tail(&console));
        let text = std::fs::read_to_string(&console).unwrap_or_default();
        if BootStage::reached(&text) >= BootStage::Initrd {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::task::spawn_blocking(move || {
        let conn = kthw::virt::connect::open(&kthw::virt::connect::uri()).unwrap();
        let dom = conn.lookup_domain_by_name(&domain).unwrap();
        dom.suspend().unwrap_or_else(|e| panic!("suspend {domain}: {e}"));
    })
    .await
    .unwrap();
    format!("in stage {} (last: {})", BootStage::reached(&text), kthw::boot_stage::last_lines(&text, 1).join(""))
}

fn tail(console: &Path) -> String {
    std::fs::read_to_string(console).unwrap_or_default().lines().rev().take(3).collect::<Vec<_>>().join(" | ")
}
