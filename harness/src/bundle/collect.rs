//! Making a bundle: local records first (they need nothing running), then libvirt, then each node over SSH,
//! then the apiserver's view through kubectl on the control plane; every step timed and bounded, its error
//! kept instead of raised. Then the archive.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::secrets::exclusion;
use super::writer::{guest, session, timed, write, Writer, COMMAND};
use super::{bundles_dir, BundleError, Excluded, Made, Manifest, FILE_CAP, FORMAT, LOCK, MANIFEST, SPEC};
use super::{Extras, TestRecord, SYSDUMP_CAP, TOTAL_CAP};
use crate::bootstrap::Bootstrap;
use crate::cluster::Cluster;
use crate::paths::Paths;
use crate::virt::{self as kvirt, metadata::unix_now};

/// Deadlines written for KVM and scaled by the accelerator, like the phases'.
const JOURNAL: Duration = Duration::from_secs(30);
/// The most one node's SSH steps may take together, and the apiserver's view (a sysdump is most of it).
const NODE_BUDGET: Duration = Duration::from_secs(60);
const KUBERNETES_BUDGET: Duration = Duration::from_secs(300);

/// The longest a bundle of a running cluster of `nodes` nodes takes to collect on KVM (each part at its
/// budget; the local records and the archive take seconds). A test's nextest timeout must leave this much
/// after the test's own deadlines, or a timed-out test is killed before its bundle is written
/// (harness/tests/lint/ holds .config/nextest.toml to it).
pub fn collect_budget(nodes: usize) -> Duration {
    NODE_BUDGET * nodes as u32 + KUBERNETES_BUDGET
}

/// Makes a bundle of `cluster` under `<state>/bundles/`, with the artifact cache `kthw` uses by default.
pub async fn collect(cluster: &Cluster, paths: &Paths, reason: Option<&str>) -> Result<Made, BundleError> {
    let lock = crate::lock::of_cluster(cluster);
    collect_with(cluster, paths, &Bootstrap::from_lock(paths, None, &lock), reason).await
}

/// [`collect`], listing the artifacts `bootstrap` sees (an air-gapped run's directory, say).
pub async fn collect_with(
    cluster: &Cluster,
    paths: &Paths,
    bootstrap: &Bootstrap,
    reason: Option<&str>,
) -> Result<Made, BundleError> {
    collect_all(cluster, paths, bootstrap, reason, None, Scope::Running).await
}

/// [`collect_with`] for a failed test: named in the manifest (so that `kthw repro` says how to run it again),
/// with what the test added ([`Extras`]).
pub async fn collect_for_test(
    cluster: &Cluster,
    paths: &Paths,
    bootstrap: &Bootstrap,
    reason: &str,
    test: &TestRecord,
    extras: &Extras,
) -> Result<Made, BundleError> {
    collect_all(cluster, paths, bootstrap, Some(reason), Some(Of::Test(test, extras)), Scope::Running).await
}

/// [`collect_with`] for a cluster whose boot failed (`Cluster::boot`), before its teardown: the run directory
/// (consoles, SSH logs, timeline), the domains, and over SSH only the nodes that answered; nothing is asked
/// of a node that did not (it would only time out) nor of an apiserver no phase installed.
pub async fn collect_boot_failure(
    cluster: &Cluster,
    paths: &Paths,
    bootstrap: &Bootstrap,
    reason: &str,
) -> Result<Made, BundleError> {
    collect_all(cluster, paths, bootstrap, Some(reason), None, Scope::Boot).await
}

/// [`collect_with`] for a failed scenario, named in the manifest so that `kthw repro` runs it again, with what
/// it added ([`Extras`]: the pods of the namespaces it made).
pub async fn collect_for_scenario(
    cluster: &Cluster,
    paths: &Paths,
    bootstrap: &Bootstrap,
    scenario: &str,
    reason: &str,
    extras: &Extras,
) -> Result<Made, BundleError> {
    collect_all(cluster, paths, bootstrap, Some(reason), Some(Of::Scenario(scenario, extras)), Scope::Running).await
}

/// Whose failure a bundle is, when a scenario's or a test's.
#[derive(Debug, Clone, Copy)]
enum Of<'a> {
    Scenario(&'a str, &'a Extras),
    Test(&'a TestRecord, &'a Extras),
}

/// What is asked of the cluster's nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Every node over SSH, then the apiserver.
    Running,
    /// A failed boot: only the nodes that answered SSH, and no apiserver.
    Boot,
}

async fn collect_all(
    cluster: &Cluster,
    paths: &Paths,
    bootstrap: &Bootstrap,
    reason: Option<&str>,
    of: Option<Of<'_>>,
    scope: Scope,
) -> Result<Made, BundleError> {
    let started = Instant::now();
    let (dir, writing) = new_dir(&bundles_dir(paths), cluster.name())?;
    let mut w = Writer { dir: dir.clone(), total: 0, steps: Vec::new(), excluded: Vec::new() };
    local(&mut w, cluster, paths, bootstrap);
    domains(&mut w, cluster).await;
    // Each part also has a budget of its own, so a node that hangs mid-collection delays the bundle (and the
    // failure it explains) by a bounded time, whatever each step's deadline.
    for n in cluster.nodes() {
        if scope == Scope::Boot && !cluster.has_session(&n.name) {
            let step = format!("nodes/{}/ssh", n.name);
            let why = format!("it did not answer SSH while booting: its console is run/nodes/{}/console.log", n.name);
            w.step(&step, &step, None, Some(why), Duration::ZERO);
            continue;
        }
        let budget = cluster.accel().scale(NODE_BUDGET);
        if tokio::time::timeout(budget, node(&mut w, cluster, &n.name)).await.is_err() {
            let step = format!("nodes/{}", n.name);
            w.step(&step, &step, None, Some(format!("gave up after {budget:?}: the node stopped answering")), budget);
        }
    }
    if scope == Scope::Boot {
        let why = "skipped: the cluster failed while booting, before any phase installed an apiserver";
        w.step("kubernetes", "kubernetes", None, Some(why.to_string()), Duration::ZERO);
    } else {
        let budget = cluster.accel().scale(KUBERNETES_BUDGET);
        let ends = Instant::now() + budget;
        if tokio::time::timeout(budget, super::kube::kubernetes(&mut w, cluster, ends)).await.is_err() {
            w.step("kubernetes", "kubernetes", None, Some(format!("gave up after {budget:?}")), budget);
        }
    }

    if let Some(Of::Test(_, extras) | Of::Scenario(_, extras)) = of {
        let budget = cluster.accel().scale(KUBERNETES_BUDGET);
        if tokio::time::timeout(budget, super::test::collect(&mut w, cluster, extras)).await.is_err() {
            w.step("test", "test", None, Some(format!("gave up after {budget:?}")), budget);
        }
    }
    let state = cluster.state();
    let manifest = Manifest {
        format: FORMAT,
        harness_version: env!("CARGO_PKG_VERSION").to_string(),
        cluster: state.name.clone(),
        cluster_id: state.id.clone(),
        created: unix_now(),
        reason: reason.unwrap_or("on demand").to_string(),
        scenario: match of {
            Some(Of::Scenario(s, _)) => Some(s.to_string()),
            _ => None,
        },
        test: match of {
            Some(Of::Test(t, _)) => Some(t.clone()),
            _ => None,
        },
        boot_failed: scope == Scope::Boot,
        image_key: state.image_key.clone(),
        file_cap: FILE_CAP,
        total_cap: TOTAL_CAP,
        steps: w.steps,
        excluded: w.excluded,
    };
    let json = serde_json::to_vec_pretty(&manifest).expect("a bundle manifest serializes");
    write(&dir.join(MANIFEST), &json)?;
    let mut text = readme(&manifest);
    text.push_str(&stalled_boots(&crate::events::read(cluster.run_dir())));
    write(&dir.join("README.txt"), text.as_bytes())?;
    let archive = archive(&dir)?;
    let archive_bytes = std::fs::metadata(&archive).map_err(|e| BundleError::io("measure", &archive, e))?.len();
    writing.finish();
    tracing::info!(
        bundle = %dir.display(), bytes = archive_bytes, took = ?started.elapsed(),
        failed_steps = manifest.steps.iter().filter(|s| s.error.is_some()).count(), "bundle made"
    );
    Ok(Made { dir, archive, archive_bytes, manifest })
}

/// `<cluster>-<UTC time>`, with a counter when two bundles are made within a second, and its marker
/// ([`Writing`]), which exists before the directory does and until its archive is complete.
fn new_dir(bundles: &Path, cluster: &str) -> Result<(PathBuf, Writing), BundleError> {
    std::fs::create_dir_all(bundles).map_err(|e| BundleError::io("create", bundles, e))?;
    let now = time::OffsetDateTime::now_utc();
    let stamp = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    for n in 0..100 {
        let name = if n == 0 { format!("{cluster}-{stamp}") } else { format!("{cluster}-{stamp}-{n}") };
        let Some(writing) = Writing::claim(bundles, &name)? else { continue };
        let dir = bundles.join(&name);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok((dir, writing)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(BundleError::io("create", &dir, e)),
        }
    }
    Err(BundleError::io("find a free name under", bundles, std::io::ErrorKind::AlreadyExists.into()))
}

/// `.<bundle>.writing` beside a bundle being made, holding its writer (pid and start time): `kthw gc` never
/// prunes a bundle whose writer still runs. Removed once the archive is complete, and when dropped (a
/// bundle that failed half-way is then an ordinary, incomplete one).
pub(super) struct Writing(PathBuf);

impl Writing {
    /// Creates the marker of `name`; None when another writer holds that name.
    fn claim(bundles: &Path, name: &str) -> Result<Option<Writing>, BundleError> {
        let path = super::writing_marker(bundles, name);
        let owner = crate::virt::Owner::current();
        let mut file = match std::fs::File::options().write(true).create_new(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(None),
            Err(e) => return Err(BundleError::io("create", &path, e)),
        };
        let text = format!("{} {}\n", owner.pid, owner.start);
        std::io::Write::write_all(&mut file, text.as_bytes()).map_err(|e| BundleError::io("write", &path, e))?;
        Ok(Some(Writing(path)))
    }

    fn finish(self) {}
}

impl Drop for Writing {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.0) {
            tracing::warn!(marker = %self.0.display(), error = %e, "cannot remove a bundle's writing marker");
        }
    }
}

/// What needs nothing running: the spec, versions, image manifest, artifacts, and the run directory.
fn local(w: &mut Writer, cluster: &Cluster, paths: &Paths, bootstrap: &Bootstrap) {
    let state = cluster.state();
    w.ok("spec", SPEC, state.spec.to_effective_toml().into_bytes());
    // A run of versions that are no preset used a lock (its artifacts belong to no preset): it goes along.
    let manifest = &bootstrap.manifest;
    if !manifest.artifacts.is_empty() && manifest.artifacts.iter().all(|a| a.set.is_none()) {
        let lock = crate::lock::Lock {
            format: crate::lock::FORMAT,
            resolved: format!("the lock cluster {} ran with", state.name),
            versions: state.spec.versions.pins(),
            chart_keys: bootstrap.chart_keys.clone(),
            artifacts: manifest.artifacts.clone(),
        };
        w.ok("lock", LOCK, lock.to_toml().into_bytes());
    }
    let v = state.spec.versions.pins();
    let versions = format!(
        "kthw {}\nimage {}\naccel {:?}\nlibvirt {}\nversions {}\nkubernetes {}\netcd {} (from {:?})\n\
         containerd {} / runc {} / CNI plugins {} (from {:?})\ncilium {}\ncilium CLI {}\ncoredns {}\n",
        state.harness_version,
        state.image_key,
        state.accel,
        state.uri,
        state.spec.versions,
        v.kubernetes,
        v.etcd,
        state.spec.etcd_from,
        v.containerd,
        v.runc,
        v.cni_plugins,
        state.spec.containerd_from,
        v.cilium,
        v.cilium_cli,
        v.coredns
    );
    w.ok("versions", "versions.txt", versions.into_bytes());
    let image_manifest = paths.images().join(&state.image_key).join(crate::image::manifest::MANIFEST);
    let (bytes, error) = match std::fs::read(&image_manifest) {
        Ok(b) => (Some(b), None),
        Err(e) => (None, Some(format!("cannot read {}: {e}", image_manifest.display()))),
    };
    w.step("image manifest", "image-manifest.json", bytes, error, Duration::ZERO);
    let artifacts: String = bootstrap
        .cache
        .status(&bootstrap.manifest)
        .iter()
        .map(|e| {
            let a = e.artifact;
            let at = a.url.as_deref().or(a.reference.as_deref()).unwrap_or("-");
            format!("{:<22} {:<10} {:<11} {at}\n", a.name, a.version, format!("{:?}", e.state).to_lowercase())
        })
        .collect();
    w.ok(
        "artifacts",
        "artifacts.txt",
        format!("{:<22} {:<10} {:<11} SOURCE\n{artifacts}", "NAME", "VERSION", "HERE").into_bytes(),
    );
    let log = super::harness_log::snapshot();
    let none = log.is_none().then(|| "this process keeps no log for bundles (see the caller's own output)".into());
    w.step("harness log", "harness.log", log, none, Duration::ZERO);
    // Drawn now, so a bundle made on demand (`kthw bundle`) shows every event up to this moment.
    crate::timeline::write_svg(cluster.run_dir());
    run_dir(w, cluster.run_dir().root());
}

/// The run directory, file by file under `run/`, minus keys and disks.
fn run_dir(w: &mut Writer, root: &Path) {
    let mut stack = vec![root.to_path_buf()];
    let mut files = Vec::new();
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let (path, kind) = (e.path(), e.file_type());
            match kind {
                Ok(k) if k.is_dir() => stack.push(path),
                Ok(k) if k.is_file() => files.push(path),
                _ => {}
            }
        }
    }
    files.sort();
    for path in files {
        let rel = path.strip_prefix(root).expect("under the root").to_path_buf();
        let name = format!("run/{}", rel.display());
        let excluded = |why: &str| Excluded { path: rel.display().to_string(), why: why.to_string() };
        if let Some(why) = exclusion(&rel, b"") {
            w.excluded.push(excluded(why));
            continue;
        }
        match read_tail(&path, FILE_CAP) {
            // Only logs are redacted and kept; anything else holding a key is left out whole.
            Ok(bytes) => match exclusion(&rel, &bytes) {
                Some(why) if !is_log(&rel) => w.excluded.push(excluded(why)),
                _ => w.ok(&name, &name, bytes),
            },
            Err(e) => w.step(&name, &name, None, Some(format!("cannot read {}: {e}", path.display())), Duration::ZERO),
        }
    }
}

fn is_log(rel: &Path) -> bool {
    rel.extension().is_some_and(|e| e == "log" || e == "jsonl")
}

/// The last `max` bytes of a file (a console log can be long; its end is what matters), marked when cut.
fn read_tail(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    if len <= max {
        let mut all = Vec::new();
        f.read_to_end(&mut all)?;
        return Ok(all);
    }
    f.seek(SeekFrom::Start(len - max))?;
    let mut tail =
        format!("[kthw bundle: the first {} of {len} bytes were cut; the end is kept]\n", len - max).into_bytes();
    f.take(max).read_to_end(&mut tail)?;
    Ok(tail)
}

/// Each node's domain XML as libvirt has it now (link state, devices), with its state.
async fn domains(w: &mut Writer, cluster: &Cluster) {
    let uri = cluster.state().uri.clone();
    let domains: Vec<(String, String)> = cluster.nodes().iter().map(|n| (n.name.clone(), n.domain.clone())).collect();
    let started = Instant::now();
    let got = kvirt::blocking(move || {
        let conn = kvirt::connect::open(&uri)?;
        Ok(domains.into_iter().map(|(node, d)| (node, kvirt::domain::xml(&conn, &d))).collect::<Vec<_>>())
    })
    .await;
    match got {
        Ok(all) => {
            for (node, xml) in all {
                let file = format!("nodes/{node}/domain.xml");
                match xml {
                    Ok(xml) => w.step(&file, &file, Some(xml.into_bytes()), None, started.elapsed()),
                    Err(e) => w.step(&file, &file, None, Some(crate::chain(&e)), started.elapsed()),
                }
            }
        }
        Err(e) => w.step("domain XML", "nodes", None, Some(crate::chain(&e)), started.elapsed()),
    }
}

/// A node's journal since boot, its units and its network, over SSH.
async fn node(w: &mut Writer, cluster: &Cluster, node: &str) {
    let Some(s) = session(w, cluster, node).await else { return };
    let scale = |d| cluster.accel().scale(d);
    let journal = format!("journalctl -b --no-pager -o short-precise | tail -c {FILE_CAP}");
    let units = "systemctl --failed --no-pager; echo; systemctl list-units --no-pager --all --type=service";
    let network = "ip -d addr; echo; ip route; echo; tc qdisc show; echo; ss -tlnp";
    timed(w, format!("nodes/{node}/journal.txt"), guest(&s, &journal, scale(JOURNAL))).await;
    timed(w, format!("nodes/{node}/units.txt"), guest(&s, units, scale(COMMAND))).await;
    timed(w, format!("nodes/{node}/network.txt"), guest(&s, network, scale(COMMAND))).await;
}

/// What a person reads first: what this is, why it was made, what each file is, what failed to collect.
fn readme(m: &Manifest) -> String {
    let mut text = format!(
        "kthw failure bundle (format {}) of cluster {} ({}), made by kthw {}\nreason: {}\n\n\
         Every file is capped at {} bytes (the end of a log is kept), the whole bundle at {} bytes (a Cilium\n\
         sysdump up to {SYSDUMP_CAP}). Private keys are never included: key files, kubeconfigs and the nodes'\n\
         fw_cfg identities are left out, and key blocks in logs are replaced by a marker.\n\
         To stand the same cluster up again: kthw repro <this directory or its .tar.gz>\n\n",
        m.format, m.cluster, m.cluster_id, m.harness_version, m.reason, m.file_cap, m.total_cap
    );
    if let Some(test) = &m.test {
        text.push_str(&super::test::readme_line(test, &m.cluster));
        text.push('\n');
    }
    let svg = format!("run/{}", crate::rundir::TIMELINE_SVG);
    if m.steps.iter().any(|s| s.file.as_deref() == Some(svg.as_str())) {
        text.push_str(&format!("Where the time went, per node and per phase (open it in a browser): {svg}\n\n"));
    }
    text.push_str("steps (MANIFEST.json has the same, for programs):\n");
    for s in &m.steps {
        let outcome = match (&s.error, s.truncated_from) {
            (Some(e), _) => format!("FAILED: {}", e.lines().next().unwrap_or_default()),
            (None, Some(from)) => format!("ok, cut from {from} bytes"),
            (None, None) => "ok".to_string(),
        };
        text.push_str(&format!("  {:<40} {:>9} bytes {:>6.1} s  {outcome}\n", s.name, s.bytes, s.seconds));
    }
    text.push_str("\nleft out:\n");
    for e in &m.excluded {
        text.push_str(&format!("  run/{}: {}\n", e.path, e.why));
    }
    text
}

/// Each node boot that stalled and was started again (or given up), as the run's timeline recorded it (issue
/// 30): the bundle of a run that failed later still says its boot needed a retry. Empty when none did.
fn stalled_boots(records: &[crate::events::Stamped]) -> String {
    let stalls: Vec<String> = records
        .iter()
        .filter(|r| matches!(r.event, crate::events::Event::NodeStalled { .. }))
        .map(|r| format!("  {}\n", r.event))
        .collect();
    if stalls.is_empty() {
        return String::new();
    }
    format!(
        "\nboots that stalled (run/timeline.log has them in order; each console marks the retry):\n{}",
        stalls.concat()
    )
}

/// `<dir>.tar.gz` beside the directory, holding it under its own name; written under a temporary name so a
/// half-written archive never looks finished.
pub(super) fn archive(dir: &Path) -> Result<PathBuf, BundleError> {
    let name = dir.file_name().expect("a bundle directory has a name").to_string_lossy().into_owned();
    let archive = dir.with_file_name(format!("{name}.tar.gz"));
    let partial = dir.with_file_name(format!(".{name}.tar.gz.partial"));
    let file = std::fs::File::create(&partial).map_err(|e| BundleError::io("create", &partial, e))?;
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::default()));
    tar.follow_symlinks(false);
    let finished = tar
        .append_dir_all(&name, dir)
        .and_then(|()| tar.into_inner())
        .and_then(|gz| gz.finish())
        .and_then(|f| f.sync_all());
    finished.and_then(|()| std::fs::rename(&partial, &archive)).map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        BundleError::io("write the archive", &archive, e)
    })?;
    Ok(archive)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stalled_boot_is_told_in_the_readme_and_none_says_nothing() {
        use crate::boot_stage::BootStage;
        use crate::events::{Event, Stamped};
        let stalled = Event::NodeStalled {
            node: "worker-node-1".into(),
            stage: BootStage::Initrd,
            quiet: Duration::from_secs(24),
            took: Duration::from_secs(28),
            attempt: 1,
            attempts: 3,
            last: "virtio_blk virtio1: [vda] 16777216 512-byte logical blocks".into(),
        };
        let records = [Stamped::now(Event::NodeBooting { node: "worker-node-1".into() }), Stamped::now(stalled)];
        let text = stalled_boots(&records);
        assert!(text.contains("boots that stalled"), "{text}");
        assert!(
            text.contains("node worker-node-1: boot 1 of 3 stalled in the initrd")
                && text.contains("starting it again on a fresh overlay"),
            "{text}"
        );
        assert_eq!(stalled_boots(&records[..1]), "");
    }

    #[test]
    fn a_long_log_keeps_its_end_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("console.log");
        std::fs::write(&f, "x".repeat(100) + "the end").unwrap();
        let tail = String::from_utf8(read_tail(&f, 7).unwrap()).unwrap();
        assert!(tail.ends_with("]\nthe end") && tail.contains("first 100 of 107 bytes"), "{tail}");
    }

    /// A run directory as `kthw up` leaves it through the kubeconfigs phase: every secret in it stays out.
    #[test]
    fn the_run_directory_goes_in_without_a_single_private_key() {
        let run = tempfile::tempdir().unwrap();
        let key = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI\n-----END PRIVATE KEY-----\n";
        for (path, text) in [
            ("state.json", "{\"name\":\"lab\"}".to_string()),
            ("client_key", key.to_string()),
            ("timeline.log", "1 phase pki: begins\n".to_string()),
            ("phases.jsonl", "{\"phase\":\"pki\"}\n".to_string()),
            ("pki/ca.crt", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".to_string()),
            ("pki/ca.key", key.to_string()),
            ("pki/admin-key.pem", key.to_string()),
            ("kubeconfigs/admin.kubeconfig", "users:\n- user:\n    client-key-data: LS0t\n".to_string()),
            ("nodes/cp/console.log", "booting\n".to_string()),
            ("nodes/cp/ssh.log", format!("$ cat /etc/key\n{key}ok\n")),
            ("nodes/cp/fwcfg/host_key", key.to_string()),
            ("nodes/cp/fwcfg/hostname", "cp".to_string()),
            ("nodes/cp/disk.qcow2", "QFI".to_string()),
            ("phases/etcd/notes.yaml", format!("leaked: |\n  {key}")),
        ] {
            let p = run.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let out = tempfile::tempdir().unwrap();
        let mut w = Writer { dir: out.path().to_path_buf(), total: 0, steps: Vec::new(), excluded: Vec::new() };
        run_dir(&mut w, run.path());
        let mut kept: Vec<String> = w.steps.iter().filter_map(|s| s.file.clone()).collect();
        kept.sort();
        assert_eq!(
            kept,
            [
                "run/nodes/cp/console.log",
                "run/nodes/cp/ssh.log",
                "run/phases.jsonl",
                "run/pki/ca.crt",
                "run/state.json",
                "run/timeline.log"
            ]
        );
        let mut left: Vec<&str> = w.excluded.iter().map(|e| e.path.as_str()).collect();
        left.sort();
        assert_eq!(
            left,
            [
                "client_key",
                "kubeconfigs/admin.kubeconfig",
                "nodes/cp/disk.qcow2",
                "nodes/cp/fwcfg/host_key",
                "nodes/cp/fwcfg/hostname",
                "phases/etcd/notes.yaml",
                "pki/admin-key.pem",
                "pki/ca.key"
            ]
        );
        for file in &kept {
            let text = std::fs::read_to_string(out.path().join(file)).unwrap();
            assert!(!text.contains("PRIVATE KEY") && !text.contains("MC4CAQAw"), "{file} holds a key: {text}");
        }
        let ssh = std::fs::read_to_string(out.path().join("run/nodes/cp/ssh.log")).unwrap();
        assert_eq!(ssh, "$ cat /etc/key\n[private key removed by kthw]\nok\n", "a log is redacted, not dropped");
    }

    #[test]
    fn the_archive_holds_the_directory_under_its_name() {
        let home = tempfile::tempdir().unwrap();
        let (dir, writing) = new_dir(home.path(), "lab").unwrap();
        let marker = crate::bundle::writing_marker(home.path(), &dir.file_name().unwrap().to_string_lossy());
        assert!(std::fs::read_to_string(&marker).unwrap().starts_with(&format!("{} ", std::process::id())));
        std::fs::write(dir.join(MANIFEST), b"{}").unwrap();
        std::fs::create_dir_all(dir.join("nodes/cp")).unwrap();
        std::fs::write(dir.join("nodes/cp/journal.txt"), b"journal").unwrap();
        let (second, _writing) = new_dir(home.path(), "lab").unwrap();
        assert_ne!(second, dir, "two bundles within a second get two names");
        let archive = archive(&dir).unwrap();
        assert_eq!(
            archive.file_name().unwrap().to_string_lossy(),
            format!("{}.tar.gz", dir.file_name().unwrap().to_string_lossy())
        );
        let gz = flate2::read::GzDecoder::new(std::fs::File::open(&archive).unwrap());
        let mut names: Vec<String> = tar::Archive::new(gz)
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        writing.finish();
        assert!(!marker.exists(), "the marker goes once the archive is complete");
        let base = dir.file_name().unwrap().to_string_lossy().into_owned();
        assert!(names.contains(&format!("{base}/{MANIFEST}")), "{names:?}");
        assert!(names.contains(&format!("{base}/nodes/cp/journal.txt")), "{names:?}");
    }
}
