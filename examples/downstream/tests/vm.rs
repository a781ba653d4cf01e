//! The tests a user writes first, on the phases a host without upstream downloads reaches (etcd from
//! Debian's package). Each starts a private copy of a golden snapshot, in seconds; the first test to need a
//! state saves it once. The nextest profile in `.config/nextest.toml` runs them one at a time.

use std::collections::BTreeSet;

use kthw::cluster::Fault;
use kthw::phase::Phase;
use kthw::spec::VersionSet;
use kthw::testkit::{run, Golden, SetupFuture, TestCluster, TestError};
use kthw_downstream_example::{at_etcd, cluster_at, etcdctl, spec};
use rstest::rstest;

/// The keys under `prefix` in the cluster's etcd, as `etcdctl get --prefix --keys-only` lists them.
async fn etcd_keys(c: &TestCluster, prefix: &str) -> Result<BTreeSet<String>, TestError> {
    let cmd = format!("{} get --prefix --keys-only {prefix}", etcdctl(c.spec()));
    let out = c.node(&c.control_plane())?.succeed(&cmd).await?;
    Ok(out.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect())
}

/// (a) One command on every node at once; each node answers with its own name and its own address. This is
/// the README's first test, word for word: it uses nothing of this crate's own.
#[tokio::test]
async fn every_node_answers_with_its_own_name_and_address() -> Result<(), TestError> {
    // No libvirt or QEMU here: print why and pass (under CI=true: fail). The test home is KTHW_HOME, else
    // kthw-test-home in the target directory: where images, snapshots, clusters and bundles go.
    let Some(()) = kthw::testing::needs(kthw::testing::vm_host(&kthw::testing::test_paths())) else { return Ok(()) };
    let spec = kthw::ClusterSpec::from_toml_validated(include_str!("../cluster.toml"), "cluster.toml")
        .map_err(TestError::other)?;
    let cluster = TestCluster::at(Phase::Etcd).spec(spec);
    run(cluster, "every_node_answers_with_its_own_name_and_address", async |c| {
        let answers = c.on_every_node("hostname; ip -4 -o addr show").await?;
        assert_eq!(answers.len(), c.spec().nodes.len(), "every node answers");
        for node in &c.spec().nodes {
            let text = answers[&node.name].stdout_lossy();
            assert_eq!(text.lines().next(), Some(node.name.as_str()), "{}'s hostname in {text}", node.name);
            assert!(text.contains(&format!(" {}/", node.address)), "{} holds {}:\n{text}", node.name, node.address);
        }
        Ok(())
    })
    .await
}

/// (b) A fault held by a guard: while worker-node-1's cluster link is down it cannot reach the control
/// plane (and etcd there is unharmed); once the guard is dropped the link is back and so is the path.
#[tokio::test]
async fn a_worker_cut_off_by_a_fault_reaches_the_control_plane_again_once_the_guard_goes() -> Result<(), TestError> {
    let Some(cluster) = at_etcd() else { return Ok(()) };
    run(cluster, "a_worker_cut_off_by_a_fault_reaches_the_control_plane_again_once_the_guard_goes", async |c| {
        let cp = c.node(&c.control_plane())?;
        let worker = c.node("worker-node-1")?;
        let cp_address = c.spec().control_plane().address;
        // bash's /dev/tcp: a TCP connection to the control plane's sshd, 3 s at most; no extra tool needed.
        let reach = format!("timeout 3 bash -c '</dev/tcp/{cp_address}/22'");
        worker.succeed(&reach).await?;
        {
            let down = c.fault("worker-node-1", Fault::LinkDown).await?;
            eprintln!("fault: {}", down.said());
            worker.wait_until_fails(&reach).await?;
            cp.succeed(&format!("{} endpoint health", etcdctl(c.spec()))).await?;
        }
        worker.wait_until_succeeds(&reach).await?;
        Ok(())
    })
    .await
}

/// (c) A golden state of the repository's own: the etcd phase plus a stocked shop (an etcd key and a file
/// on a worker). Saved once by whichever of the two tests below comes first, restored for both.
fn stocked_shop() -> Golden {
    // Bump the version whenever `stock_the_shop` changes: it is part of the snapshot's key.
    Golden::new("stocked-shop", "1", stock_the_shop)
}

fn stock_the_shop(c: &TestCluster) -> SetupFuture<'_> {
    Box::pin(async move {
        let put = format!("{} put /shop/catalogue apples", etcdctl(c.spec()));
        c.node(&c.control_plane())?.succeed(&put).await?;
        c.node("worker-node-1")?.succeed("mkdir -p /srv/shop && echo apples > /srv/shop/catalogue").await?;
        Ok(())
    })
}

/// Restores the stocked shop, adds order `order`, and sees the setup's catalogue and its own order only.
async fn order_on_a_stocked_shop(test: &str, order: &str) -> Result<(), TestError> {
    let Some(cluster) = at_etcd() else { return Ok(()) };
    run(cluster.golden(stocked_shop()), test, async |c| {
        let catalogue = c.node("worker-node-1")?.succeed("cat /srv/shop/catalogue").await?;
        assert_eq!(catalogue.trim(), "apples", "the setup step's file is in the restored state");
        let put = format!("{} put /shop/orders/{order} 1", etcdctl(c.spec()));
        c.node(&c.control_plane())?.succeed(&put).await?;
        let keys = etcd_keys(&c, "/shop/").await?;
        let expected = BTreeSet::from(["/shop/catalogue".to_string(), format!("/shop/orders/{order}")]);
        assert_eq!(keys, expected, "the setup's key and this test's own, no other test's");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_stocked_shop_takes_an_order_for_pears() -> Result<(), TestError> {
    order_on_a_stocked_shop("a_stocked_shop_takes_an_order_for_pears", "pears").await
}

#[tokio::test]
async fn a_stocked_shop_takes_an_order_for_plums() -> Result<(), TestError> {
    order_on_a_stocked_shop("a_stocked_shop_takes_an_order_for_plums", "plums").await
}

/// (d) A test body that fails by returning an error: `run` makes a failure bundle before the cluster goes,
/// and its reason names the test and the error, beside what the test attached. The inner test fails on
/// purpose; this one checks the bundle it left, then removes it.
#[tokio::test]
async fn a_body_that_returns_an_error_leaves_a_bundle_naming_the_test_and_the_error() {
    let Some(cluster) = at_etcd() else { return };
    // The inner failure is wanted: its cluster is never kept, whatever the person running this asked for.
    std::env::remove_var("KTHW_KEEP");
    let inner = "the_shop_has_three_replicas";
    let outcome = run(cluster, inner, async |c| {
        c.attach_text("replicas.txt", "wanted 3, counted 2");
        c.attach_command(&c.control_plane(), "systemctl is-active etcd")?;
        let counted = c.node(&c.control_plane())?.succeed("echo 2").await?;
        Err(TestError::check(format!("the shop has {} replicas, not 3", counted.trim())))
    })
    .await;
    let Err(TestError::Failed { test, message, bundle }) = outcome else {
        panic!("a failing body gives TestError::Failed, not {outcome:?}");
    };
    assert_eq!(test, inner);
    assert_eq!(message, "the shop has 2 replicas, not 3");
    let bundle = bundle.expect("a bundle was made");
    let opened = kthw::bundle::open(&bundle).unwrap_or_else(|e| panic!("{}", kthw::chain(&e)));
    assert_eq!(opened.manifest.reason, format!("test {inner} failed: the shop has 2 replicas, not 3"));
    assert_eq!(opened.manifest.test.as_ref().map(|t| t.name.as_str()), Some(inner));
    let read = |file: &str| std::fs::read_to_string(bundle.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    assert!(read("README.txt").contains(&format!("test: {inner}")), "the bundle's README names the test");
    assert_eq!(read("test/replicas.txt"), "wanted 3, counted 2");
    assert_eq!(read("test/control-plane-1/systemctl_is-active_etcd.txt").trim(), "active");
    std::fs::remove_dir_all(&bundle).unwrap();
    let name = bundle.file_name().unwrap().to_string_lossy().to_string();
    std::fs::remove_file(bundle.with_file_name(format!("{name}.tar.gz"))).unwrap();
}

/// (e) One test over both pinned version sets: the same check on each, its cluster the set's own. Up to etcd
/// a set changes no file on the nodes (etcd is Debian's here), so the check is what a user keeps across sets.
#[rstest]
#[case::seed(VersionSet::Seed)]
#[case::current(VersionSet::Current)]
#[tokio::test]
async fn etcd_keeps_a_key_on_every_version_set(#[case] set: VersionSet) -> Result<(), TestError> {
    let Some(cluster) = cluster_at(Phase::Etcd, kthw::ClusterSpec { versions: set.into(), ..spec() }) else {
        return Ok(());
    };
    let test = format!("etcd_keeps_a_key_on_every_version_set::{set}");
    run(cluster, &test, async |c| {
        assert_eq!(c.spec().versions.as_preset(), Some(set));
        let cp = c.node(&c.control_plane())?;
        cp.wait_for_unit("etcd").await?;
        cp.succeed(&format!("{} put /sets/{set} {}", etcdctl(c.spec()), set.pins().kubernetes)).await?;
        let got = cp.succeed(&format!("{} get --print-value-only /sets/{set}", etcdctl(c.spec()))).await?;
        assert_eq!(got.trim(), set.pins().kubernetes);
        Ok(())
    })
    .await
}
