//! The public test API's Kubernetes half (`kthw::testkit::Kube`) on a whole cluster: a user's multi-document
//! YAML applied server-side, a Deployment waited on until Available, pod logs and exec, a document the
//! apiserver refuses named with its kind, name and message, a condition never reached named with what it last
//! saw, and a delete waited on. Ignored like the rest of the cluster tier; the nightly runs it.

use std::time::Duration;

use kthw::phase::Phase;
use kthw::testkit::{pinned_image, run, Condition, ObjectRef, TestCluster, TestError};
use kthw_tests::{artifacts_dir, host_prerequisite, node_image, test_paths, vm_host_missing};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the pinned upstream artifacts (`kthw artifacts fetch`); the nightly profile runs it"]
async fn a_users_yaml_is_applied_waited_on_and_refused_with_the_apiservers_reason() {
    let Some(()) = host_prerequisite("cluster", vm_host_missing()) else { return };
    let spec = kthw_tests::cluster_spec();
    let set = spec.versions;
    let mut builder = TestCluster::at(Phase::Ready).spec(spec).paths(test_paths()).image(node_image().await);
    if let Some(dir) = artifacts_dir() {
        builder = builder.artifacts_dir(dir);
    }
    run(builder, "testkit_kube_on_a_whole_cluster", async |cluster| {
        let images = ["connectivity-curl"];
        let preloaded =
            cluster.bootstrap().preload(cluster.cluster(), Phase::Ready, &images, &Default::default()).await;
        preloaded.map_err(TestError::other)?;
        let k = cluster.kube().await?;
        let ns = k.namespace("testkit").await?;
        // Alpine with curl, kept running by its own pause (as cilium-cli's connectivity client runs it).
        let image = pinned_image(set, "connectivity-curl");
        let yaml = format!(
            "apiVersion: v1
kind: ConfigMap
metadata: {{name: settings, namespace: {ns}}}
data: {{greeting: hello}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: echo, namespace: {ns}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: echo}}}}
  template:
    metadata: {{labels: {{app: echo}}}}
    spec:
      containers:
      - name: echo
        image: {image}
        command: [/usr/bin/pause]
        imagePullPolicy: IfNotPresent
        env: [{{name: PORT, value: \"8080\"}}]
---
apiVersion: v1
kind: Service
metadata: {{name: echo, namespace: {ns}}}
spec:
  selector: {{app: echo}}
  ports: [{{port: 8080}}]
"
        );
        let applied = k.apply(&yaml).await?;
        let names: Vec<String> = applied.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            names,
            [format!("ConfigMap {ns}/settings"), format!("Deployment {ns}/echo"), format!("Service {ns}/echo")]
        );
        let again = k.apply(&yaml).await?;
        assert_eq!(again, applied, "server-side apply is idempotent");
        k.wait_for(&applied[1], Condition::status("Available")).await?;

        let pods = k.client();
        let listed = kube::Api::<k8s_openapi::api::core::v1::Pod>::namespaced(pods, &ns)
            .list(&kube::api::ListParams::default().labels("app=echo"))
            .await
            .map_err(TestError::other)?;
        let pod = listed.items[0].metadata.name.clone().expect("a pod name");
        k.wait_for(&ObjectRef::pod(&ns, &pod), Condition::PodRunning).await?;
        let _logs = k.logs(&ns, &pod).await?;
        let env = k.exec(&ns, &pod, &["printenv", "PORT"]).await?;
        assert_eq!(env.stdout_lossy().trim(), "8080", "{}", env.summary());

        let refused = k
            .apply(&format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: broken, namespace: {ns}}}\nspec:\n  \
                 template:\n    spec:\n      containers: [{{name: c, image: {image}}}]\n"
            ))
            .await
            .unwrap_err();
        let TestError::Refused { kind, name, message, .. } = &refused else { panic!("{}", kthw::chain(&refused)) };
        assert_eq!((kind.as_str(), name.as_str()), ("Deployment", format!("{ns}/broken").as_str()));
        assert!(message.contains("spec.selector"), "the apiserver's own reason: {message}");

        let never = k
            .wait_for_within(&applied[1], Condition::status("kthw-never"), Duration::from_secs(5))
            .await
            .unwrap_err()
            .to_string();
        assert!(never.contains(&format!("Deployment {ns}/echo kthw-never=True did not happen")), "{never}");
        assert!(never.contains("last seen: no kthw-never condition; conditions: "), "{never}");
        assert!(never.contains("Available=True"), "what it last saw: {never}");

        for gone in k.delete(&yaml).await? {
            k.wait_for(&gone, Condition::Deleted).await?;
        }
        Ok(())
    })
    .await
    .unwrap_or_else(|e| panic!("{}", kthw::chain(&e)));
}
