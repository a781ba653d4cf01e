//! What the kubelet and the Cilium agent check when they start, on the booted node image, for both version
//! sets (`kthw::bootstrap::nodecheck`): every requirement met on a worker as the image boots; then the
//! workers phase's own check step, run by the phase on the cluster's set, passes that worker on to the first
//! thing this host lacks (the pinned kubelet), and stops a worker with swap on, or without the bridge netfilter
//! module, before anything is installed, naming what is missing and where upstream requires it.

use kthw::bootstrap::configs::{containerd_config, kubelet_config, ContainerdConfig};
use kthw::bootstrap::nodecheck::{evaluate, output_file, read_node, rendered, report, requirements, NodeLacks};
use kthw::bootstrap::{Bootstrap, BootstrapError, Layout};
use kthw::cluster::Cluster;
use kthw::events::Events;
use kthw::phase::Phase;
use kthw::spec::{ClusterSpec, VersionSet};
use kthw::up::Running;
use kthw_tests::{golden_cluster, succeed, test_paths};
use rstest::rstest;

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booted_worker_meets_what_kubelet_and_cilium_check_at_start_and_the_phase_stops_one_that_does_not(
    #[future] golden_cluster: Option<Running>,
) {
    let Some(running) = golden_cluster.await else { return };
    let cluster = running.cluster;
    let worker = cluster.session("worker-node-1").await.unwrap();
    let layout = Layout::default();
    for set in VersionSet::ALL {
        let spec = ClusterSpec { versions: set.into(), ..cluster.spec().clone() };
        let pause = kthw::artifacts::Manifest::pinned().for_set(set).get("pause").unwrap().locator().to_string();
        let containerd = containerd_config(ContainerdConfig::for_spec(&spec), &pause);
        let pins = set.pins();
        let ours = rendered(&pins.kubernetes, &kubelet_config(&spec, "worker-node-1", &layout), &containerd).unwrap();
        let reqs = requirements(&pins, &ours);
        let (facts, raw) = read_node(&worker, &reqs).await.unwrap_or_else(|e| panic!("{}", kthw::chain(&e)));
        let findings = evaluate(&reqs, &facts, &ours);
        let text = report("worker-node-1", &pins, &findings, "");
        eprintln!("{text}");
        assert!(findings.iter().all(|f| f.met), "the node image lacks what {set}'s components check:\n{text}\n{raw}");
    }

    // The phase's own step, on the cluster's set, with no upstream artifacts: past the checks, the first thing
    // missing is the kubelet.
    let none = tempfile::tempdir().unwrap();
    let bootstrap =
        Bootstrap::from_lock(&test_paths(), Some(none.path().to_path_buf()), &kthw::lock::of_cluster(&cluster));
    let err = workers(&cluster, &bootstrap).await.expect_err("no kubelet here");
    assert!(matches!(err, BootstrapError::MissingArtifacts { phase: Phase::Workers, .. }), "{}", kthw::chain(&err));
    let kept = std::fs::read_to_string(cluster.run_dir().phase_output(Phase::Workers, &output_file("worker-node-1")));
    let met = |n: usize| format!("worker-node-1: {n} of {n} startup requirements");
    assert!(kept.as_deref().is_ok_and(|k| (20..40).any(|n| k.starts_with(&met(n)))), "{kept:?}");

    // Swap on: the kubelet would refuse to start; the phase stops first.
    succeed(&worker, "fallocate -l 32M /swapfile && chmod 600 /swapfile && mkswap -q /swapfile && swapon /swapfile")
        .await;
    let lacks = node_lacks(workers(&cluster, &bootstrap).await);
    assert_eq!(lacks.node, "worker-node-1");
    let lines: Vec<String> = lacks.missing.iter().map(|f| f.line()).collect();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].starts_with("MISSING no swap in use (saw: /swapfile"), "{}", lines[0]);
    assert!(lines[0].contains("pkg/kubelet/cm/container_manager_linux.go"), "{}", lines[0]);
    succeed(&worker, "swapoff /swapfile && rm /swapfile").await;

    // The hard way's bridge netfilter module gone, and with it its sysctls.
    succeed(&worker, "modprobe -r br_netfilter").await;
    let lacks = node_lacks(workers(&cluster, &bootstrap).await);
    let what: Vec<String> = lacks.missing.iter().map(|f| f.requirement.check.describe()).collect();
    assert_eq!(
        what,
        [
            "kernel module br_netfilter loaded (or built in)",
            "sysctl net.bridge.bridge-nf-call-iptables = 1",
            "sysctl net.bridge.bridge-nf-call-ip6tables = 1"
        ]
    );
    assert!(lacks.missing[0].line().contains("09-bootstrapping-kubernetes-workers.md:120"), "{:?}", lacks.missing[0]);
    let said = succeed(&worker, "systemctl is-active kubelet containerd; true").await;
    assert!(said.lines().all(|l| l.trim() != "active"), "nothing was started: {said}");
    cluster.down().await.unwrap();
}

async fn workers(cluster: &Cluster, b: &Bootstrap) -> Result<kthw::bootstrap::PhaseReport, BootstrapError> {
    b.run(cluster, Phase::Workers, &Events::default()).await
}

fn node_lacks(r: Result<kthw::bootstrap::PhaseReport, BootstrapError>) -> Box<NodeLacks> {
    match r {
        Err(BootstrapError::NodeLacks { phase: Phase::Workers, source }) => {
            eprintln!("the workers phase said:\n{source}");
            source
        }
        other => panic!("not a worker that lacks a requirement: {other:?}"),
    }
}
