//! What this repository's tests share: the cluster they run on (`cluster.toml`) and how a test asks for it.
//! A repository of kthw tests needs nothing more than this and its `tests/`.

use kthw::phase::Phase;
use kthw::testkit::{Builder, TestCluster};
use kthw::ClusterSpec;

/// The spec every test starts from, as `cluster.toml` says it.
pub fn spec() -> ClusterSpec {
    ClusterSpec::from_toml_validated(include_str!("../cluster.toml"), "cluster.toml")
        .unwrap_or_else(|e| panic!("{}", kthw::chain(&e)))
}

/// A test's cluster at `phase` (restored from the golden snapshot of that phase) under the test home
/// (`KTHW_HOME`, else `kthw-test-home` in the target directory); `None`, having printed why, on a host that
/// cannot run VMs (under `CI=true` that fails the test instead).
pub fn cluster_at(phase: Phase, spec: ClusterSpec) -> Option<Builder> {
    kthw::testing::needs(kthw::testing::vm_host(&kthw::testing::test_paths()))?;
    Some(TestCluster::at(phase).spec(spec))
}

/// The furthest phase a host with no upstream downloads reaches: `etcd`, with `etcd_from = "debian"`.
pub fn at_etcd() -> Option<Builder> {
    cluster_at(Phase::Etcd, spec())
}

/// etcdctl on the control plane as the apiserver's etcd client, over TLS with the cluster's own certificates.
pub fn etcdctl(spec: &ClusterSpec) -> String {
    kthw::bootstrap::Layout::default().etcdctl(spec)
}
