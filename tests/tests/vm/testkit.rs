//! The public test API (`kthw::testkit`) end to end, as a user's test drives it: copies of the shared golden
//! snapshot at etcd (three small nodes, Debian's etcd; the golden and fault tests start from it too), node
//! handles, one command on every node, files both ways, fault guards that revert, a golden state of the
//! test's own, and bodies that fail on purpose leaving a bundle that names the test and the message.

use std::path::Path;

use kthw::bootstrap::Layout;
use kthw::phase::Phase;
use kthw::testkit::{run, Builder, Fault, Golden, TestCluster, TestError};
use kthw_tests::{etcd_spec, host_prerequisite, node_image, test_paths, vm_host_missing};

/// One echo request from worker-node-1 to worker-node-2 across the cluster network, answered within a second.
const PING: &str = "ping -n -c 1 -W 1 10.0.0.6";

async fn at_etcd() -> Builder {
    TestCluster::at(Phase::Etcd).spec(etcd_spec()).paths(test_paths()).image(node_image().await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_drives_nodes_files_and_faults_through_the_public_api() {
    let Some(()) = host_prerequisite("vm", vm_host_missing()) else { return };
    let etcdctl = Layout::default().etcdctl(&etcd_spec());
    run(at_etcd().await, "testkit_drives_nodes_files_and_faults", async |cluster| {
        let err = cluster.node("worker-node-9").unwrap_err().to_string();
        assert_eq!(
            err,
            "no node worker-node-9 in the cluster's spec; its nodes: control-plane-1, worker-node-1, worker-node-2"
        );

        let cp = cluster.node("control-plane-1")?;
        cp.wait_for_unit("etcd").await?;
        cp.wait_for_port(2379).await?;
        let err = cp.wait_for_unit("kthw-no-such").await.unwrap_err().to_string();
        assert!(err.contains("unit kthw-no-such does not exist"), "{err}");
        assert_eq!(cp.succeed("hostname").await?.trim(), "control-plane-1");
        let health = cp.succeed(&format!("{etcdctl} endpoint health 2>&1")).await?;
        assert!(health.contains("is healthy"), "{health}");
        let refused = cp.fail("systemctl is-active kubelet").await?;
        assert!(!refused.success(), "no kubelet at etcd");
        let err = cp.fail("true").await.unwrap_err();
        assert!(kthw::chain(&err).contains("`true`"), "{}", kthw::chain(&err));

        let hostnames = cluster.on_every_node("hostname").await?;
        assert_eq!(hostnames.keys().collect::<Vec<_>>(), ["control-plane-1", "worker-node-1", "worker-node-2"]);
        for (node, out) in &hostnames {
            assert_eq!(out.stdout_lossy().trim(), node, "{node}: {}", out.summary());
        }

        let w1 = cluster.node("worker-node-1")?;
        let dir = tempfile::tempdir().unwrap();
        let (sent, back) = (dir.path().join("sent"), dir.path().join("back"));
        std::fs::write(&sent, "kthw testkit upload\n").unwrap();
        std::fs::set_permissions(&sent, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
        w1.upload(&sent, "/root/kthw-testkit").await?;
        assert_eq!(w1.succeed("stat -c %a /root/kthw-testkit").await?.trim(), "640", "the mode travels");
        w1.succeed("echo from the node >> /root/kthw-testkit").await?;
        w1.download("/root/kthw-testkit", &back).await?;
        assert_eq!(std::fs::read_to_string(&back).unwrap(), "kthw testkit upload\nfrom the node\n");

        w1.succeed(PING).await?;
        {
            let _down = cluster.fault("worker-node-2", Fault::LinkDown).await?;
            w1.wait_until_fails(PING).await?;
        }
        w1.wait_until_succeeds(PING).await?;

        let stopped = cluster.fault("control-plane-1", Fault::StopUnit("etcd".into())).await?;
        cp.wait_until_fails("systemctl is-active etcd").await?;
        let said = stopped.revert().await?;
        assert_eq!(said, "unit etcd started again");
        cp.wait_for_unit("etcd").await?;
        cp.wait_until_succeeds(&format!("{etcdctl} endpoint health")).await?;
        Ok(())
    })
    .await
    .unwrap_or_else(|e| panic!("{}", kthw::chain(&e)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_body_leaves_a_bundle_that_names_the_test_and_its_message() {
    let Some(()) = host_prerequisite("vm", vm_host_missing()) else { return };
    let err = run(at_etcd().await, "testkit_fails_on_purpose", async |cluster| {
        cluster.attach_command("control-plane-1", "systemctl is-active etcd")?;
        cluster.attach_file("worker-node-2", "/etc/hostname")?;
        cluster.attach_text("seen.txt", "what the test saw");
        assert!(cluster.attach_command("worker-node-7", "true").is_err(), "an unknown node is refused");
        Err(TestError::check("etcd has 1 member, the test wanted 5"))
    })
    .await
    .unwrap_err();
    let bundle = failed_bundle(err, "testkit_fails_on_purpose", "etcd has 1 member, the test wanted 5");
    let read = |file: &str| std::fs::read_to_string(bundle.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    assert_eq!(read("test/control-plane-1/systemctl_is-active_etcd.txt").trim(), "active");
    assert_eq!(read("test/worker-node-2/_etc_hostname").trim(), "worker-node-2");
    assert_eq!(read("test/seen.txt"), "what the test saw");

    let err = run(at_etcd().await, "testkit_panics_on_purpose", async |_cluster| {
        panic!("a check that panicked: 2 != 3");
    })
    .await
    .unwrap_err();
    failed_bundle(err, "testkit_panics_on_purpose", "a check that panicked: 2 != 3");
}

/// The bundle of `err`, a failure of test `test` with `message`, after checking that it names both and says
/// how to run the test again; its cluster is gone unless `KTHW_KEEP` keeps it.
fn failed_bundle(err: TestError, test: &str, message: &str) -> std::path::PathBuf {
    let TestError::Failed { test: failed, message: said, bundle } = err else {
        panic!("not a test's failure: {}", kthw::chain(&err))
    };
    assert_eq!((failed.as_str(), said.as_str()), (test, message));
    let bundle = bundle.expect("a bundle");
    let opened = kthw::bundle::open(&bundle).unwrap();
    assert_eq!(opened.manifest.reason, format!("test {test} failed: {message}"));
    let record = opened.manifest.test.clone().expect("the bundle records its test");
    assert_eq!(record.name, test);
    assert!(record.binary.as_deref().is_some_and(|b| Path::new(b).is_file()), "{record:?}");
    let readme = std::fs::read_to_string(bundle.join("README.txt")).unwrap();
    assert!(readme.contains(&format!("reason: test {test} failed: {message}")), "{readme}");
    assert!(readme.contains(&format!("to run test {test} again on cluster {}", opened.manifest.cluster)), "{readme}");
    if kthw::keep::from_env().unwrap().0 == kthw::up::Keep::Never {
        assert!(!test_paths().run(&opened.manifest.cluster).exists(), "the failed test's cluster is torn down");
    }
    bundle
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_golden_state_of_the_tests_own_is_made_once_and_each_copy_sees_only_its_own_changes() {
    let Some(()) = host_prerequisite("vm", vm_host_missing()) else { return };
    let golden = Golden::new("testkit-vm-files", "1", |c: &TestCluster| {
        Box::pin(async move {
            c.node("worker-node-1")?.succeed("echo set-up > /etc/kthw-golden-state").await?;
            Ok(())
        })
    });
    let a = at_etcd().await.golden(golden.clone()).start("testkit_golden_a").await;
    let a = a.unwrap_or_else(|e| panic!("{}", kthw::chain(&e)));
    let b = at_etcd().await.golden(golden).start("testkit_golden_b").await;
    let b = b.unwrap_or_else(|e| panic!("{}", kthw::chain(&e)));
    let (a1, b1) = (a.node("worker-node-1").unwrap(), b.node("worker-node-1").unwrap());
    for w in [&a1, &b1] {
        assert_eq!(w.succeed("cat /etc/kthw-golden-state").await.unwrap().trim(), "set-up");
    }
    a1.succeed("touch /etc/kthw-only-a").await.unwrap();
    b1.fail("test -e /etc/kthw-only-a").await.unwrap();
    let origin = std::fs::read_to_string(a.cluster().run_dir().golden_origin()).unwrap();
    assert!(origin.trim().starts_with("etcd-testkit-vm-files-"), "a copy of the state's own snapshot: {origin}");

    // A setup step that fails saves nothing and explains itself like a test's failure.
    let broken = Golden::new("testkit-vm-broken", "1", |c: &TestCluster| {
        Box::pin(async move {
            c.node("worker-node-1")?.succeed("exit 3").await?;
            Ok(())
        })
    });
    let err = at_etcd().await.golden(broken).start("testkit_golden_broken").await.unwrap_err();
    let TestError::Setup { name, source, .. } = &err else { panic!("{}", kthw::chain(&err)) };
    assert_eq!(name, "testkit-vm-broken");
    let Some(TestError::Failed { message, bundle: Some(_), .. }) = source.downcast_ref::<TestError>() else {
        panic!("the failed setup leaves a bundle: {}", kthw::chain(&err))
    };
    assert!(message.starts_with("the setup step of golden state testkit-vm-broken: "), "{message}");
    let saved: Vec<String> = kthw::golden::store::list(&test_paths()).into_iter().map(|l| l.key).collect();
    assert!(!saved.iter().any(|k| k.contains("testkit-vm-broken")), "nothing saved of a failed setup: {saved:?}");
}
