//! The hard way's first phases on real nodes, as far as this host's artifacts go: PKI, kubeconfigs and etcd
//! (Debian trixie's etcd 3.5, which the host fetches through apt), checked with the real etcdctl over TLS; every rendered unit checked by the
//! guest's systemd; and the host's way to the apiserver port through `kthw kubeconfig`, against a stand-in TLS
//! server. One boot of two small nodes for all of it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kthw::accel::Accel;
use kthw::access;
use kthw::bootstrap::node_files::{control_plane_files, etcd_files, worker_files};
use kthw::bootstrap::{Bootstrap, BootstrapError, Layout, JOURNAL_LINES};
use kthw::cluster::Cluster;
use kthw::events::Events;
use kthw::oci;
use kthw::phase::Phase;
use kthw::pki::ClusterPki;
use kthw::rundir::Outcome;
use kthw::spec::{ClusterSpec, Origin};
use kthw::ssh::Session;
use kthw_tests::oci_layout::stand_in_archive;
use kthw_tests::{
    host_prerequisite, kthw_bin, small_spec, succeed, test_paths, unique_name, up, up_or_panic, vm_host_missing,
    wait_for_exit,
};

/// Units whose upstream binary this host cannot have: `systemd-analyze verify` may say only that their
/// executable is missing, and nothing else about any unit.
const UPSTREAM_ONLY: [(&str, &str); 4] = [
    ("kube-apiserver", "/usr/local/bin/kube-apiserver"),
    ("kube-controller-manager", "/usr/local/bin/kube-controller-manager"),
    ("kube-scheduler", "/usr/local/bin/kube-scheduler"),
    ("kubelet", "/usr/local/bin/kubelet"),
];

/// The control plane and one worker, 1 vCPU and 1 GiB each, etcd from the image.
fn spec() -> ClusterSpec {
    ClusterSpec { etcd_from: Origin::Debian, ..small_spec(2) }
}

use succeed as run;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pki_kubeconfigs_and_etcd_with_tls_on_real_nodes_idempotently() {
    let Some(()) = host_prerequisite("vm", vm_host_missing()) else { return };
    let paths = test_paths();
    let spec = spec();
    let name = unique_name("vm-bootstrap");
    let no_downloads = tempfile::tempdir().unwrap();
    let up = up(&spec, &name).await.until(Phase::Etcd).artifacts_dir(Some(no_downloads.path().to_path_buf()));
    assert_eq!(up.bootstrap().check(&spec, Phase::Etcd), [], "Debian's etcd needs no artifact");
    let running = up_or_panic(up).await;
    let (cluster, bootstrap, reports) = (running.cluster, running.bootstrap, running.reports);
    for r in &reports {
        eprintln!("phase {:<12} {:>6.1} s, {} files installed", r.phase.name(), r.took.as_secs_f64(), r.changed.len());
        assert!(!r.changed.is_empty(), "a first run of {} installs files", r.phase);
    }
    assert_eq!(reports.iter().map(|r| r.phase).collect::<Vec<_>>(), [Phase::Pki, Phase::Kubeconfigs, Phase::Etcd]);

    let layout = Layout::default();
    let cp = cluster.session("control-plane-1").await.unwrap();
    let worker = cluster.session("worker-node-1").await.unwrap();
    let said =
        std::fs::read_to_string(cluster.run_dir().phase_output(Phase::Etcd, kthw::bootstrap::ETCD_VERSION_OUTPUT));
    assert!(said.as_deref().is_ok_and(|s| s.starts_with("etcd Version: 3.5.16")), "which etcd ran is kept: {said:?}");
    secrets_are_where_the_seed_puts_them(&cp, &worker).await;
    etcd_serves_our_clients_only(&cp, &spec, &layout).await;
    rerunning_changes_nothing(&cluster, &bootstrap, &cp, &spec, &layout).await;
    a_broken_etcd_fails_with_its_journal_and_rerunning_the_phases_repairs_it(&cluster, &bootstrap, &cp, &spec).await;
    rendered_units_pass_systemd_analyze_verify(&cp, &spec, &layout, &bootstrap).await;
    containerd_runs_the_rendered_config_and_imports_an_image_archive(&worker, &spec, &layout, &bootstrap).await;
    let home = paths.state.parent().unwrap().to_path_buf();
    crate::images::images_by_index_digest_start_with_no_pull(&cluster, &worker, &home).await;
    crate::scenario_premises::single_label_node_names_resolve_only_from_etc_hosts(&cluster, &cp).await;
    let forwarder = host_kubectl_reaches_the_apiserver_port_through_kthw_kubeconfig(&cluster, &cp, &paths).await;

    let records = cluster.run_dir().phase_records();
    assert_eq!(records.iter().filter(|r| r.outcome == Outcome::Ok).count(), 8, "{records:?}");
    assert_eq!(records.iter().filter(|r| r.outcome == Outcome::Failed).count(), 1, "{records:?}");
    let log = std::fs::read_to_string(cluster.target("worker-node-1").unwrap().log.unwrap()).unwrap();
    assert!(log.contains("=== kthw: phase etcd begins ==="), "every node's log marks each phase");
    let timeline = std::fs::read_to_string(cluster.run_dir().timeline()).unwrap();
    for line in ["node control-plane-1: answers SSH after", "phase pki: begins", "phase etcd: done after"] {
        assert!(timeline.contains(line), "the run's timeline has {line:?}:\n{timeline}");
    }
    // The same run drawn: each node's boot (or restore), and every phase run on the cluster, the ones this
    // test ran by hand and the etcd it broke (drawn red) among them.
    let bars = kthw_tests::timeline_bars(
        &cluster.run_dir().timeline_svg(),
        "pki_kubeconfigs_and_etcd_with_tls_on_real_nodes_idempotently",
    );
    let count = |class: &str| bars.iter().filter(|(c, ..)| c == class).count();
    assert_eq!(count("boot") + count("restore"), spec.nodes.len(), "{bars:?}");
    assert_eq!(count("phase"), records.len(), "a bar per phase record: {bars:?}");
    assert_eq!(bars.iter().filter(|(c, fill, _)| c == "phase" && fill == "#d62728").count(), 1, "{bars:?}");

    cluster.down().await.unwrap();
    if let Some(pid) = forwarder {
        forwarder_ends_with_its_cluster(pid);
    }
}

async fn secrets_are_where_the_seed_puts_them(cp: &Session, worker: &Session) {
    // Keys and kubeconfigs (which embed keys) are root's alone.
    let modes =
        run(cp, "stat -c '%a %n' /etc/kubernetes/pki/*.key /etc/kubernetes/*.kubeconfig /root/.kube/config").await;
    assert!(modes.lines().count() >= 10, "{modes}");
    assert!(modes.lines().all(|l| l.starts_with("600 ")), "{modes}");
    // root's kubeconfig is the admin identity at the control plane's address: the seed's RBAC fix.
    let root = run(cp, &format!("grep -E 'server:|^- name: ' {}", Layout::default().root_kubeconfig.display())).await;
    assert!(root.contains("server: https://10.0.0.4:6443") && root.contains("- name: \"admin\""), "{root}");
    // A worker holds its own identity and the CA certificate: no CA key, no other node's key.
    assert_eq!(
        run(worker, "ls /etc/kubernetes/pki | tr '\\n' ' '").await,
        "ca.crt kubelet-worker-node-1.crt kubelet-worker-node-1.key"
    );
    assert_eq!(
        run(worker, "ls /etc/kubernetes/*.kubeconfig").await,
        "/etc/kubernetes/kubelet-worker-node-1.kubeconfig"
    );
}

async fn etcd_serves_our_clients_only(cp: &Session, spec: &ClusterSpec, layout: &Layout) {
    let etcdctl = layout.etcdctl(spec);
    let health = cp.succeed(&format!("{etcdctl} endpoint health")).await.unwrap();
    let said = format!("{}{}", health.stdout_lossy(), health.stderr_lossy());
    assert!(said.contains("https://127.0.0.1:2379 is healthy"), "etcd serves clients on loopback: {said}");
    run(cp, &format!("{etcdctl} put /kthw/greeting 'hello from the host'")).await;
    assert_eq!(run(cp, &format!("{etcdctl} get /kthw/greeting --print-value-only")).await, "hello from the host");
    // etcd_from = "debian" runs trixie's 3.5 (the seed's minor), not the image's bookworm 3.4.
    assert_eq!(run(cp, "etcd --version | head -1").await, "etcd Version: 3.5.16");
    assert_eq!(run(cp, "dpkg-query -W -f '${Version}' etcd-server").await, kthw::artifacts::debian::ETCD[0].version);

    // The same client identity (CN, usages) from another CA: etcd refuses the handshake.
    let rogue = ClusterPki::generate(spec).unwrap();
    let leaf = rogue.leaf("etcd-client").unwrap();
    let (cert, key) = (Path::new("/tmp/rogue/etcd-client.crt"), Path::new("/tmp/rogue/etcd-client.key"));
    run(cp, "mkdir -p /tmp/rogue").await;
    cp.upload_bytes(leaf.cert_pem.as_bytes(), "/tmp/rogue/etcd-client.crt", 0o644).await.unwrap();
    cp.upload_bytes(leaf.key_pem.as_bytes(), "/tmp/rogue/etcd-client.key", 0o600).await.unwrap();
    let refused = cp
        .fail(&format!(
            "{} --dial-timeout=5s --command-timeout=10s get /kthw/greeting",
            layout.etcdctl_as(spec, cert, key)
        ))
        .await
        .unwrap();
    let said = format!("{}{}", refused.stdout_lossy(), refused.stderr_lossy());
    assert!(!said.contains("hello from the host"), "{said}");
    let journal = run(cp, "journalctl -u etcd --no-pager -o cat | grep -i 'rejected connection' | tail -3").await;
    assert!(
        journal.contains("unknown authority"),
        "etcd's journal shows why it refused: {journal}\nclient said: {said}"
    );
}

async fn rerunning_changes_nothing(
    cluster: &Cluster,
    b: &Bootstrap,
    cp: &Session,
    spec: &ClusterSpec,
    layout: &Layout,
) {
    let pid = run(cp, "systemctl show -p MainPID --value etcd").await;
    for phase in [Phase::Pki, Phase::Kubeconfigs, Phase::Etcd] {
        let r = b.run(cluster, phase, &Events::default()).await.unwrap_or_else(|e| panic!("{}", kthw::chain(&e)));
        eprintln!("phase {:<12} again: {:>6.1} s", phase.name(), r.took.as_secs_f64());
        assert_eq!(r.changed, Vec::<String>::new(), "a second {phase} changed files");
    }
    assert_eq!(run(cp, "systemctl show -p MainPID --value etcd").await, pid, "etcd was not restarted");
    let value = run(cp, &format!("{} get /kthw/greeting --print-value-only", layout.etcdctl(spec))).await;
    assert_eq!(value, "hello from the host");
}

async fn a_broken_etcd_fails_with_its_journal_and_rerunning_the_phases_repairs_it(
    cluster: &Cluster,
    b: &Bootstrap,
    cp: &Session,
    spec: &ClusterSpec,
) {
    run(cp, "rm /etc/kubernetes/pki/etcd-server.key && systemctl restart --no-block etcd").await;
    let started = Instant::now();
    let err = b.run(cluster, Phase::Etcd, &Events::default()).await.expect_err("etcd cannot serve without its key");
    eprintln!("the broken etcd phase failed after {:.1} s", started.elapsed().as_secs_f64());
    let text = err.to_string();
    eprintln!("it reads:\n{}\n...", text.lines().take(14).collect::<Vec<_>>().join("\n"));
    let BootstrapError::Wait(failed) = &err else { panic!("not a failed wait: {text}") };
    assert_eq!((failed.phase, failed.node.as_str()), (Phase::Etcd, "control-plane-1"));
    assert!(failed.check.contains("endpoint health"), "{text}");
    assert!(failed.diagnostics.contains("etcd-server.key"), "the journal's last lines say why: {text}");
    assert!(text.contains(&format!("journalctl -u etcd -n {JOURNAL_LINES}")), "{text}");

    let events = Events::default();
    let repaired = b.run(cluster, Phase::Pki, &events).await.unwrap_or_else(|e| panic!("{}", kthw::chain(&e)));
    assert_eq!(repaired.changed, ["control-plane-1:/etc/kubernetes/pki/etcd-server.key"]);
    b.run(cluster, Phase::Etcd, &events).await.unwrap_or_else(|e| panic!("{}", kthw::chain(&e)));
    let value = run(cp, &format!("{} get /kthw/greeting --print-value-only", Layout::default().etcdctl(spec))).await;
    assert_eq!(value, "hello from the host", "the data outlived the outage");
}

async fn rendered_units_pass_systemd_analyze_verify(cp: &Session, spec: &ClusterSpec, layout: &Layout, b: &Bootstrap) {
    let pause = b.manifest.get("pause").unwrap().locator().to_string();
    let mut files = etcd_files(spec, layout, Accel::Tcg);
    files.extend(control_plane_files(spec, layout, Accel::Tcg));
    files.extend(worker_files(spec, "worker-node-1", layout, &pause));
    let units: Vec<_> = files.iter().filter(|f| f.path.extension().is_some_and(|e| e == "service")).collect();
    assert_eq!(units.len(), 5, "etcd, three control plane units, the kubelet");
    run(cp, "mkdir -p /run/kthw-verify").await;
    for u in &units {
        let to = PathBuf::from("/run/kthw-verify").join(u.path.file_name().unwrap());
        cp.upload_bytes(u.contents.as_bytes(), &to.display().to_string(), 0o644).await.unwrap();
    }
    let out = cp.exec("systemd-analyze verify /run/kthw-verify/*.service", Duration::from_secs(300)).await.unwrap();
    let said = format!("{}{}", out.stdout_lossy(), out.stderr_lossy());
    let expected: Vec<String> = UPSTREAM_ONLY
        .iter()
        .map(|(unit, bin)| format!("{unit}.service: Command {bin} is not executable: No such file or directory"))
        .collect();
    let unexpected: Vec<&str> =
        said.lines().filter(|l| !l.trim().is_empty() && !expected.iter().any(|e| l.trim() == e)).collect();
    assert!(unexpected.is_empty(), "systemd-analyze verify said more than the missing upstream binaries:\n{said}");
    for e in &expected {
        assert!(said.contains(e.as_str()), "expected {e:?} in:\n{said}");
    }
    // The unit the etcd phase installed, with its binary present, verifies clean.
    let installed = cp.exec("systemd-analyze verify /etc/systemd/system/etcd.service", Duration::from_secs(120)).await;
    let installed = installed.unwrap();
    assert!(installed.success(), "{}", installed.summary());
    assert_eq!(format!("{}{}", installed.stdout_lossy(), installed.stderr_lossy()).trim(), "");
}

/// The workers phase's containerd half, which needs no upstream binary: the rendered config, run by the
/// image's containerd, and the sandbox image imported from an OCI archive as the artifact cache holds one. The
/// archive is a stand-in (one empty layer) under the pinned pause name, made here since the real one cannot be
/// downloaded on this host.
async fn containerd_runs_the_rendered_config_and_imports_an_image_archive(
    worker: &Session,
    spec: &ClusterSpec,
    layout: &Layout,
    b: &Bootstrap,
) {
    let pause = b.manifest.get("pause").unwrap().locator().to_string();
    let config = worker_files(spec, "worker-node-1", layout, &pause)
        .into_iter()
        .find(|f| f.path == layout.containerd_config)
        .expect("the workers phase renders containerd's config");
    worker.upload_bytes(config.contents.as_bytes(), "/etc/containerd/config.toml", 0o644).await.unwrap();
    run(worker, "systemctl restart containerd").await;
    worker.wait_until_succeeds("ctr version", Duration::from_secs(120)).await.unwrap();
    let dump = run(worker, "containerd config dump").await;
    assert!(dump.contains("SystemdCgroup = true"), "{dump}");
    assert!(dump.contains(&format!("sandbox_image = \"{pause}\"")), "{dump}");

    let dir = tempfile::tempdir().unwrap();
    let archive = stand_in_archive(dir.path(), &pause);
    let remote = Path::new("/var/lib/kthw/images/stand-in.oci.tar");
    run(worker, "mkdir -p /var/lib/kthw/images").await;
    worker.upload(&archive, &remote.display().to_string(), 0o644).await.unwrap();
    let images = oci::read_archive(&archive).unwrap_or_else(|e| panic!("{}", kthw::chain(&e)));
    let [image] = images.as_slice() else { panic!("one image: {images:?}") };
    assert_eq!(image.reference, pause);
    oci::import(worker, &layout.ctr(), remote, &images).await.unwrap_or_else(|e| panic!("{}", kthw::chain(&e)));
    oci::import(worker, &layout.ctr(), remote, &images).await.unwrap_or_else(|e| panic!("again: {}", kthw::chain(&e)));
    let images = run(worker, "ctr -n k8s.io images ls -q").await;
    assert_eq!(images.lines().filter(|l| *l == pause).count(), 1, "{images}");
    assert_eq!(images.lines().filter(|l| *l == image.digested()).count(), 1, "and by its digest: {images}");
}

/// `kthw kubeconfig` prints a kubeconfig whose server is a host loopback port forwarded to
/// control-plane-1:6443. No apiserver can run here, so a stand-in serves that port: openssl's TLS server with
/// the apiserver's certificate, requiring a client certificate from the cluster CA, which echoes what it saw.
/// The host's kubectl then proves the whole path: the forward, the CA, the SAN 127.0.0.1, the admin identity.
/// Returns the forwarder's pid.
async fn host_kubectl_reaches_the_apiserver_port_through_kthw_kubeconfig(
    cluster: &Cluster,
    cp: &Session,
    paths: &kthw::paths::Paths,
) -> Option<u32> {
    kthw::testing::needs(kthw::testing::on_path("kubectl", "kthw kubeconfig through the host's kubectl"))?;
    // Written by hand to exercise kthw kubeconfig's forward: a command, not a fixture of output.
    let stand_in = "systemd-run --unit=kthw-stand-in-apiserver --collect openssl s_server -quiet -www \
                    -accept 10.0.0.4:6443 -cert /etc/kubernetes/pki/kube-apiserver.crt \
                    -key /etc/kubernetes/pki/kube-apiserver.key -CAfile /etc/kubernetes/pki/ca.crt -Verify 1";
    run(cp, stand_in).await;
    cp.wait_until_succeeds("ss -Hltn 'sport = :6443' | grep -q 10.0.0.4", Duration::from_secs(60)).await.unwrap();

    let home = paths.state.parent().unwrap();
    let kthw = kthw_bin();
    let kubeconfig = |what: &str| {
        let out = Command::new(&kthw).args(["kubeconfig", cluster.name()]).env("KTHW_HOME", home).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "kthw kubeconfig ({what}) failed: {stderr}");
        (PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()), stderr)
    };
    let started = Instant::now();
    let (path, note) = kubeconfig("first");
    eprintln!("kthw kubeconfig took {:.1} s", started.elapsed().as_secs_f64());
    assert!(note.contains("control-plane phase has not completed"), "it says nothing answers yet: {note}");
    let record = access::read_record(cluster.run_dir()).expect("the forwarder recorded itself");
    assert!(record.owner.is_alive(), "the forwarder outlives `kthw kubeconfig`");

    let server = Command::new("kubectl")
        .args(["--kubeconfig"])
        .arg(&path)
        .args(["config", "view", "-o", "jsonpath={.clusters[0].cluster.server}"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&server.stdout), format!("https://127.0.0.1:{}", record.port));

    let got = Command::new("kubectl").arg("--kubeconfig").arg(&path).args(["get", "--raw", "/"]).output().unwrap();
    let body = String::from_utf8_lossy(&got.stdout);
    assert!(got.status.success(), "kubectl through the forward: {}", String::from_utf8_lossy(&got.stderr));
    let admin = ClusterPki::load(&cluster.run_dir().pki()).unwrap().leaf("admin").unwrap().cert_pem.clone();
    let admin_body: String = admin.lines().filter(|l| !l.starts_with("-----")).collect();
    let seen: String = body.lines().collect();
    assert!(seen.contains(&admin_body), "the stand-in saw the admin client certificate:\n{body}");
    assert!(body.contains("Verify return code: 0 (ok)"), "{body}");

    // Asked again, the same forwarder serves the same port.
    let (again, _) = kubeconfig("again");
    assert_eq!(again, path);
    assert_eq!(access::read_record(cluster.run_dir()), Some(record.clone()));
    run(cp, "systemctl stop kthw-stand-in-apiserver").await;
    Some(record.owner.pid)
}

/// The forwarder notices its cluster is gone (state file removed) within its watch interval.
fn forwarder_ends_with_its_cluster(pid: u32) {
    let took = wait_for_exit(pid, Duration::from_secs(15));
    let took = took.unwrap_or_else(|| panic!("the forwarder {pid} still runs 15 s after `down`"));
    eprintln!("the forwarder ended {:.1} s after the cluster was removed", took.as_secs_f64());
}
