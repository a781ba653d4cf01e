//! Every kubeconfig read back by the real `kubectl config view`, and its embedded data by the real `base64`.

use std::io::Write;
use std::process::{Command, Stdio};

use super::*;
use crate::pki::test_tools::{run, verifier_present};

fn decode(b64: &str) -> String {
    let mut child = Command::new("base64")
        .arg("-d")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("coreutils base64");
    child.stdin.take().unwrap().write_all(b64.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "base64 -d rejected {b64:.40}...");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn kubectl_reads_every_kubeconfig_and_each_points_where_the_seed_says() {
    if !verifier_present("kubectl", "kubectl_reads_every_kubeconfig_and_each_points_where_the_seed_says") {
        return;
    }
    let spec = ClusterSpec::default();
    let pki = ClusterPki::generate(&spec).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let configs = all(&spec, &pki).unwrap();
    let paths = write_all(dir.path(), &configs).unwrap();

    let expected = [
        ("admin", "admin", "https://127.0.0.1:6443", "admin"),
        ("admin-internal", "admin", "https://10.0.0.4:6443", "admin"),
        (
            "kube-controller-manager",
            "system:kube-controller-manager",
            "https://127.0.0.1:6443",
            "kube-controller-manager",
        ),
        ("kube-scheduler", "system:kube-scheduler", "https://127.0.0.1:6443", "kube-scheduler"),
        ("kubelet-worker-node-1", "system:node:worker-node-1", "https://10.0.0.4:6443", "kubelet-worker-node-1"),
        ("kubelet-worker-node-2", "system:node:worker-node-2", "https://10.0.0.4:6443", "kubelet-worker-node-2"),
    ];
    assert_eq!(paths.len(), expected.len());
    for ((name, user, server, stem), path) in expected.iter().zip(&paths) {
        assert_eq!(path.file_name().unwrap().to_str().unwrap(), format!("{name}.kubeconfig"));
        let file = path.to_str().unwrap();
        let (ok, out, err) =
            run("kubectl", &["config", "view", "--kubeconfig", file, "--raw", "-o", "json"], dir.path());
        assert!(ok, "kubectl config view {name}: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["current-context"], "default", "{name}");
        assert_eq!(v["contexts"][0]["context"]["user"], *user, "{name}");
        assert_eq!(v["contexts"][0]["context"]["cluster"], CLUSTER_NAME, "{name}");
        assert_eq!(v["users"][0]["name"], *user, "{name}");
        assert_eq!(v["clusters"][0]["cluster"]["server"], *server, "{name} must point where the seed says");
        let data = |x: &serde_json::Value, field: &str| {
            decode(x[field].as_str().unwrap_or_else(|| panic!("{name}: no {field}")))
        };
        let (cluster, creds) = (&v["clusters"][0]["cluster"], &v["users"][0]["user"]);
        assert_eq!(data(cluster, "certificate-authority-data"), pki.ca.cert_pem, "{name}");
        let leaf = pki.leaf(stem).unwrap();
        assert_eq!(data(creds, "client-certificate-data"), leaf.cert_pem, "{name}");
        assert_eq!(data(creds, "client-key-data"), leaf.key_pem, "{name}");

        // kubectl also resolves the context to the same server, the way a client would use it.
        let (ok, server_seen, err) = run(
            "kubectl",
            &["config", "view", "--kubeconfig", file, "--minify", "-o", "jsonpath={.clusters[0].cluster.server}"],
            dir.path(),
        );
        assert!(ok, "{err}");
        assert_eq!(server_seen, *server);
    }
}

#[test]
fn kubeconfigs_are_private_and_none_is_for_kube_proxy() {
    let spec = ClusterSpec::default();
    let pki = ClusterPki::generate(&spec).unwrap();
    let configs = all(&spec, &pki).unwrap();
    assert!(configs.iter().all(|k| !k.name.contains("proxy") && !k.yaml.contains("kube-proxy")));
    let dir = tempfile::tempdir().unwrap();
    for p in write_all(dir.path(), &configs).unwrap() {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600, "{}", p.display());
    }
}

#[test]
fn the_apiserver_port_and_address_follow_the_spec() {
    let mut spec = ClusterSpec::default();
    spec.network.apiserver_port = 7443;
    spec.nodes[0].address = "10.0.0.9".parse().unwrap();
    let pki = ClusterPki::generate(&spec).unwrap();
    let configs = all(&spec, &pki).unwrap();
    let server = |n: &str| configs.iter().find(|k| k.name == n).unwrap().server.clone();
    assert_eq!(server("admin"), "https://127.0.0.1:7443");
    assert_eq!(server("admin-internal"), "https://10.0.0.9:7443");
    assert_eq!(server("kubelet-worker-node-2"), "https://10.0.0.9:7443");
}

#[test]
fn base64_matches_the_standard_alphabet_and_padding() {
    // RFC 4648 test vectors.
    for (plain, enc) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(plain.as_bytes()), enc);
    }
}
