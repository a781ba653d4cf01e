//! The test's cluster: a private copy restored from a golden snapshot (of a phase, or of a state of the
//! user's own), its nodes, its faults, what the test adds to its failure bundle, and its end.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::fault::FaultGuard;
use super::golden::Golden;
use super::node::{Node, NodeOutputs};
use super::{panics, TestError};
use crate::bootstrap::Bootstrap;
use crate::bundle::{Extras, TestRecord};
use crate::cluster::{Cluster, Fault};
use crate::image::NodeImage;
use crate::keep::Keep;
use crate::paths::Paths;
use crate::phase::Phase;
use crate::spec::ClusterSpec;
use crate::up::{Plan, Running, Up, UpError};

/// Set to a kept cluster's name, a test runs on that cluster instead of a fresh copy (and leaves it
/// running): how `kthw repro` and a failed test's output say to run the test again where it failed.
pub const TEST_ON: &str = "KTHW_TEST_ON";

/// A test's cluster. Clones share it; the last one dropped tears it down (unless `KTHW_KEEP` keeps it).
///
/// ```no_run
/// # async fn f() -> Result<(), kthw::testkit::TestError> {
/// use kthw::phase::Phase;
/// use kthw::testkit::TestCluster;
///
/// let spec = kthw::ClusterSpec { etcd_from: kthw::spec::Origin::Debian, ..Default::default() };
/// let cluster = TestCluster::at(Phase::Etcd).spec(spec).start("etcd_answers").await?;
/// for (node, out) in cluster.on_every_node("uname -r").await? {
///     assert!(out.success(), "{node}: {}", out.summary());
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct TestCluster {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    running: Running,
    paths: Paths,
    test: TestRecord,
    keep: Keep,
    ttl: Duration,
    /// What the test added to its bundle; shared with the panic hook, which runs after the test's last borrow.
    extras: Arc<Mutex<Extras>>,
}

/// How a [`TestCluster`] starts: [`TestCluster::at`], then what differs from the defaults, then
/// [`Builder::start`].
#[derive(Debug, Clone)]
pub struct Builder {
    phase: Phase,
    spec: Option<ClusterSpec>,
    golden: Option<Golden>,
    paths: Option<Paths>,
    image: Option<NodeImage>,
    artifacts_dir: Option<PathBuf>,
}

impl TestCluster {
    /// A cluster with every phase through `phase` done: a copy of the golden snapshot of that state, saved by
    /// the first test that needs it (the others wait for it, then restore in seconds).
    pub fn at(phase: Phase) -> Builder {
        Builder { phase, spec: None, golden: None, paths: None, image: None, artifacts_dir: None }
    }

    pub(super) fn new(mut running: Running, paths: Paths, test: TestRecord, keep: Keep, ttl: Duration) -> TestCluster {
        panics::note_messages();
        let extras = Arc::new(Mutex::new(Extras::default()));
        panics::arm(&mut running, &paths, &test, &extras, keep, ttl);
        TestCluster { inner: Arc::new(Inner { running, paths, test, keep, ttl, extras }) }
    }

    /// A cluster brought up or opened by other means ([`Up`], [`Cluster::open`]) as test `test`'s, armed like
    /// one from [`Builder::start`]: for a runner of the user's own, such as kthw-scenarios'.
    pub fn adopt(running: Running, paths: Paths, test: &str, keep: Keep, ttl: Duration) -> TestCluster {
        TestCluster::new(running, paths, TestRecord::here(test), keep, ttl)
    }

    /// The library's cluster handle, for what this API does not cover (sessions, phases, faults by hand).
    pub fn cluster(&self) -> &Cluster {
        &self.inner.running.cluster
    }

    /// Where the phases got their artifacts; run later phases on the cluster with it.
    pub fn bootstrap(&self) -> &Bootstrap {
        &self.inner.running.bootstrap
    }

    /// The cluster's spec, as it was brought up.
    pub fn spec(&self) -> &ClusterSpec {
        self.cluster().spec()
    }

    /// The cluster's name (`kthw list`, `kthw ssh NAME NODE`).
    pub fn name(&self) -> &str {
        self.cluster().name()
    }

    /// Where its images, snapshots, run directory and bundles live.
    pub fn paths(&self) -> &Paths {
        &self.inner.paths
    }

    /// The test this cluster is for, as its failure bundle records it.
    pub fn test(&self) -> &TestRecord {
        &self.inner.test
    }

    /// A deadline written for KVM, scaled for this cluster's acceleration.
    pub fn scaled(&self, kvm: Duration) -> Duration {
        self.cluster().accel().scale(kvm)
    }

    /// Node `name`; an error naming the spec's nodes when it has none of that name.
    pub fn node(&self, name: &str) -> Result<Node, TestError> {
        match self.spec().nodes.iter().any(|n| n.name == name) {
            true => Ok(Node::new(self.clone(), name.to_string())),
            false => Err(TestError::UnknownNode {
                node: name.to_string(),
                known: self.spec().nodes.iter().map(|n| n.name.clone()).collect(),
            }),
        }
    }

    /// Every node, in the spec's order.
    pub fn nodes(&self) -> Vec<Node> {
        self.spec().nodes.iter().map(|n| Node::new(self.clone(), n.name.clone())).collect()
    }

    /// The workers' names, in the spec's order.
    pub fn workers(&self) -> Vec<String> {
        self.spec().workers().map(|w| w.name.clone()).collect()
    }

    /// The control plane's name.
    pub fn control_plane(&self) -> String {
        self.spec().control_plane().name.clone()
    }

    /// Runs `cmd` on every node at once; each node's output, whatever its exit status, by node name. A node
    /// that cannot be reached fails the call.
    pub async fn on_every_node(&self, cmd: &str) -> Result<NodeOutputs, TestError> {
        let mut set = tokio::task::JoinSet::new();
        for node in self.nodes() {
            let cmd = cmd.to_string();
            set.spawn(async move { node.exec(&cmd).await.map(|out| (node.name().to_string(), out)) });
        }
        let mut outputs = NodeOutputs::new();
        while let Some(joined) = set.join_next().await {
            let (node, out) = joined.map_err(|e| TestError::Check(format!("a command on every node: {e}")))??;
            outputs.insert(node, out);
        }
        Ok(outputs)
    }

    /// Injects `fault` on `node`; the guard reverts it when dropped (or on [`FaultGuard::revert`], which
    /// says whether that worked).
    pub async fn fault(&self, node: &str, fault: Fault) -> Result<FaultGuard, TestError> {
        self.node(node)?;
        FaultGuard::inject(self.clone(), node, fault).await
    }

    /// Puts images into every node's containerd, digests kept: OCI archives (`docker save`, `ctr images
    /// export`, BuildKit, skopeo) or references to pull first (a registry on loopback only; nodes have no
    /// egress). Returns `node: name (digest)` for each.
    pub async fn load_images(&self, images: &[&str]) -> Result<Vec<String>, TestError> {
        let given: Vec<String> = images.iter().map(|s| s.to_string()).collect();
        crate::oci::load_given(self.cluster(), &given).await.map_err(|e| TestError::Image(Box::new(e)))
    }

    /// Adds `cmd`'s output on `node` to the failure bundle, run when the bundle is made.
    pub fn attach_command(&self, node: &str, cmd: &str) -> Result<(), TestError> {
        self.node(node)?;
        self.extras_mut().commands.push((node.to_string(), cmd.to_string()));
        Ok(())
    }

    /// Adds file `path` of `node` to the failure bundle, as it is when the bundle is made.
    pub fn attach_file(&self, node: &str, path: &str) -> Result<(), TestError> {
        self.node(node)?;
        self.extras_mut().files.push((node.to_string(), path.to_string()));
        Ok(())
    }

    /// Adds `text` to the failure bundle as `test/<name>` (an object's dump, what the test saw).
    pub fn attach_text(&self, name: &str, text: &str) {
        self.extras_mut().texts.push((name.to_string(), text.to_string()));
    }

    /// Records namespace `ns` as the test's: the failure bundle takes every pod's description and logs in it.
    pub(super) fn record_namespace(&self, ns: &str) {
        let mut extras = self.extras_mut();
        if !extras.namespaces.iter().any(|n| n == ns) {
            extras.namespaces.push(ns.to_string());
        }
    }

    /// What the test has added to its failure bundle so far.
    pub fn extras(&self) -> Extras {
        self.extras_mut().clone()
    }

    fn extras_mut(&self) -> std::sync::MutexGuard<'_, Extras> {
        self.inner.extras.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn keep(&self) -> (Keep, Duration) {
        (self.inner.keep, self.inner.ttl)
    }

    /// The running cluster back, when this is the last handle (to keep it, save it, take it down); the
    /// handle again otherwise.
    pub fn into_running(self) -> Result<Running, TestCluster> {
        match Arc::try_unwrap(self.inner) {
            Ok(inner) => Ok(inner.running),
            Err(inner) => Err(TestCluster { inner }),
        }
    }
}

impl Builder {
    /// The cluster's spec (its topology, versions, `etcd_from`, `images.extra`...); the seed's by default.
    pub fn spec(mut self, spec: ClusterSpec) -> Builder {
        self.spec = Some(spec);
        self
    }

    /// A golden state of the test's own on top of the phase: see [`Golden`].
    pub fn golden(mut self, golden: Golden) -> Builder {
        self.golden = Some(golden);
        self
    }

    /// Where images, artifacts, snapshots, run directories and bundles live; by default `KTHW_HOME`, else
    /// `kthw-test-home` in the test binary's target directory ([`Paths::for_tests`]), never the user's home.
    pub fn paths(mut self, paths: Paths) -> Builder {
        self.paths = Some(paths);
        self
    }

    /// This node image instead of the cached one (built when missing).
    pub fn image(mut self, image: NodeImage) -> Builder {
        self.image = Some(image);
        self
    }

    /// Use only the artifacts in this directory (air-gapped).
    pub fn artifacts_dir(mut self, dir: PathBuf) -> Builder {
        self.artifacts_dir = Some(dir);
        self
    }

    /// The cluster for test `test` (its name goes into the cluster's name and its failure bundle): a fresh
    /// copy of the golden snapshot, or with `KTHW_TEST_ON=CLUSTER` that kept cluster. `KTHW_KEEP` and
    /// `KTHW_KEEP_TTL` say what becomes of it after a failure.
    pub async fn start(self, test: &str) -> Result<TestCluster, TestError> {
        let record = TestRecord::here(test);
        let paths = match self.paths.clone() {
            Some(p) => p,
            None => Paths::for_tests().map_err(|why| TestError::Env(format!("no test home: {why}")))?,
        };
        let (keep, ttl) = crate::keep::from_env().map_err(TestError::Env)?;
        if let Some(kept) = std::env::var(TEST_ON).ok().filter(|v| !v.trim().is_empty()) {
            return self.on_kept(kept.trim(), paths, record, ttl);
        }
        let spec = self.spec.clone().unwrap_or_default();
        let up_err = |e: UpError| TestError::Up(Box::new(e));
        let mut up = Up::new(spec)
            .name(cluster_name(test))
            .until(self.phase)
            .paths(paths.clone())
            .artifacts_dir(self.artifacts_dir.clone())
            .keep(keep)
            .keep_ttl(ttl)
            .save_golden(true)
            .bundle_on_panic(true);
        if let Some(image) = self.image.clone() {
            up = up.image(image);
        }
        let image = up.node_image().await.map_err(up_err)?;
        let up = up.image(image.clone());
        let running = match &self.golden {
            None => up.run().await.map_err(up_err)?,
            Some(golden) => golden.start(up, &image, &paths, &record).await?,
        };
        let cluster = TestCluster::new(running, paths, record, keep, ttl);
        let extra: Vec<String> = cluster.spec().images.extra.clone();
        if !extra.is_empty() {
            let given: Vec<&str> = extra.iter().map(String::as_str).collect();
            cluster.load_images(&given).await?;
        }
        Ok(cluster)
    }

    /// The kept cluster `name`, as it is: no golden restore, no setup step, left running when dropped (and
    /// after a failure: it is kept already).
    fn on_kept(&self, name: &str, paths: Paths, test: TestRecord, ttl: Duration) -> Result<TestCluster, TestError> {
        let cluster = Cluster::open(name, &paths)
            .map_err(|e| TestError::Cluster { cluster: name.to_string(), source: Box::new(e) })?;
        eprintln!("test {}: on kept cluster {name} ({TEST_ON}), which it leaves running", test.name);
        let bootstrap = Bootstrap::from_lock(&paths, self.artifacts_dir.clone(), &crate::lock::of_cluster(&cluster));
        let running =
            Running { cluster, plan: Plan { last: self.phase, blocked: None }, reports: Vec::new(), bootstrap };
        Ok(TestCluster::new(running, paths, test, Keep::Always, ttl))
    }
}

/// A cluster name for test `test`: what reads of the test's name, then the process id (and a count, for a
/// second cluster in one process), within the 64 characters a cluster name may have.
pub fn cluster_name(test: &str) -> String {
    static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let base: String = test
        .rsplit("::")
        .next()
        .unwrap_or(test)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' })
        .take(40)
        .collect();
    let base = base.trim_matches('-');
    let base = if base.is_empty() { "test" } else { base };
    match n {
        0 => format!("{base}-{}", std::process::id()),
        n => format!("{base}-{}-{n}", std::process::id()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tests_cluster_name_is_valid_and_its_own() {
        let a = cluster_name("testkit::nodes::etcd_answers on every node!");
        let b = cluster_name("testkit::nodes::etcd_answers on every node!");
        let prefix = format!("etcd-answers-on-every-node-{}", std::process::id());
        assert!(a.starts_with(&prefix) && b.starts_with(&prefix), "{a} {b}");
        assert_ne!(a, b, "two clusters of one test in one process");
        crate::cluster::validate_name(&a).unwrap();
        crate::cluster::validate_name(&cluster_name(&"x".repeat(300))).unwrap();
        crate::cluster::validate_name(&cluster_name("::")).unwrap();
    }
}
