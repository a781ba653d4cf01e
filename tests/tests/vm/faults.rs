//! Fault injection on real nodes, one cluster for all of it: three small nodes through the etcd phase (Debian's
//! etcd; a copy of the shared snapshot the golden tests start from), then each fault, its effect and its
//! recovery, measured from the host and printed.

use std::time::{Duration, Instant};

use kthw::bootstrap::Layout;
use kthw::bundle::prune::{self, Listed};
use kthw::cluster::{Cluster, ClusterError, Fault, FaultError};
use kthw::identity::{Mac, Nic};
use kthw::phase::Phase;
use kthw::spec::ClusterSpec;
use kthw::ssh::{Session, Target};
use kthw::up::Keep;
use kthw_tests::{etcd_spec, host_prerequisite, succeed, test_paths, unique_name, up, up_or_panic, vm_host_missing};

/// worker-node-2's address, which worker-node-1 pings across the cluster network.
const WORKER_2: &str = "10.0.0.6";

/// One echo request, answered within a second or counted lost.
const PING: &str = "ping -n -c 1 -W 1 10.0.0.6";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_shows_its_effect_and_the_node_recovers() {
    let Some(()) = host_prerequisite("vm", vm_host_missing()) else { return };
    let spec = etcd_spec();
    let name = unique_name("vm-faults");
    let no_downloads = tempfile::tempdir().unwrap();
    // From the shared snapshot at etcd that the golden tests also start from: one boot for both.
    let up = up(&spec, &name).await.until(Phase::Etcd).save_golden(true);
    let up = up.artifacts_dir(Some(no_downloads.path().to_path_buf()));
    let cluster = up_or_panic(up).await.cluster;
    let w1 = cluster.session("worker-node-1").await.unwrap();
    assert_eq!(succeed(&w1, PING).await.lines().nth(1).map(|l| l.contains(WORKER_2)), Some(true));

    bad_faults_change_nothing(&cluster, &w1).await;
    link_down_cuts_the_cluster_network_and_link_up_restores_it(&cluster, &w1).await;
    delay_and_loss_show_in_pings(&cluster, &w1).await;
    pause_stops_answering_and_resume_answers_again(&cluster, &w1).await;
    let cp = cluster.session("control-plane-1").await.unwrap();
    let etcdctl = Layout::default().etcdctl(&spec);
    succeed(&cp, &format!("{etcdctl} put /kthw/fault 'written before the faults'")).await;
    unit_faults_stop_and_crash_etcd_which_restarts(&cluster, &cp, &etcdctl).await;
    etcd_survives_a_hard_reset_with_its_data(&cluster, &etcdctl).await;

    let timeline = std::fs::read_to_string(cluster.run_dir().timeline()).unwrap();
    for line in ["fault worker-node-2: link-down", "fault worker-node-2: delay 300", "fault control-plane-1: reset"] {
        assert!(timeline.contains(line), "the run's timeline records {line:?}:\n{timeline}");
    }
    let spec = cluster.spec().clone();
    let bundle = a_test_that_panics_holding_the_cluster_leaves_a_bundle(cluster).await;
    a_bundle_holds_what_explains_the_cluster_and_no_key(&bundle, &spec);
}

async fn inject(cluster: &Cluster, node: &str, fault: &str) -> String {
    let fault: Fault = fault.parse().unwrap();
    match cluster.inject(node, &fault).await {
        Ok(done) => done,
        Err(e) => panic!("{fault} on {node}: {}", kthw::chain(&e)),
    }
}

/// Runs `cmd` on the node until its exit status is `success`, polling. Returns when the attempt that got there
/// began and when it ended, both from the call: a failing ping shows the fault was in effect when it was sent,
/// an answered one that the link works when it returns.
async fn until(s: &Session, cmd: &str, success: bool, deadline: Duration) -> (Duration, Duration) {
    let start = Instant::now();
    loop {
        let sent = start.elapsed();
        let out = s.exec(cmd, Duration::from_secs(30)).await.unwrap();
        if out.success() == success {
            return (sent, start.elapsed());
        }
        assert!(
            start.elapsed() < deadline,
            "`{cmd}` still {} after {deadline:?}: {}",
            if success { "fails" } else { "succeeds" },
            out.summary()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The average round trip of a few pings to worker-node-2, in milliseconds.
async fn rtt_ms(s: &Session) -> f64 {
    let out = succeed(s, "ping -n -q -c 4 -i 0.2 -W 3 10.0.0.6").await;
    // rtt min/avg/max/mdev = 0.412/0.530/0.701/0.110 ms
    let summary = out.lines().find(|l| l.contains("min/avg/max")).unwrap_or_else(|| panic!("no rtt line: {out}"));
    let values = summary.split(" = ").nth(1).unwrap_or_else(|| panic!("{summary}"));
    values.split('/').nth(1).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{summary}"))
}

async fn bad_faults_change_nothing(cluster: &Cluster, w1: &Session) {
    let err = cluster.inject("worker-node-9", &Fault::Pause).await.unwrap_err();
    assert!(matches!(&err, FaultError::Cluster(e) if matches!(**e, ClusterError::UnknownNode { .. })), "{err}");
    assert!(err.to_string().contains("its nodes: control-plane-1, worker-node-1, worker-node-2"), "{err}");
    let err = cluster.inject("worker-node-2", &Fault::Resume).await.unwrap_err();
    assert!(err.to_string().contains("cannot resume node worker-node-2: it is not paused"), "{err}");
    let err = cluster.inject("worker-node-2", &Fault::StopUnit("nosuch".into())).await.unwrap_err();
    assert!(err.to_string().contains("it has no unit nosuch (LoadState=not-found); nothing was changed"), "{err}");
    succeed(w1, PING).await;
}

async fn link_down_cuts_the_cluster_network_and_link_up_restores_it(cluster: &Cluster, w1: &Session) {
    let w2 = cluster.session("worker-node-2").await.unwrap();
    // Found by its MAC: the guest drops the NIC's address while its carrier is down.
    let mac = Mac::for_node("worker-node-2", Nic::Cluster);
    let carrier = format!(
        "cat /sys/class/net/$(ip -o link | awk '/link\\/ether {mac} /{{sub(\":$\",\"\",$2); print $2}}')/carrier"
    );
    let carrier = carrier.as_str();
    assert_eq!(succeed(&w2, carrier).await, "1");

    eprintln!("link-down: {}", inject(cluster, "worker-node-2", "link-down").await);
    let (sent, failed) = until(w1, PING, false, Duration::from_secs(10)).await;
    eprintln!(
        "worker-node-2 link down: a ping from worker-node-1 sent {:.2} s after it is lost (its 1 s wait ended at {:.2} s)",
        sent.as_secs_f64(),
        failed.as_secs_f64()
    );
    assert!(sent < Duration::from_secs(2), "pings were still answered {sent:?} after link-down");
    // Only the cluster NIC: the harness still reaches the node over its management NIC.
    assert_eq!(succeed(&w2, carrier).await, "0", "the guest sees its carrier drop");

    eprintln!("link-up: {}", inject(cluster, "worker-node-2", "link-up").await);
    let (_, back) = until(w1, PING, true, Duration::from_secs(10)).await;
    eprintln!("worker-node-2 link up: pings answered again after {:.2} s", back.as_secs_f64());
    assert!(back < Duration::from_secs(5), "pings came back only {back:?} after link-up");
    assert_eq!(succeed(&w2, carrier).await, "1");
}

async fn delay_and_loss_show_in_pings(cluster: &Cluster, w1: &Session) {
    let before = rtt_ms(w1).await;
    eprintln!("delay 300: {}", inject(cluster, "worker-node-2", "delay 300").await);
    let delayed = rtt_ms(w1).await;
    eprintln!("ping round trip to worker-node-2: {before:.1} ms, with delay 300: {delayed:.1} ms");
    assert!((300.0..300.0 + before + 200.0).contains(&delayed), "{delayed} ms with a 300 ms delay");

    // Loss adds to the delay in force instead of replacing it.
    eprintln!("loss 100: {}", inject(cluster, "worker-node-2", "loss 100").await);
    let out = w1.exec("ping -n -q -c 3 -i 0.2 -W 1 10.0.0.6", Duration::from_secs(30)).await.unwrap();
    assert!(out.stdout_lossy().contains("100% packet loss"), "{}", out.summary());
    inject(cluster, "worker-node-2", "loss 0").await;
    let still_delayed = rtt_ms(w1).await;
    assert!(still_delayed >= 300.0, "loss 0 kept the delay: {still_delayed} ms");

    let cleared = inject(cluster, "worker-node-2", "delay 0").await;
    assert!(!cleared.contains("netem"), "no netem qdisc is left: {cleared}");
    let after = rtt_ms(w1).await;
    eprintln!("after delay 0 and loss 0: {after:.1} ms");
    assert!(after < 100.0, "{after} ms once the delay is removed");
}

async fn pause_stops_answering_and_resume_answers_again(cluster: &Cluster, w1: &Session) {
    inject(cluster, "worker-node-2", "pause").await;
    let state = cluster.domain_state(&cluster.node("worker-node-2").unwrap().domain).await.unwrap();
    assert_eq!(state.to_string(), "paused");
    let (silent, _) = until(w1, PING, false, Duration::from_secs(10)).await;
    eprintln!("worker-node-2 paused: a ping sent {:.2} s after it is lost", silent.as_secs_f64());
    let err = cluster.inject("worker-node-2", &Fault::Pause).await.unwrap_err();
    assert!(err.to_string().contains("it is not running (libvirt says paused)"), "{err}");
    let err = cluster.inject("worker-node-2", &Fault::Delay { ms: 5 }).await.unwrap_err();
    assert!(err.to_string().contains("its guest does not run"), "{err}");

    inject(cluster, "worker-node-2", "resume").await;
    let (_, back) = until(w1, PING, true, Duration::from_secs(10)).await;
    eprintln!("worker-node-2 resumed: pings answered again after {:.2} s", back.as_secs_f64());
    let w2 = cluster.session("worker-node-2").await.unwrap();
    assert_eq!(succeed(&w2, "hostname").await, "worker-node-2");
}

async fn unit_faults_stop_and_crash_etcd_which_restarts(cluster: &Cluster, cp: &Session, etcdctl: &str) {
    let restarts = "systemctl show -p NRestarts --value etcd";
    let (pid, before) = (succeed(cp, "systemctl show -p MainPID --value etcd").await, succeed(cp, restarts).await);
    inject(cluster, "control-plane-1", "kill-unit etcd").await;
    let killed = Instant::now();
    // Restart=on-failure: the unit comes back by itself, counted as a restart, with a new process.
    let restarted =
        format!("[ \"$({restarts})\" -gt {before} ] && systemctl is-active -q etcd && {etcdctl} endpoint health");
    cp.wait_until_succeeds(&restarted, Duration::from_secs(120)).await.unwrap();
    let took = killed.elapsed();
    let new_pid = succeed(cp, "systemctl show -p MainPID --value etcd").await;
    eprintln!("etcd killed: restarted and healthy after {:.1} s (pid {pid} -> {new_pid})", took.as_secs_f64());
    assert_ne!(new_pid, pid);
    assert_eq!(succeed(cp, restarts).await.parse::<u32>().unwrap(), before.parse::<u32>().unwrap() + 1);

    inject(cluster, "control-plane-1", "stop-unit etcd").await;
    assert_eq!(
        cp.exec("systemctl is-active etcd", Duration::from_secs(30)).await.unwrap().stdout_lossy().trim(),
        "inactive"
    );
    succeed(cp, "systemctl start etcd").await;
    cp.wait_until_succeeds(&format!("{etcdctl} endpoint health"), Duration::from_secs(60)).await.unwrap();
}

async fn etcd_survives_a_hard_reset_with_its_data(cluster: &Cluster, etcdctl: &str) {
    inject(cluster, "control-plane-1", "reset").await;
    let reset = Instant::now();
    let target: Target = cluster.target("control-plane-1").unwrap();
    let cp =
        Session::connect(&target, Duration::from_secs(180)).await.unwrap_or_else(|e| panic!("{}", kthw::chain(&e)));
    let ssh = reset.elapsed();
    let uptime: f64 = succeed(&cp, "cut -d' ' -f1 /proc/uptime").await.parse().unwrap();
    assert!(uptime < reset.elapsed().as_secs_f64() + 1.0, "the node rebooted: up {uptime} s");
    cp.wait_until_succeeds(&format!("{etcdctl} endpoint health"), Duration::from_secs(120)).await.unwrap();
    eprintln!(
        "control-plane-1 reset: SSH answers after {:.1} s, etcd healthy after {:.1} s",
        ssh.as_secs_f64(),
        reset.elapsed().as_secs_f64()
    );
    let value = succeed(&cp, &format!("{etcdctl} get /kthw/fault --print-value-only")).await;
    assert_eq!(value, "written before the faults", "etcd's data outlived the reset");
}

/// A test that panics while it holds the cluster (a failed assertion; here in a thread of its own, so that this
/// test goes on to look): the handle makes a failure bundle before its teardown, then the cluster is torn down,
/// or kept when `KTHW_KEEP=on-failure` says so. Returns the bundle.
async fn a_test_that_panics_holding_the_cluster_leaves_a_bundle(cluster: Cluster) -> Listed {
    let paths = test_paths();
    let (name, id) = (cluster.name().to_string(), cluster.id().to_string());
    let before: Vec<String> = prune::list(&paths).unwrap().into_iter().map(|b| b.name).collect();
    let started = Instant::now();
    let holder = std::thread::Builder::new().name("holds-the-cluster".into());
    let holder = holder
        .spawn(move || {
            let _held = cluster;
            panic!("a failed assertion while the cluster is up");
        })
        .unwrap();
    let joined = tokio::task::spawn_blocking(move || holder.join()).await.unwrap();
    assert!(joined.is_err(), "the holder panicked");
    let took = started.elapsed();
    let mut made: Vec<Listed> = prune::list(&paths)
        .unwrap()
        .into_iter()
        .filter(|b| !before.contains(&b.name) && b.name.starts_with(&format!("{name}-")))
        .collect();
    assert_eq!(made.len(), 1, "one bundle of {name} made at the panic: {made:?}");
    let bundle = made.remove(0);
    assert!(!bundle.writing && bundle.archive.is_some(), "{bundle:?}");
    eprintln!(
        "panic with the cluster held: bundle and teardown in {:.1} s, {} on disk with its archive at {}",
        took.as_secs_f64(),
        prune::human_bytes(bundle.bytes),
        bundle.dir.as_ref().unwrap().display()
    );
    match kthw::keep::from_env().unwrap().0 {
        Keep::Never => crate::nodes::assert_nothing_left(&paths, &name, &id),
        _ => {
            let kept = Cluster::open(&name, &paths).unwrap();
            assert!(kept.state().kept, "KTHW_KEEP keeps the cluster of a failed test");
            kept.down().await.unwrap();
        }
    }
    bundle
}

/// The bundle of a cluster that went through the faults, made at a panic while it ran: every node's records,
/// the apiserver's absence recorded rather than fatal, and not one private key in the archive.
fn a_bundle_holds_what_explains_the_cluster_and_no_key(bundle: &Listed, spec: &ClusterSpec) {
    let (dir, manifest) = (bundle.dir.as_ref().unwrap(), bundle.manifest.as_ref().expect("a complete bundle"));
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    for node in ["control-plane-1", "worker-node-1", "worker-node-2"] {
        assert!(read(&format!("nodes/{node}/journal.txt")).contains("Started ssh.service"), "{node}'s journal");
        assert!(read(&format!("nodes/{node}/domain.xml")).contains("<domain type="), "{node}'s domain XML");
    }
    // A restored node's console starts at the restore (its boot is the snapshot's): the reset node's shows the
    // boot after the reset, and the netem fault's kernel line reached worker-node-2's.
    assert!(read("run/nodes/control-plane-1/console.log").contains("Linux version"), "the reset's boot on the console");
    assert!(read("run/nodes/worker-node-2/console.log").contains("netem"), "worker-node-2's console");
    assert!(read("run/nodes/worker-node-2/ssh.log").contains("tc qdisc replace"), "the SSH log of the netem faults");
    assert!(read("nodes/control-plane-1/units.txt").contains("etcd.service"));
    assert!(read("run/timeline.log").contains("fault control-plane-1: reset"));
    assert!(read("run/phases.jsonl").contains("\"phase\":\"etcd\""));
    assert!(read("spec.toml").contains("etcd_from = \"debian\""));
    let reason = format!("thread 'holds-the-cluster' panicked while holding cluster {}", manifest.cluster);
    assert_eq!(manifest.reason, reason);
    assert!(read("README.txt").contains(&format!("reason: {reason}")));
    let apiserver = manifest.steps.iter().find(|s| s.name == "kubernetes/apiserver").expect("an apiserver step");
    assert!(apiserver.error.as_deref().unwrap_or_default().contains("the apiserver does not answer"), "{apiserver:?}");
    let failed: Vec<_> = manifest.steps.iter().filter(|s| s.error.is_some()).map(|s| s.name.as_str()).collect();
    // A test process keeps no log of its own for bundles (kthw's CLI does: harness.log).
    assert_eq!(failed, ["harness log", "kubernetes/apiserver"], "every other step collected");
    for secret in ["client_key", "pki/ca.key", "kubeconfigs/admin.kubeconfig"] {
        assert!(manifest.excluded.iter().any(|e| e.path == secret), "{secret} is listed as left out");
    }
    let archive = bundle.archive.as_ref().unwrap();
    let gz = flate2::read::GzDecoder::new(std::fs::File::open(archive).unwrap());
    for entry in tar::Archive::new(gz).entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        let name = entry.path().unwrap().display().to_string();
        assert!(!text.contains("PRIVATE KEY-----"), "{name} holds a private key");
    }
    let opened = kthw::bundle::open(archive).unwrap_or_else(|e| panic!("{}", kthw::chain(&e)));
    assert_eq!(&opened.spec, spec);
}
