//! The seed's cluster through step 7 from the pinned artifacts: etcd, the control plane and every kubelet, each
//! worker registered as a node (NotReady until the CNI of the next step arrives, as in the seed), and the
//! host's own kubectl reaching the apiserver through `kthw kubeconfig`. Ignored by the default and ci
//! profiles (the artifacts cannot be had there); the nightly profile runs it.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use kthw::access;
use kthw::bootstrap::Layout;
use kthw::events::Events;
use kthw::phase::Phase;
use kthw_tests::{
    artifacts_dir, host_prerequisite, kthw_bin, test_paths, unique_name, up, up_or_panic, vm_host_missing,
    wait_for_exit,
};

fn host_kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("kubectl").arg("--kubeconfig").arg(kubeconfig).args(args).output().expect("run kubectl");
    assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the pinned upstream artifacts (`kthw artifacts fetch`); the nightly profile runs it"]
async fn every_worker_registers_and_the_hosts_kubectl_reaches_the_apiserver() {
    let Some(()) = host_prerequisite("cluster", vm_host_missing()) else { return };
    let paths = test_paths();
    let spec = kthw_tests::cluster_spec();
    let name = unique_name("cluster-workers");
    // Without the artifacts this fails before booting, naming each one and the command that provides it.
    let running = up_or_panic(up(&spec, &name).await.until(Phase::Workers).artifacts_dir(artifacts_dir())).await;
    let (cluster, bootstrap) = (running.cluster, running.bootstrap);
    for r in &running.reports {
        eprintln!("phase {:<14} {:>6.1} s", r.phase.name(), r.took.as_secs_f64());
    }

    // Every worker is a node, NotReady for want of a CNI; the control plane runs no kubelet.
    let cp = cluster.session("control-plane-1").await.unwrap();
    let kubectl = Layout::default().kubectl();
    let jsonpath = r#"{range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Ready")].message}{"\n"}{end}"#;
    let nodes = cp.succeed(&format!("{kubectl} get nodes -o jsonpath='{jsonpath}'")).await.unwrap().stdout_lossy();
    let mut names: Vec<&str> = nodes.lines().filter_map(|l| l.split_whitespace().next()).collect();
    names.sort();
    assert_eq!(names, ["worker-node-1", "worker-node-2"], "{nodes}");
    for line in nodes.lines() {
        let mut words = line.splitn(3, ' ');
        let (node, ready, message) = (words.next().unwrap(), words.next().unwrap_or(""), words.next().unwrap_or(""));
        assert_eq!(ready, "False", "{node} is Ready without a CNI: {line}");
        assert!(message.to_lowercase().contains("network"), "{node}: NotReady for the network plugin: {message}");
    }
    // The idempotence of the whole path, once: the workers phase again changes nothing.
    let again = bootstrap.run(&cluster, Phase::Workers, &Events::default()).await;
    let again = again.unwrap_or_else(|e| panic!("{}", kthw::chain(&e)));
    assert_eq!(again.changed, Vec::<String>::new());

    // The host's kubectl, through the forward `kthw kubeconfig` keeps.
    let home = paths.state.parent().unwrap();
    let out = Command::new(kthw_bin()).args(["kubeconfig", &name]).env("KTHW_HOME", home).output().unwrap();
    assert!(out.status.success(), "kthw kubeconfig: {}", String::from_utf8_lossy(&out.stderr));
    let kubeconfig = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert_eq!(host_kubectl(&kubeconfig, &["get", "--raw", "/healthz"]), "ok");
    let listed = host_kubectl(&kubeconfig, &["get", "nodes", "-o", "name"]);
    assert_eq!(listed.lines().collect::<Vec<_>>(), ["node/worker-node-1", "node/worker-node-2"]);

    let forwarder = access::read_record(cluster.run_dir()).expect("a forwarder record");
    cluster.down().await.unwrap();
    let ended = wait_for_exit(forwarder.owner.pid, Duration::from_secs(15));
    assert!(ended.is_some(), "the forwarder outlived its cluster");
}
