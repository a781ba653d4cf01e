//! Three reachable nodes: the topology `Cluster::up` builds, checked from inside the guests and from the
//! host. One boot per test, many assertions per boot (TCG on a 2-core host makes boots the cost).

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kthw::cluster::{self, Cluster};
use kthw::identity::{Mac, Nic};
use kthw::paths::Paths;
use kthw::phase::Phase;
use kthw::rundir::RunDir;
use kthw::spec::ClusterSpec;
use kthw::up::UpError;
use kthw::virt::{self, reap};
use kthw_tests::{
    golden_up_until, host_prerequisite, kthw_bin, small_spec, succeed, test_paths, unique_name, up_until,
    vm_host_missing,
};

/// `small_spec(nodes)` with or without egress.
fn spec_of(nodes: usize, egress: bool) -> ClusterSpec {
    ClusterSpec { egress, ..small_spec(nodes) }
}

async fn up(spec: &ClusterSpec, name: &str) -> Cluster {
    up_until(spec, name, Phase::Nodes).await.cluster
}

async fn run(cluster: &Cluster, node: &str, cmd: &str) -> String {
    succeed(&cluster.session(node).await.unwrap(), cmd).await
}

/// A listener on the host's loopback and whether `node` can open a connection to it through its
/// user-mode NIC (slirp's host alias 10.0.2.2). The guest's attempt is bounded; afterwards the listener
/// says whether anything arrived, so a refusal inside the guest and a silent drop both count as blocked.
async fn guest_reaches_host_loopback(cluster: &Cluster, node: &str) -> bool {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let session = cluster.session(node).await.unwrap();
    let attempt = format!("timeout 10 bash -c 'echo kthw > /dev/tcp/10.0.2.2/{port}'");
    let guest_says = session.exec(&attempt, Duration::from_secs(60)).await.unwrap().success();
    let arrived = match listener.accept() {
        Ok(_) => true,
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(e) => panic!("accept on 127.0.0.1:{port}: {e}"),
    };
    assert_eq!(guest_says, arrived, "the guest and the host listener disagree about the connection");
    arrived
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_boot_with_their_identity_on_an_isolated_network_without_egress() {
    let Some(()) = host_prerequisite("vm", vm_host_missing()) else { return };
    let paths = test_paths();
    let spec = spec_of(3, false);
    let name = unique_name("vm-three");
    let cluster = up(&spec, &name).await;

    for n in &spec.nodes {
        let boot = cluster.node(&n.name).unwrap().boot_ms.expect("boot time recorded");
        eprintln!("{} answered SSH after {:.1} s", n.name, boot as f64 / 1000.0);
        assert_eq!(run(&cluster, &n.name, "hostname").await, n.name);
        // The spec's address, and only it, on the NIC with the node's cluster MAC.
        let on_net = run(&cluster, &n.name, &format!("ip -o -4 addr show to {}", spec.network.nodes)).await;
        let fields: Vec<&str> = on_net.split_whitespace().collect();
        assert_eq!(on_net.lines().count(), 1, "{on_net}");
        assert_eq!(fields[3], format!("{}/{}", n.address, spec.network.nodes.prefix_len()), "{on_net}");
        let mac = run(&cluster, &n.name, &format!("cat /sys/class/net/{}/address", fields[1])).await;
        assert_eq!(mac, Mac::for_node(&n.name, Nic::Cluster).to_string());
    }

    // All six directed pings over the cluster network.
    for from in &spec.nodes {
        for to in spec.nodes.iter().filter(|t| t.name != from.name) {
            let ping = format!("ping -c 1 -W 5 -I {} {}", from.address, to.address);
            cluster.session(&from.name).await.unwrap().succeed(&ping).await.unwrap();
        }
    }

    // The host has no address on the cluster's bridge (it lives in the host's namespace with qemu:///system).
    if cluster.state().uri.starts_with("qemu:///system") {
        let out = Command::new("ip").args(["-j", "addr", "show", "dev", &cluster.state().bridge]).output().unwrap();
        assert!(out.status.success(), "the bridge exists: {}", String::from_utf8_lossy(&out.stderr));
        let links: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(links[0]["addr_info"], serde_json::json!([]), "host addresses on the bridge: {links}");
    }

    // egress = false: the user-mode NIC carries the SSH forward in, nothing out, even to the host itself.
    assert!(!guest_reaches_host_loopback(&cluster, "worker-node-1").await, "a guest reached the host's loopback");

    // The node image, checked in the same boot.
    for n in &spec.nodes {
        let s = cluster.session(&n.name).await.unwrap();
        let state = s.exec("systemctl is-system-running --wait", Duration::from_secs(300)).await.unwrap();
        let failed = run(&cluster, &n.name, "systemctl --failed --no-legend --plain").await;
        assert_eq!(state.stdout_lossy().trim(), "running", "{}: failed units: {failed}", n.name);
        assert_eq!(failed, "", "{}", n.name);
        // A boot cut: containerd waits for the workers phase (or a `kthw load`) to start it.
        let containerd =
            run(&cluster, &n.name, "systemctl is-enabled containerd; systemctl is-active containerd || true");
        assert_eq!(containerd.await.split_whitespace().collect::<Vec<_>>(), ["disabled", "inactive"], "{}", n.name);
        assert!(run(&cluster, &n.name, "etcd --version").await.contains("etcd Version"));
        run(&cluster, &n.name, "test -d /sys/module/overlay && test -d /sys/module/br_netfilter").await;
        let sysctls = run(&cluster, &n.name, "sysctl -n net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables").await;
        assert_eq!(sysctls.split_whitespace().collect::<Vec<_>>(), ["1", "1"], "{}", n.name);
        assert_eq!(run(&cluster, &n.name, "swapon --show --noheadings").await, "", "{}: swap", n.name);
    }

    // The boot cuts hold: udev loaded no driver for the hardware a node has but never uses.
    let modules = run(&cluster, "worker-node-1", "cut -d' ' -f1 /proc/modules").await;
    for cut in ["floppy", "ata_piix", "psmouse", "pcspkr", "kvm"] {
        assert!(!modules.lines().any(|m| m == cut), "{cut} is loaded: {modules}");
    }
    // ...the node booted the kernel uncompressed (boot-cuts/kernel.toml), through its PVH entry...
    let domain = &cluster.node("worker-node-1").unwrap().domain;
    let xml = Command::new("virsh").args(["-c", &cluster.state().uri, "dumpxml", domain]).output().unwrap();
    let xml = String::from_utf8_lossy(&xml.stdout);
    assert!(xml.contains("/vmlinux</kernel>"), "{xml}");
    // ...and sshd runs without re-executing itself per connection, started without a second `sshd -t`.
    let sshd = run(&cluster, "worker-node-1", "ps -o args= -C sshd; systemctl show ssh -p ExecStartPre --value").await;
    assert!(sshd.lines().next().is_some_and(|l| l.contains("/usr/sbin/sshd -D -r")), "{sshd}");
    assert!(!sshd.contains("sshd -t"), "{sshd}");
    // The cold-image-wait scenario's mirror, started as the scenario starts it, answers /v2/ without auth.
    let mirror = format!("{} && systemctl stop docker-registry", kthw_scenarios::cold_image::start_mirror_command());
    run(&cluster, "control-plane-1", &mirror).await;

    crate::ssh::ssh_checks(&cluster).await;

    // Another process finds the cluster by name through its state file and reaches it with its keys.
    let opened = Cluster::open(&name, &paths).unwrap();
    assert_eq!(opened.id(), cluster.id());
    assert_eq!(run(&opened, "worker-node-2", "hostname").await, "worker-node-2");
    assert!(cluster::list(&paths).iter().flatten().any(|s| s.name == name));

    let id = cluster.id().to_string();
    cluster.down().await.unwrap();
    assert_nothing_left(&paths, &name, &id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_run_side_by_side_with_the_same_addresses() {
    let Some(()) = host_prerequisite("vm", vm_host_missing()) else { return };
    let paths = test_paths();
    // B allows egress: the positive control for the egress probe the other test relies on.
    let (spec_a, spec_b) = (spec_of(2, false), spec_of(2, true));
    let (name_a, name_b) = (unique_name("vm-pair-a"), unique_name("vm-pair-b"));
    // A from the shared snapshot of two nodes (the gc test's live cluster is another copy of it), B booted.
    let (a, b) = tokio::join!(golden_up_until(&spec_a, &name_a, Phase::Nodes), up(&spec_b, &name_b));
    let a = a.cluster;

    assert_ne!(a.id(), b.id());
    for node in ["control-plane-1", "worker-node-1"] {
        let (na, nb) = (a.node(node).unwrap(), b.node(node).unwrap());
        assert_eq!(na.address, nb.address, "the same spec gives the same addresses");
        assert_ne!(na.ssh_port, nb.ssh_port, "each cluster has its own forwards");
        assert_ne!(na.host_key, nb.host_key, "and its own host keys");
    }

    // Each control plane serves its own cluster's name on 10.0.0.4; each worker reaches its own.
    for (c, label) in [(&a, "A"), (&b, "B")] {
        run(c, "control-plane-1", &format!("echo {label} > /root/which")).await;
        run(
            c,
            "control-plane-1",
            "systemd-run --unit=kthw-which socat TCP-LISTEN:7777,reuseaddr,fork SYSTEM:'cat /root/which'",
        )
        .await;
    }
    for (c, label) in [(&a, "A"), (&b, "B")] {
        let reply = c
            .session("worker-node-1")
            .await
            .unwrap()
            .wait_until_succeeds("timeout 5 socat -u TCP:10.0.0.4:7777 STDOUT", Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(reply.stdout_lossy().trim(), label, "a worker of cluster {label} reached another cluster");
    }

    assert!(guest_reaches_host_loopback(&b, "worker-node-1").await, "egress = true must let the guest out");

    let (id_a, id_b) = (a.id().to_string(), b.id().to_string());
    let (da, db) = tokio::join!(a.down(), b.down());
    da.unwrap();
    db.unwrap();
    assert_nothing_left(&paths, &name_a, &id_a);
    assert_nothing_left(&paths, &name_b, &id_b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_removes_everything_of_a_killed_up_an_interrupted_up_leaves_nothing_and_a_live_cluster_stays() {
    let Some(()) = host_prerequisite("vm", vm_host_missing()) else { return };
    let paths = test_paths();
    let kthw = kthw_bin();
    let home = paths.state.parent().unwrap().to_path_buf();
    let spec_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(spec_file.path(), toml_of(&spec_of(2, false))).unwrap();

    // A live cluster of this process must survive the gc (two nodes: a valid spec has a worker).
    let live_name = unique_name("vm-live");
    // Any live cluster will do: a copy of the shared snapshot, not a boot.
    let live = golden_up_until(&spec_of(2, false), &live_name, Phase::Nodes).await.cluster;

    let spawn_up = |name: &str, stderr: Stdio| {
        Command::new(&kthw)
            // --fresh: this test is about killing a boot, whatever golden snapshot of its spec exists.
            .args(["up", "--fresh", "--until", "nodes", "--name", name, "--spec"])
            .arg(spec_file.path())
            .env("KTHW_HOME", &home)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap()
    };
    let killed = unique_name("vm-killed");
    let mut child = spawn_up(&killed, Stdio::null());
    let id = wait_until_booting(&paths, &killed, 2, Duration::from_secs(120));
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGKILL) }, 0);
    child.wait().unwrap();
    assert!(!qemu_pids_of(&id).is_empty(), "the killed run left its VMs running: the gc below has work");

    let gc = Command::new(&kthw).arg("gc").env("KTHW_HOME", &home).output().unwrap();
    let report = String::from_utf8_lossy(&gc.stdout);
    assert!(gc.status.success(), "kthw gc: {}", String::from_utf8_lossy(&gc.stderr));
    assert!(report.contains(&id), "{report}");

    assert_nothing_left(&paths, &killed, &id);

    // ^C while booting: kthw up tears down what it made and exits as a shell expects of SIGINT.
    let interrupted = unique_name("vm-interrupted");
    let child = spawn_up(&interrupted, Stdio::piped());
    let id = wait_until_booting(&paths, &interrupted, 2, Duration::from_secs(120));
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "an interrupted kthw up exits 130: {said}");
    assert!(said.contains(&format!("interrupted by SIGINT: cluster {interrupted} was torn down")), "{said}");
    assert_nothing_left(&paths, &interrupted, &id);

    assert_eq!(run(&live, "control-plane-1", "hostname").await, "control-plane-1", "gc touched a live cluster");
    let live_id = live.id().to_string();
    live.down().await.unwrap();
    assert_nothing_left(&paths, &live_name, &live_id);
}

/// A boot that fails (a deadline no node can meet) is collected before its teardown: the error names a failure
/// bundle holding each node's console, domain XML and SSH log, the spec and the timeline, with no key; and
/// nothing of the cluster is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_boot_leaves_a_bundle_of_its_consoles_named_in_the_error_and_nothing_else() {
    let Some(()) = host_prerequisite("vm", vm_host_missing()) else { return };
    let paths = test_paths();
    let spec = spec_of(2, false);
    let name = unique_name("vm-boot-fails");
    // Written for KVM and scaled like every deadline (12 s under TCG): no node reaches sshd that soon, and the
    // kernel has long printed its banner (6 s under TCG on a loaded host was too short for even that).
    let up = kthw_tests::up(&spec, &name).await.until(Phase::Nodes).fresh(true).boot_deadline(Duration::from_secs(2));
    let started = Instant::now();
    let err = match up.run().await {
        Ok(r) => panic!("cluster {} came up within a 2 s boot deadline", r.cluster.name()),
        Err(e) => e,
    };
    let text = kthw::chain(&err);
    let UpError::Boot { bundle: Some(dir), .. } = &err else { panic!("not a failed boot with a bundle: {text}") };
    assert!(text.contains(&format!("failure bundle: {} (and {}.tar.gz)", dir.display(), dir.display())), "{text}");
    assert!(text.contains("did not answer SSH within"), "the boot's own error stays: {text}");
    let opened =
        kthw::bundle::open(&dir.with_file_name(format!("{}.tar.gz", dir.file_name().unwrap().to_string_lossy())))
            .unwrap_or_else(|e| panic!("{}", kthw::chain(&e)));
    assert_eq!(opened.spec, spec);
    assert_eq!(opened.failed_phase(), Some(Phase::Nodes), "kthw repro boots it again, restores nothing");
    assert!(
        opened.manifest.reason.starts_with(&format!("cluster {name} did not come up: node ")),
        "{}",
        opened.manifest.reason
    );
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    for n in &spec.nodes {
        assert!(read(&format!("run/nodes/{}/console.log", n.name)).contains("Linux version"), "{}'s console", n.name);
        assert!(read(&format!("nodes/{}/domain.xml", n.name)).contains("<domain type="), "{}'s domain", n.name);
        let ssh = opened.manifest.steps.iter().find(|s| s.name == format!("nodes/{}/ssh", n.name)).unwrap();
        assert!(ssh.error.as_deref().unwrap().contains("did not answer SSH while booting"), "{ssh:?}");
        assert!(read("run/timeline.log").contains(&format!("node {}: booting", n.name)));
    }
    let kubernetes = opened.manifest.steps.iter().find(|s| s.name == "kubernetes").unwrap();
    assert!(kubernetes.error.as_deref().unwrap().starts_with("skipped: the cluster failed while booting"));
    // Where the boot's time went, drawn into the bundle: a boot bar per node, none finished. The node whose
    // deadline ran out is drawn failed (red, harness/src/timeline/svg.rs FAILED, with why: issue 30); the others,
    // torn down with it, unfinished (dashed).
    let svg = kthw::bundle::timeline_svg(dir);
    assert!(text.contains("where the time went in its run/timeline.svg"), "the error names the picture: {text}");
    let bars = kthw_tests::timeline_bars(
        &svg,
        "a_failed_boot_leaves_a_bundle_of_its_consoles_named_in_the_error_and_nothing_else",
    );
    let boots: Vec<_> = bars.iter().filter(|(class, ..)| class == "boot").collect();
    assert_eq!(boots.len(), spec.nodes.len(), "{bars:?}");
    let failed = |(_, fill, dashed): &&(String, String, bool)| fill == "#d62728" && !dashed;
    assert!(boots.iter().any(failed), "the node that failed is drawn failed: {bars:?}");
    assert!(boots.iter().filter(|b| !failed(b)).all(|(_, _, dashed)| *dashed), "the rest unfinished: {bars:?}");
    for secret in ["client_key", "nodes/control-plane-1/fwcfg/ssh_host_ed25519_key"] {
        assert!(opened.manifest.excluded.iter().any(|e| e.path == secret), "{secret} is listed as left out");
    }
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                let bytes = std::fs::read(e.path()).unwrap();
                assert!(
                    !String::from_utf8_lossy(&bytes).contains("PRIVATE KEY-----"),
                    "{} holds a key",
                    e.path().display()
                );
            }
        }
    }
    eprintln!(
        "failed boot, bundle and teardown in {:.1} s; bundle {} with its archive",
        started.elapsed().as_secs_f64(),
        kthw::bundle::prune::human_bytes(
            kthw::bundle::prune::list(&paths).unwrap().iter().find(|b| dir.ends_with(&b.name)).unwrap().bytes
        )
    );
    assert_nothing_left(&paths, &name, &opened.manifest.cluster_id);
}

/// The spec file a person would write for `small_spec`: only what differs from the seed's defaults.
pub(crate) fn toml_of(spec: &ClusterSpec) -> String {
    let mut text = format!("egress = {}\n", spec.egress);
    for n in &spec.nodes {
        let role = match n.role {
            kthw::spec::Role::ControlPlane => "control-plane",
            kthw::spec::Role::Worker => "worker",
        };
        text += &format!(
            "\n[[nodes]]\nname = \"{}\"\nrole = \"{role}\"\naddress = \"{}\"\nvcpus = {}\nmemory_mib = {}\n",
            n.name, n.address, n.vcpus, n.memory_mib
        );
    }
    assert_eq!(&ClusterSpec::from_toml_validated(&text, "test spec").unwrap(), spec);
    text
}

/// Polls the run directory's state file and libvirt until `nodes` of the cluster's domains run (a restore may
/// start several between two polls); returns its id.
pub(crate) fn wait_until_booting(paths: &Paths, name: &str, nodes: usize, deadline: Duration) -> String {
    let start = Instant::now();
    let mut last = String::from("no state file yet");
    while start.elapsed() < deadline {
        if let Ok(state) = kthw::cluster::ClusterState::read(&RunDir::at(paths.run(name))) {
            let running = qemu_pids_of(&state.id).len();
            if running >= nodes {
                return state.id;
            }
            last = format!("{running} of {nodes} QEMU processes of cluster {}", state.id);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("cluster {name} did not start booting within {deadline:?}: {last}");
}

/// QEMU processes whose command line names a domain of cluster `id`.
fn qemu_pids_of(id: &str) -> Vec<u32> {
    let needle = format!("guest={}", virt::names::domain(id, ""));
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        if String::from_utf8_lossy(&cmdline).replace('\0', " ").contains(&needle) {
            pids.push(pid);
        }
    }
    pids
}

/// No domain, network, run directory, QEMU process or libvirt log of cluster `id` remains.
pub(crate) fn assert_nothing_left(paths: &Paths, name: &str, id: &str) {
    let conn = virt::connect::open(&virt::connect::uri()).unwrap();
    let objects: BTreeMap<String, reap::Kind> = reap::owned(&conn)
        .unwrap()
        .into_iter()
        .filter(|o| o.ownership.cluster_id == id)
        .map(|o| (o.name, o.kind))
        .collect();
    assert!(objects.is_empty(), "libvirt objects of {id} left: {objects:?}");
    let prefix = virt::names::network(id);
    let by_name: Vec<String> = conn.list_all_domains(0).unwrap().iter().filter_map(|d| d.name().ok()).collect();
    assert!(!by_name.iter().any(|n| n.starts_with(&prefix)), "domains left: {by_name:?}");
    let nets: Vec<String> = conn.list_all_networks(0).unwrap().iter().filter_map(|n| n.name().ok()).collect();
    assert!(!nets.contains(&prefix), "network left: {nets:?}");
    assert!(!paths.run(name).exists(), "run directory left: {}", paths.run(name).display());
    assert_eq!(qemu_pids_of(id), Vec::<u32>::new(), "QEMU processes left");
    if let Ok(logs) = std::fs::read_dir("/var/log/libvirt/qemu") {
        let left: Vec<String> =
            logs.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.contains(id)).collect();
        assert!(left.is_empty(), "libvirt logs left: {left:?}");
    }
}
