//! Golden snapshots on real nodes: a cluster at `etcd` (a copy of the shared snapshot) is saved once with a lease, a transient systemd
//! timer and a certificate in flight; two private copies restored from it run at once and are independent,
//! keep their time-dependent state, and keep their pinned host keys; a snapshot whose image is gone is refused.
//! Restore time against the boot it replaces is printed (the ratio goal is `just bench`'s, not a timed
//! assertion here). A run that must run a phase again (`kthw repro` of a failed one) restores only what comes
//! before it.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kthw::bootstrap::Layout;
use kthw::cluster::Cluster;
use kthw::events::{Event, Events};
use kthw::golden::{self, store, GoldenError};
use kthw::phase::Phase;
use kthw::up::Running;
use kthw_tests::{
    etcd_spec as spec, golden_cluster, golden_up_until, host_prerequisite, kthw_bin, node_image, private_golden_inputs,
    small_spec, succeed, test_paths, unique_name, up, up_or_panic, vm_host_missing,
};
use rstest::rstest;

const LEASE_TTL: i64 = 900;

fn host_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_of_one_golden_snapshot_run_at_once_independent_and_on_time() {
    let Some(()) = host_prerequisite("vm", vm_host_missing()) else { return };
    let paths = test_paths();
    let spec = spec();
    let layout = Layout::default();
    let etcdctl = layout.etcdctl(&spec);

    // The source is a copy of the shared snapshot at etcd (the faults test starts from it too): one boot for
    // both. The boot a restore replaces is the one that snapshot recorded.
    let source = golden_up_until(&spec, &unique_name("vm-golden-src"), Phase::Etcd).await.cluster;
    let shared = std::fs::read_to_string(source.run_dir().golden_origin()).expect("a copy names its snapshot");
    let boot = store::open(&paths, shared.trim())
        .unwrap()
        .and_then(|m| m.build_ms)
        .map(Duration::from_millis)
        .expect("the shared snapshot records its boot to etcd");
    let cp = source.session("control-plane-1").await.unwrap();
    let lease = succeed(&cp, &format!("{etcdctl} lease grant {LEASE_TTL} | awk '{{print $2}}'")).await;
    let granted = host_now();
    succeed(&cp, &format!("{etcdctl} put --lease={lease} /kthw/leased yes")).await;
    // Monotonic: it must fire about 45 s of guest time after this, whatever the downtime in between.
    succeed(
        &cp,
        "systemd-run --unit=kthw-golden-tick --on-active=45s --timer-property=AccuracySec=1s touch /run/kthw-ticked",
    )
    .await;

    let image = node_image().await;
    let uri = kthw::virt::connect::uri();
    // This test's own snapshot: the lease and timer make it unlike any other, so no other run may restore it.
    let inputs = private_golden_inputs(&image, &source, Phase::Etcd, &unique_name("golden-test"));
    let key = inputs.key();
    let host_keys: Vec<String> = source.nodes().iter().map(|n| n.host_key.clone()).collect();
    let base = std::fs::canonicalize(&image.disk).unwrap();
    let saved_at = Instant::now();
    let manifest =
        golden::save(source, inputs, &paths, base, Some(boot)).await.unwrap_or_else(|e| panic!("{}", kthw::chain(&e)));
    let save = saved_at.elapsed();
    let _cleanup = Prune(key.clone());

    let events = Events::default();
    let (a_name, b_name) = (unique_name("vm-golden-a"), unique_name("vm-golden-b"));
    let (a, restored_a) = restore(&key, &a_name, &uri, &events).await;
    let (b, restored_b) = restore(&key, &b_name, &uri, &events).await;
    eprintln!(
        "golden: boot to etcd {:.1} s, save {:.1} s ({} MiB: {}), restore of {} nodes {:.1} s and {:.1} s (the second beside the first), ratio boot/restore {:.1}",
        boot.as_secs_f64(),
        save.as_secs_f64(),
        manifest.bytes() >> 20,
        manifest.nodes.iter().map(|n| format!("{} save {} MiB disk {} MiB", n.name, n.save.size >> 20, n.disk.size >> 20)).collect::<Vec<_>>().join(", "),
        manifest.nodes.len(),
        restored_a.took.as_secs_f64(),
        restored_b.took.as_secs_f64(),
        boot.as_secs_f64() / restored_a.took.as_secs_f64(),
    );
    eprintln!("golden: where the first restore's time went: {:?}", restored_a.stages);
    for (name, lag) in restored_a.clock_lag.iter().chain(&restored_b.clock_lag) {
        eprintln!("golden: {name}'s clock lagged {:.1} s before it was set", lag.as_secs_f64());
    }
    assert!(
        restored_a.clock_lag.iter().any(|(_, lag)| *lag >= Duration::from_millis(500)),
        "a restored clock lags the downtime: {restored_a:?}"
    );

    assert_ne!(a.id(), b.id());
    assert_ne!(a.state().network, b.state().network);
    for c in [&a, &b] {
        assert_eq!(
            c.nodes().iter().map(|n| n.host_key.clone()).collect::<Vec<_>>(),
            host_keys,
            "host keys stay pinned"
        );
        for n in c.nodes() {
            let s = c.session(&n.name).await.unwrap();
            let addr = succeed(&s, "ip -4 -o addr show eth0").await;
            assert!(addr.contains(&format!("{}/", n.address)), "{}: {addr}", n.name);
            let guest: f64 = succeed(&s, "date +%s.%N").await.parse().unwrap();
            assert!((guest - host_now()).abs() < 5.0, "{}'s clock reads {guest}, the host's {}", n.name, host_now());
        }
        // The copy's own isolated network carries the cluster's addresses.
        let w = c.session("worker-node-2").await.unwrap();
        succeed(&w, "ping -c 1 -W 10 10.0.0.4 >/dev/null").await;
    }

    let (cp_a, cp_b) = (a.session("control-plane-1").await.unwrap(), b.session("control-plane-1").await.unwrap());
    succeed(&cp_a, &format!("{etcdctl} put /kthw/only-in-a here")).await;
    assert_eq!(succeed(&cp_a, &format!("{etcdctl} get /kthw/only-in-a --print-value-only")).await, "here");
    assert_eq!(
        succeed(&cp_b, &format!("{etcdctl} get /kthw/only-in-a --print-value-only")).await,
        "",
        "copies are independent"
    );
    for cp in [&cp_a, &cp_b] {
        assert_eq!(succeed(cp, &format!("{etcdctl} get /kthw/leased --print-value-only")).await, "yes");
        let ttl = remaining_ttl(cp, &etcdctl, &lease).await;
        let elapsed = host_now() - granted;
        // Downtime does not count (the guest's monotonic clock stood still), running time does.
        assert!(
            ttl > 0 && ttl as f64 >= LEASE_TTL as f64 - elapsed - 10.0 && ttl < LEASE_TTL,
            "lease TTL {ttl} after {elapsed:.0} s"
        );
        let cert_ok = succeed(
            cp,
            &format!("openssl verify -CAfile {} {}", layout.cert("ca").display(), layout.cert("etcd-client").display()),
        )
        .await;
        assert!(cert_ok.ends_with(": OK"), "the certificates are valid at the corrected time: {cert_ok}");
    }
    let ttl_a = remaining_ttl(&cp_a, &etcdctl, &lease).await;
    wait_until(&cp_a, "test -e /run/kthw-ticked", Duration::from_secs(180)).await;
    wait_until(&cp_b, "test -e /run/kthw-ticked", Duration::from_secs(180)).await;
    assert!(remaining_ttl(&cp_a, &etcdctl, &lease).await < ttl_a, "the lease keeps counting down");

    pruned_image_is_refused(&paths, &manifest, &uri, &events).await;
    a.down().await.unwrap();
    b.down().await.unwrap();
}

async fn restore(key: &str, name: &str, uri: &str, events: &Events) -> (Cluster, golden::Restored) {
    match golden::restore(&test_paths(), key, name, uri, events).await {
        Ok(r) => r,
        Err(e) => panic!("{}", kthw::chain(&e)),
    }
}

async fn remaining_ttl(cp: &kthw::ssh::Session, etcdctl: &str, lease: &str) -> i64 {
    let out = succeed(cp, &format!("{etcdctl} lease timetolive {lease}")).await;
    // "lease 694d... granted with TTL(900s), remaining(873s)"
    let rem = out.split("remaining(").nth(1).and_then(|r| r.split('s').next()).and_then(|n| n.parse().ok());
    rem.unwrap_or_else(|| panic!("no remaining TTL in {out:?}"))
}

/// Polls `check` on the node until it succeeds; fails naming what it last saw.
async fn wait_until(s: &kthw::ssh::Session, check: &str, within: Duration) {
    let start = Instant::now();
    loop {
        let out = s.exec(check, Duration::from_secs(30)).await.unwrap();
        if out.success() {
            return;
        }
        assert!(start.elapsed() < within, "`{check}` still fails after {within:?}: {}", out.summary());
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The same snapshot, but its base image gone: refused with a message that says so, nothing left behind.
async fn pruned_image_is_refused(
    paths: &kthw::paths::Paths,
    manifest: &golden::GoldenManifest,
    uri: &str,
    events: &Events,
) {
    let gone = tempfile::NamedTempFile::new().unwrap().path().to_path_buf();
    let mut orphan = manifest.clone();
    orphan.key = format!("{}-orphan", manifest.key);
    orphan.base_image = gone;
    let dir = store::dir(paths, &orphan.key);
    let _cleanup = Prune(orphan.key.clone());
    for f in orphan.all_files() {
        let to = dir.join(&f.path);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::hard_link(store::dir(paths, &manifest.key).join(&f.path), to).unwrap();
    }
    std::fs::write(dir.join(store::MANIFEST), serde_json::to_vec(&orphan).unwrap()).unwrap();
    let name = unique_name("vm-golden-orphan");
    let err = golden::restore(paths, &orphan.key, &name, uri, events).await.map(|_| ()).unwrap_err();
    assert!(matches!(err, GoldenError::ImagePruned { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("no longer cached") && text.contains(&manifest.inputs.image_key), "{text}");
    assert!(!paths.run(&name).exists(), "a refused restore makes no run directory");
}

/// Removes a test's snapshot however the test ends.
struct Prune(String);

impl Drop for Prune {
    fn drop(&mut self) {
        let key = self.0.clone();
        store::prune(&test_paths(), |k| k == key);
    }
}

/// A copy of the shared snapshot of two nodes at `nodes`, then `kthw up` restoring another copy of it, SIGKILLed
/// once the first of its domains runs: `kthw gc` removes everything the killed restore made, and nothing of
/// the live copy.
#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_killed_midway_leaves_nothing_after_gc(#[future] golden_cluster: Option<Running>) {
    let Some(running) = golden_cluster.await else { return };
    let live = running.cluster;
    let cp = live.session("control-plane-1").await.unwrap();
    let paths = test_paths();
    let home = paths.state.parent().unwrap().to_path_buf();
    let spec_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(spec_file.path(), crate::nodes::toml_of(live.spec())).unwrap();
    let killed = unique_name("vm-golden-killed");
    let mut child = std::process::Command::new(kthw_bin())
        .args(["up", "--until", "nodes", "--name", &killed, "--spec"])
        .arg(spec_file.path())
        .env("KTHW_HOME", &home)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let id = crate::nodes::wait_until_booting(&paths, &killed, 1, Duration::from_secs(120));
    let restoring = std::fs::read_to_string(paths.run(&killed).join("golden-origin"));
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGKILL) }, 0);
    child.wait().unwrap();
    assert!(restoring.is_ok(), "`kthw up` restored the snapshot rather than booting");
    let gc = std::process::Command::new(kthw_bin()).arg("gc").env("KTHW_HOME", &home).output().unwrap();
    assert!(gc.status.success(), "kthw gc: {}", String::from_utf8_lossy(&gc.stderr));
    assert!(String::from_utf8_lossy(&gc.stdout).contains(&id), "{}", String::from_utf8_lossy(&gc.stdout));
    crate::nodes::assert_nothing_left(&paths, &killed, &id);
    assert_eq!(succeed(&cp, "hostname").await, "control-plane-1", "gc left the live copy alone");
}

/// `kthw repro` of a bundle whose run failed in a phase runs that phase here (`Up::run_from`): a golden
/// snapshot stands in only for the phases before it, even where a snapshot of the failed phase's state exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phase_that_must_run_again_is_never_restored_from_a_snapshot() {
    let Some(()) = host_prerequisite("vm", vm_host_missing()) else { return };
    let spec = small_spec(2);
    // The shared snapshot of two booted nodes (the state several vm tests start from) exists from here on.
    let shared = golden_up_until(&spec, &unique_name("vm-rerun-src"), Phase::Nodes).await.cluster;
    let nodes_key = std::fs::read_to_string(shared.run_dir().golden_origin()).expect("a copy names its snapshot");
    shared.down().await.unwrap();

    // Failed in pki: the booted nodes come from the snapshot, pki runs here.
    let rerun = Phase::Pki;
    let pki = up_or_panic(up(&spec, &unique_name("vm-rerun-pki")).await.until(rerun).run_from(Some(rerun))).await;
    let ran: Vec<Phase> = pki.reports.iter().map(|r| r.phase).collect();
    assert_eq!(ran, [Phase::Pki], "pki ran here");
    let origin = std::fs::read_to_string(pki.cluster.run_dir().golden_origin()).expect("restored from a snapshot");
    assert_eq!(origin.trim(), nodes_key.trim(), "the snapshot of the phase before pki");
    let said = kthw::events::read(pki.cluster.run_dir());
    assert!(
        said.iter().any(|s| matches!(&s.event, Event::Note(n)
            if n.starts_with("phases through nodes restored from golden snapshot") && n.ends_with("phases pki through pki run here"))),
        "the timeline says what was restored and what ran: {said:?}"
    );
    pki.cluster.down().await.unwrap();

    // Failed in nodes (the boot): nothing is restored, though booted nodes are in the snapshot.
    let booted =
        up_or_panic(up(&spec, &unique_name("vm-rerun-nodes")).await.until(Phase::Nodes).run_from(Some(Phase::Nodes)))
            .await;
    assert!(!booted.cluster.run_dir().golden_origin().exists(), "booted, not restored");
    booted.cluster.down().await.unwrap();
}
