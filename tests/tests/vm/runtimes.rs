//! The runtimes under the hard way, at the majors the version sets pin, from Debian's own builds of them
//! (DESIGN.md's table; nodes have no egress, so the host fetches the .debs): etcd 3.5 (trixie's 3.5.16 as
//! `etcd_from = "debian"` pins it; the seed pins 3.5.21) running the unit the upstream etcd phase renders, with
//! the cluster's certificates; containerd 1.7 (trixie's 1.7.24; the seed pins 1.7.27) and 2.x (sid's 2.1.9;
//! the current set pins 2.2.7) each running the config and unit the workers phase renders for its set,
//! unmodified (config version 2 for 1.7, version 3 for 2.x), then importing the sandbox image as the phase does.
//! On 2.x, containerd's own `containerd config migrate` of the version 2 file we render for 1.7 must set what
//! our version 3 file sets. Debian's binaries stand in for the release tarballs' at the paths the phases
//! install those to.
//! Each runs with the node's own runc 1.1.5: trixie's runc 1.1.15 and sid's 1.3.6 need glibc 2.38, and the
//! nodes are Debian 12 (2.36). On each containerd, right after it runs, the kubelet's half of a pod through CRI
//! (cri.rs).

use std::path::{Path, PathBuf};
use std::time::Duration;

use kthw::accel::Accel;
use kthw::artifacts::Manifest;
use kthw::bootstrap::configs::{containerd_config, ContainerdConfig, CriSettings};
use kthw::bootstrap::node_files::{etcd_files, worker_files};
use kthw::bootstrap::units::containerd_unit;
use kthw::bootstrap::Layout;
use kthw::events::Events;
use kthw::phase::Phase;
use kthw::spec::{ClusterSpec, VersionSet};
use kthw::ssh::Session;
use kthw::up::Running;
use kthw_tests::cri::{API_PACKAGE, API_SUITE};
use kthw_tests::debs::{fetch_or_skip, fetch_pinned_or_skip, install};
use kthw_tests::oci_layout::running_stand_in_archive;
use kthw_tests::{golden_cluster, small_spec, succeed};
use rstest::rstest;

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_3_5_and_containerd_1_7_and_2_run_the_files_the_phases_render(#[future] golden_cluster: Option<Running>) {
    let Some(running) = golden_cluster.await else { return };
    let (Some(etcd), Some(containerd_1_7), Some(containerd_2), Some(cri_api)) = (
        fetch_pinned_or_skip(&kthw::artifacts::debian::ETCD),
        fetch_or_skip("trixie", &["containerd"]),
        fetch_or_skip("sid", &["containerd"]),
        fetch_or_skip(API_SUITE, &[API_PACKAGE]),
    ) else {
        return;
    };
    // The shared two nodes just booted, then the pki phase: etcd's certificates, as the etcd phase finds them.
    let cluster = running.cluster;
    let spec = cluster.spec().clone();
    let pki = running.bootstrap.run(&cluster, Phase::Pki, &Events::default()).await;
    pki.unwrap_or_else(|e| panic!("{}", kthw::chain(&e)));
    let cp = cluster.session("control-plane-1").await.unwrap();
    let worker = cluster.session("worker-node-1").await.unwrap();
    succeed(&worker, "mkdir -p /var/lib/kthw/images").await;

    etcd_runs_the_upstream_unit(&cp, &spec, cluster.accel(), &etcd).await;
    for (set, debs, major) in [(VersionSet::Seed, &containerd_1_7, "1.7."), (VersionSet::Current, &containerd_2, "2.")]
    {
        containerd_runs_its_sets_files(&worker, set, debs, major, &cri_api[0], cluster.accel()).await;
    }
    cluster.down().await.unwrap();
}

async fn etcd_runs_the_upstream_unit(cp: &Session, spec: &ClusterSpec, accel: Accel, debs: &[PathBuf]) {
    let layout = Layout::default();
    install(cp, debs).await;
    // The release tarball's etcd and etcdctl go to the layout's bin_dir; Debian's 3.5 build stands in for them.
    let bin = layout.bin_dir.display();
    succeed(cp, &format!("install -m 0755 /usr/bin/etcd /usr/bin/etcdctl {bin}/ && systemctl disable --now etcd 2>/dev/null; rm -rf /var/lib/etcd/*")).await;
    for f in etcd_files(spec, &layout, accel) {
        cp.upload_bytes(f.contents.as_bytes(), &f.path.display().to_string(), 0o644).await.unwrap();
    }
    succeed(cp, "systemctl daemon-reload && systemctl enable --now etcd").await;
    let version = succeed(cp, &format!("{bin}/etcd --version | head -1")).await;
    assert!(version.contains("etcd Version: 3.5."), "{version}");
    let health = cp
        .wait_until_succeeds(&format!("{} endpoint health", layout.etcdctl(spec)), accel.scale(Duration::from_secs(30)))
        .await
        .unwrap_or_else(|e| panic!("etcd 3.5 under the upstream unit: {}", kthw::chain(&e)));
    let said = format!("{}{}", health.stdout_lossy(), health.stderr_lossy());
    assert!(said.contains("https://127.0.0.1:2379 is healthy"), "{said}");
    succeed(cp, &format!("{} put /kthw/etcd '3.5 with our certificates'", layout.etcdctl(spec))).await;
    let got = succeed(cp, &format!("{} get /kthw/etcd --print-value-only", layout.etcdctl(spec))).await;
    assert_eq!(got, "3.5 with our certificates");
    eprintln!("etcd on control-plane-1: {version}, healthy under the upstream unit");
}

async fn containerd_runs_its_sets_files(
    worker: &Session,
    set: VersionSet,
    debs: &[PathBuf],
    major: &str,
    cri_api: &Path,
    accel: Accel,
) {
    let layout = Layout::default();
    let manifest = Manifest::pinned().for_set(set);
    let pause = manifest.get("pause").unwrap().locator().to_string();
    let pinned = manifest.get("containerd").unwrap().upstream_version.clone();
    let spec = ClusterSpec { versions: set.into(), ..small_spec(2) };
    install(worker, debs).await;
    // The release tarball's bin/containerd, bin/containerd-shim-runc-v2 and bin/ctr go to bin_dir.
    let bin = layout.bin_dir.display();
    succeed(
        worker,
        &format!("install -m 0755 /usr/bin/containerd /usr/bin/containerd-shim-runc-v2 /usr/bin/ctr {bin}/"),
    )
    .await;
    let config = worker_files(&spec, "worker-node-1", &layout, &pause)
        .into_iter()
        .find(|f| f.path == layout.containerd_config)
        .expect("the workers phase renders containerd's config");
    worker.upload_bytes(config.contents.as_bytes(), &config.path.display().to_string(), 0o644).await.unwrap();
    let unit = containerd_unit(&layout, accel, &pinned);
    worker.upload_bytes(unit.as_bytes(), &layout.unit("containerd").display().to_string(), 0o644).await.unwrap();
    crate::cri::cni_config(worker).await;
    succeed(worker, "systemctl daemon-reload && systemctl restart containerd").await;
    let ctr = layout.ctr();
    let version = worker
        .wait_until_succeeds(&format!("{ctr} version"), accel.scale(Duration::from_secs(60)))
        .await
        .unwrap_or_else(|e| panic!("containerd {major}x under the rendered unit: {}", kthw::chain(&e)))
        .stdout_lossy();
    let server = version.lines().skip_while(|l| !l.starts_with("Server")).find(|l| l.trim().starts_with("Version:"));
    assert!(
        server.is_some_and(|v| v.contains(&format!("Version:  {major}"))),
        "{set:?} wants containerd {major}x:\n{version}"
    );
    let exec = succeed(worker, "systemctl show containerd -p ExecStart --value").await;
    assert!(exec.contains(&format!("path={bin}/containerd")), "the rendered unit runs it: {exec}");
    let nofile = succeed(worker, "systemctl show containerd -p LimitNOFILE --value").await;
    eprintln!("containerd {major}x ({set:?} set, unit for {pinned}): LimitNOFILE={nofile}");
    // The rendered config is in the containerd's own version, so 2.x has nothing to migrate at start.
    let ours = CriSettings::read(&config.contents).unwrap();
    assert_eq!(ours.version, if major == "2." { 3 } else { 2 }, "{set:?}:\n{}", config.contents);
    // What this containerd process logged (v2.1.9 cmd/containerd/server/server.go warns "Configuration
    // migrated from version %d" when it had to; cmd/containerd/command/main.go says "containerd successfully
    // booted" in 1.7 and 2.x alike).
    let log = "journalctl --no-pager -o cat _PID=$(systemctl show -p MainPID --value containerd)";
    let log = succeed(worker, log).await;
    assert!(log.contains("containerd successfully booted"), "{set:?}: the journal of this containerd:\n{log}");
    assert!(!log.contains("Configuration migrated"), "{set:?}: containerd migrated our config at start:\n{log}");
    // The CRI plugin took the rendered config: its sandbox image and systemd cgroups.
    let dump = succeed(worker, "containerd config dump").await;
    assert!(dump.contains(&pause), "{set:?}: the sandbox image {pause} in:\n{dump}");
    assert!(dump.contains("SystemdCgroup = true"), "{set:?}:\n{dump}");
    if major == "2." {
        migrate_agrees(worker, &ours, &pause).await;
    }
    // The sandbox image, imported as the workers phase does, under both of its names: a stand-in that runs.
    let dir = tempfile::tempdir().unwrap();
    let archive = running_stand_in_archive(dir.path(), &pause);
    let pause = crate::cri::preload(worker, &ctr, &archive).await;
    crate::cri::kubelets_half_of_a_pod(worker, &ctr, &pause, cri_api, major, accel).await;
}

/// Upstream's own check of our two renderings: containerd 2.x's `containerd config migrate` (containerd/
/// containerd@v2.1.9:cmd/containerd/command/config.go, which runs each plugin's `configMigration`) of the
/// version 2 file we render for 1.7 sets what our version 3 file sets, table for table.
async fn migrate_agrees(worker: &Session, ours: &CriSettings, pause: &str) {
    let v2 = containerd_config(ContainerdConfig::V2, pause);
    let path = "/tmp/kthw-containerd-v2.toml";
    worker.upload_bytes(v2.as_bytes(), path, 0o644).await.unwrap();
    let out = succeed(worker, &format!("containerd --config {path} config migrate")).await;
    let theirs = CriSettings::read(&out).unwrap_or_else(|e| panic!("{e}:\n{out}"));
    eprintln!("containerd config migrate of our version 2 file: {theirs:?}");
    assert_eq!(&theirs, ours, "containerd's migration of our version 2 file:\n{out}\nours:\n{ours:?}");
}
