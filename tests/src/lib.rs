//! What the integration tiers share: where tests keep their state, the rule for a test that cannot run
//! here (print why and skip; under `CI=true` a missing host prerequisite is a failure instead), and clusters
//! brought up the one way the library offers ([`kthw::up::Up`]), read the way a person would drive them.

use std::path::PathBuf;

pub mod cri;
pub mod debs;
pub mod oci_layout;
pub mod registry;

use kthw::image::{self, BuildOptions, NodeImage};
use kthw::phase::Phase;
use kthw::spec::{ClusterSpec, VersionSet};
use kthw::ssh::Session;
use kthw::up::{Running, Up};

/// All tests share one KTHW_HOME under the target directory, so the node image is built once per target
/// directory and nothing lands in the user's home.
pub use kthw::testing::test_paths;

/// Skips the calling test (returns `None`) with a reason on stderr, or fails it under CI, when a host
/// prerequisite is missing. `what` names the tier's need, `missing` what was not found. A wording of
/// [`kthw::testing::needs`], the one helper every skip goes through.
pub fn host_prerequisite(what: &str, missing: Option<String>) -> Option<()> {
    kthw::testing::needs(missing.map_or(Ok(()), |why| Err(format!("the {what} tier cannot run here: {why}"))))
}

/// The host prerequisites of the vm tier, as `kthw doctor` reports them; `None` when all are present.
pub fn vm_host_missing() -> Option<String> {
    let missing: Vec<String> = kthw::doctor::run(&test_paths())
        .into_iter()
        .filter(|c| c.required && c.is_missing())
        .map(|c| match c.status {
            kthw::doctor::Status::Missing { detail, fix } => format!("{}: {detail} (fix: {fix})", c.name),
            _ => unreachable!("filtered to missing checks"),
        })
        .collect();
    (!missing.is_empty()).then(|| missing.join("; "))
}

/// The `kthw` binary of this build. Tests never build anything: the nightly's shards run an archive as root,
/// with no Rust toolchain. It sits beside the test binary's `deps/` directory (`target/<profile>/kthw`), where
/// `cargo build` puts it and where an extracted `cargo nextest archive` does (the archive carries kthw-cli's
/// binary because kthw-cli has an integration test: "non-test binaries used by integration tests",
/// nexte.st docs/ci-features/archiving). nextest hands a test only its own package's binaries, so this crate
/// cannot ask for it by `NEXTEST_BIN_EXE_kthw`. A missing binary, or one built from other library sources than
/// this test (a stale one: `cargo nextest run -p kthw-tests` does not build kthw-cli), fails the test, naming
/// the command that builds it.
pub fn kthw_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    BIN.get_or_init(find_kthw_bin).clone().unwrap_or_else(|why| panic!("{why}"))
}

fn find_kthw_bin() -> Result<PathBuf, String> {
    let build = if cfg!(debug_assertions) { "cargo build -p kthw-cli" } else { "cargo build --release -p kthw-cli" };
    let fix = format!(
        "build it with `{build}` (`cargo nextest run --workspace` builds it too; an archive made by \
         `cargo nextest archive --workspace` carries it)"
    );
    let exe = std::env::current_exe().map_err(|e| format!("the test binary's own path: {e}"))?;
    // target/<profile>/deps/<test binary> -> target/<profile>/kthw
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("kthw"))
        .ok_or_else(|| format!("{} is not inside a target directory", exe.display()))?;
    if !bin.is_file() {
        return Err(format!("the kthw binary is not at {}: tests run it and never build it; {fix}", bin.display()));
    }
    let out = std::process::Command::new(&bin)
        .arg("--version")
        .output()
        .map_err(|e| format!("run {} --version: {e}; {fix}", bin.display()))?;
    let version = String::from_utf8_lossy(&out.stdout);
    if !version.contains(kthw::VERSION) {
        return Err(format!(
            "{} is stale: it says `{}`, this test was built from kthw {}; {fix}",
            bin.display(),
            version.trim(),
            kthw::VERSION
        ));
    }
    Ok(bin)
}

/// Holds /tmp/kthw-vm.lock (one VM workload at a time on this host) until dropped. For benchmarks, which
/// run unwrapped; tests are run under `flock /tmp/kthw-vm.lock` by whoever starts them instead.
pub struct VmLock(#[allow(dead_code)] std::fs::File);

pub fn vm_lock() -> std::io::Result<VmLock> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::options().create(true).truncate(false).write(true).open("/tmp/kthw-vm.lock")?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(VmLock(f))
}

/// Waits until process `pid` has exited (or is a zombie nobody reaped yet), at most `within`; returns how long
/// that took, or None if it still runs. For detached helpers such as `kthw forward-apiserver`.
pub fn wait_for_exit(pid: u32, within: std::time::Duration) -> Option<std::time::Duration> {
    let start = std::time::Instant::now();
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
        // The state is the first field after the command name, which may itself contain ')'.
        let running = stat.and_then(|s| s.rsplit_once(')').map(|(_, rest)| !rest.trim_start().starts_with('Z')));
        if running != Some(true) {
            return Some(start.elapsed());
        }
        if start.elapsed() > within {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// `mib` MiB of incompressible data written a chunk at a time (never all in memory); returns its sha256 in hex.
/// Every chunk differs, so a misplaced chunk changes the sum.
pub fn write_random_file(path: &std::path::Path, mib: usize) -> anyhow::Result<String> {
    use std::io::{Read, Write};

    use sha2::{Digest, Sha256};
    let mut block = vec![0u8; 1024 * 1024];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut block)?;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut hash = Sha256::new();
    for i in 0..mib {
        block[..8].copy_from_slice(&(i as u64).to_le_bytes());
        hash.update(&block);
        file.write_all(&block)?;
    }
    file.flush()?;
    Ok(hex::encode(hash.finalize()))
}

/// `KTHW_ARTIFACTS_DIR` names an air-gapped artifact directory for the cluster tier; otherwise the test
/// home's artifact cache (`KTHW_HOME=target/kthw-test-home kthw artifacts fetch` fills it).
pub fn artifacts_dir() -> Option<PathBuf> {
    std::env::var_os("KTHW_ARTIFACTS_DIR").filter(|d| !d.is_empty()).map(PathBuf::from)
}

/// The version set the cluster and scenario tiers run: `KTHW_VERSIONS` (`seed` or `current`; the nightly
/// workflow runs each in its own jobs), else the seed's. An unknown name fails the test, naming the known ones.
pub fn version_set() -> VersionSet {
    match std::env::var("KTHW_VERSIONS") {
        Ok(name) if !name.is_empty() => name.parse().unwrap_or_else(|e| panic!("KTHW_VERSIONS: {e}")),
        _ => VersionSet::Seed,
    }
}

/// The seed's cluster with the version set of [`version_set`]: what the cluster and scenario tiers bring up.
pub fn cluster_spec() -> ClusterSpec {
    ClusterSpec { versions: version_set(), ..ClusterSpec::default() }
}

/// The seed's topology cut to `nodes` nodes of 1 vCPU and 1 GiB: enough for sshd, etcd and containerd, and
/// three of them fit a 2-core host.
pub fn small_spec(nodes: usize) -> ClusterSpec {
    let mut spec = ClusterSpec::default();
    spec.nodes.truncate(nodes);
    for n in &mut spec.nodes {
        n.vcpus = 1;
        n.memory_mib = 1024;
    }
    spec
}

/// Run directories are per name: a name per test and process keeps parallel runs apart.
pub fn unique_name(test: &str) -> String {
    format!("{test}-{}", std::process::id())
}

/// The node image under the test home, built first when missing.
pub async fn node_image() -> NodeImage {
    match image::build(&test_paths(), &BuildOptions::default()).await {
        Ok(i) => i,
        Err(e) => panic!("the node image does not build:\n{}", kthw::chain(&e)),
    }
}

/// `Up` for a test: the test home, the test home's node image, torn down when the handle is dropped unless
/// `KTHW_KEEP=on-failure|always` says to keep it (for `KTHW_KEEP_TTL`, 24 h by default). Should the test panic
/// while it holds the cluster (a failed assertion), a failure bundle is made before the teardown and its path
/// printed in the test's output; with `KTHW_KEEP=on-failure` the cluster then stays, and the output says how
/// to get in ([`kthw::up::bundle_on_panic`]).
pub async fn up(spec: &ClusterSpec, name: &str) -> Up {
    let (keep, ttl) = kthw::keep::from_env().unwrap_or_else(|e| panic!("{e}"));
    Up::new(spec.clone())
        .name(name)
        .paths(test_paths())
        .image(node_image().await)
        .keep(keep)
        .keep_ttl(ttl)
        .bundle_on_panic(true)
}

/// Brings `spec` up as cluster `name` through `phase`, or fails the test with the whole error.
pub async fn up_until(spec: &ClusterSpec, name: &str, phase: Phase) -> Running {
    up_or_panic(up(spec, name).await.until(phase)).await
}

/// Brings `spec` up as cluster `name` through `phase` from the shared golden snapshot of that state: restored in
/// seconds when one exists, else booted, bootstrapped and saved first (once, by whichever test comes first;
/// the others wait for it), then restored. For tests that need a fresh cluster in a known state, not a boot.
pub async fn golden_up_until(spec: &ClusterSpec, name: &str, phase: Phase) -> Running {
    up_or_panic(up(spec, name).await.until(phase).save_golden(true)).await
}

/// The seed's three nodes, small, with the image's etcd: the furthest phase this host's artifacts reach.
pub fn etcd_spec() -> ClusterSpec {
    ClusterSpec { etcd_from: kthw::spec::Origin::Debian, ..small_spec(3) }
}

/// The key of a snapshot only this run may restore (`tag` names it): for a test or benchmark that saves a
/// cluster whose state it changed first, or that must not meet a shared snapshot.
pub fn private_golden_inputs(
    image: &NodeImage,
    cluster: &kthw::cluster::Cluster,
    phase: Phase,
    tag: &str,
) -> kthw::golden::KeyInputs {
    let conn = kthw::virt::connect::open(&kthw::virt::connect::uri()).expect("libvirt");
    let hypervisor = conn.hyp_version().expect("the hypervisor version");
    let manifest = kthw::artifacts::Manifest::pinned();
    let mut inputs =
        kthw::golden::KeyInputs::new(&image.key, cluster.spec(), &manifest, phase, cluster.accel(), hypervisor);
    inputs.harness = tag.to_string();
    inputs
}

/// rstest fixture: a private copy of the shared golden snapshot of `spec` at `phase` (by default two small
/// nodes just booted: the state several vm tests start from), or None (the test skips, having said why) when
/// the vm tier cannot run here. `#[with(spec, phase)]` asks for another state.
#[rstest::fixture]
pub async fn golden_cluster(
    #[default(small_spec(2))] spec: ClusterSpec,
    #[default(Phase::Nodes)] phase: Phase,
) -> Option<Running> {
    host_prerequisite("vm", vm_host_missing())?;
    Some(golden_up_until(&spec, &unique_name(&format!("vm-golden-{phase}")), phase).await)
}

/// Runs `up`, or fails the test with the whole error; when the boot or a phase failed, that error names the
/// failure bundle `Up` made before tearing the cluster down (`<test home>/state/bundles/...`).
pub async fn up_or_panic(up: Up) -> Running {
    match up.run().await {
        Ok(r) => r,
        Err(e) => panic!("{}", kthw::chain(&e)),
    }
}

/// Runs `cmd` on the node, which must succeed; its stdout, trimmed.
pub async fn succeed(s: &Session, cmd: &str) -> String {
    match s.succeed(cmd).await {
        Ok(out) => out.stdout_lossy().trim().to_string(),
        Err(e) => panic!("{}", kthw::chain(&e)),
    }
}

/// A failure bundle of `cluster` under the test home, on demand; prints and returns the bundle's directory so
/// the path reaches the test's output. A test that panics while holding a cluster from [`up`] gets one
/// without asking.
pub async fn bundle(cluster: &kthw::cluster::Cluster, why: &str) -> PathBuf {
    match kthw::bundle::collect(cluster, &test_paths(), Some(why)).await {
        Ok(made) => {
            eprintln!("failure bundle: {} (and {})", made.dir.display(), made.archive.display());
            made.dir
        }
        Err(e) => panic!("no failure bundle of {}: {}", cluster.name(), kthw::chain(&e)),
    }
}

/// The bars of the run's timeline picture at `svg` (harness/src/timeline), as `(class, fill, dashed)`, once it
/// parses as XML and librsvg's rsvg-convert draws it as a PNG of its declared size (that part skipped through
/// the one helper where rsvg-convert is missing; `test` names who needs it).
pub fn timeline_bars(svg: &std::path::Path, test: &str) -> Vec<(String, String, bool)> {
    let text = std::fs::read_to_string(svg).unwrap_or_else(|e| panic!("{}: {e}", svg.display()));
    let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{} is not XML: {e}", svg.display()));
    if kthw::testing::needs(kthw::testing::on_path("rsvg-convert", test)).is_some() {
        let out = tempfile::tempdir().unwrap();
        let (width, height) = kthw::testing::render_png(svg, &out.path().join("timeline.png"));
        let declared = |a: &str| doc.root_element().attribute(a).and_then(|v| v.parse::<f64>().ok());
        assert_eq!((Some(width as f64), Some(height as f64)), (declared("width"), declared("height")));
    }
    doc.descendants()
        .filter_map(|n| {
            let class = n.attribute("class")?.strip_prefix("bar ")?;
            Some((class.to_string(), n.attribute("fill")?.to_string(), n.attribute("stroke-dasharray").is_some()))
        })
        .collect()
}
