//! The cluster tier: a whole cluster (Kubernetes, Cilium, CoreDNS) needs the pinned upstream artifacts
//! (`KTHW_HOME=... kthw artifacts fetch`) and, to be quick, KVM: `#[ignore]`d like kthw's own cluster tier,
//! run with `--run-ignored all` by a nightly on KVM runners.

use kthw::phase::Phase;
use kthw::testkit::{pinned_image, pinned_pod, run, Condition, ObjectRef, TestError};
use kthw::ClusterSpec;
use kthw_downstream_example::cluster_at;

/// The pinned images the shop runs: the echo server and the client of `cilium connectivity test`.
const IMAGES: [&str; 2] = ["connectivity-json-mock", "connectivity-curl"];
const SERVER_NODE: &str = "worker-node-2";
const CLIENT_NODE: &str = "worker-node-1";

/// (f) A Deployment, a Service and a CiliumNetworkPolicy of the repository's own (`manifests/shop.yaml`): a
/// shopper on one worker reaches the Service of a server on the other; a pod the policy does not name does
/// not (its connection times out: Cilium drops what policy denies).
#[tokio::test]
#[ignore = "cluster tier: needs the pinned upstream artifacts (kthw artifacts fetch) and a KVM runner; run by the nightly"]
async fn only_shoppers_reach_the_shop_across_nodes() -> Result<(), TestError> {
    // The seed's own topology (2 vCPUs, 2 GiB a node): Cilium and the control plane want more than the vm tier.
    let Some(cluster) = cluster_at(Phase::Ready, ClusterSpec::default()) else { return Ok(()) };
    run(cluster, "only_shoppers_reach_the_shop_across_nodes", async |c| {
        let set = c.spec().versions.preset;
        let (events, _) = kthw::events::Events::channel();
        c.bootstrap().preload(c.cluster(), Phase::Ready, &IMAGES, &events).await.map_err(TestError::other)?;
        let k = c.kube().await?;
        let ns = k.namespace("shop").await?;
        let shop = include_str!("../manifests/shop.yaml")
            .replace("${NAMESPACE}", &ns)
            .replace("${SERVER_NODE}", SERVER_NODE)
            .replace("${ECHO_IMAGE}", &pinned_image(set, "connectivity-json-mock"));
        let applied = k.apply(&shop).await?;
        let deployment = applied.iter().find(|o| o.kind == "Deployment").expect("shop.yaml has a Deployment");
        k.wait_for(deployment, Condition::status("Available")).await?;

        let curl_image = pinned_image(set, "connectivity-curl");
        for (name, labels) in [("shopper", &[("role", "shopper")][..]), ("stranger", &[][..])] {
            let mut pod = pinned_pod(name, CLIENT_NODE, &curl_image, Some(vec!["/usr/bin/pause".into()]), labels);
            pod.metadata.namespace = Some(ns.clone());
            k.apply(&kthw::serde_json::to_string(&pod).map_err(TestError::other)?).await?;
            k.wait_for(&ObjectRef::pod(&ns, name), Condition::PodRunning).await?;
        }
        let service = k.get(&ObjectRef::new("v1", "Service", "shop").within(&ns)).await?.expect("the Service exists");
        let url = format!("http://{}:8080/", service["spec"]["clusterIP"].as_str().unwrap_or_default());
        let curl = |pod: &str| format!("{} -n {ns} exec {pod} -- curl -sS -o /dev/null --max-time 5 {url}", kubectl());
        // Across nodes: the shopper is on CLIENT_NODE, the shop's only pod on SERVER_NODE.
        c.attach_command(&c.control_plane(), &format!("{} -n {ns} get pods -o wide", kubectl()))?;
        let cp = c.node(&c.control_plane())?;
        cp.wait_until_succeeds(&curl("shopper")).await?;
        let denied = cp.fail(&curl("stranger")).await?;
        // kubectl exec passes curl's status on ("command terminated with exit code 28": curl's man page, EXIT
        // CODES, 28 "Operation timeout"); a refusal (7) would mean something other than the policy answered.
        let said = denied.stderr_lossy();
        assert!(said.contains("exit code 28"), "the stranger's connection times out, it does not {said}");
        Ok(())
    })
    .await
}

/// kubectl on the control plane as root's admin: the same command kthw's own `Kube::exec` runs.
fn kubectl() -> String {
    kthw::bootstrap::Layout::default().kubectl()
}
