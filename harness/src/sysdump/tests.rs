//! A sysdump read for what kthw can stand up: its files written by hand to exercise the reader, each in the
//! form cilium-cli writes it (file names from cilium/cilium-cli@v0.19.7
//! vendor/github.com/cilium/cilium/cilium-cli/sysdump/constants.go, contents per sysdump.go and k8s/client.go).

use super::*;
use crate::spec::VersionKey;

const TS: &str = "20261207-231500";

/// Written by hand to exercise the reader: k8s.io/apimachinery's `version.Info` as `%#v` prints it.
const VERSION: &str = "version.Info{Major:\"1\", Minor:\"33\", GitVersion:\"v1.33.5\", GitCommit:\"0123\", \
GitTreeState:\"clean\", BuildDate:\"2026-09-10T00:00:00Z\", GoVersion:\"go1.24.6\", Compiler:\"gc\", Platform:\"linux/amd64\"}";

/// Written by hand to exercise the reader: Helm's `get metadata` (pkg/action/get_metadata.go) as YAML.
const METADATA: &str = "name: cilium\nchart: cilium\nversion: 1.18.3\nappVersion: 1.18.3\nnamespace: kube-system\n\
revision: 1\nstatus: deployed\n";

/// Written by hand to exercise the mapping: a reporter's `helm get values` with host-specific values, the
/// pool kthw derives, and values kthw passes on.
const VALUES: &str = "cluster:\n  name: prod-eu\ndevices: ens5\nhubble:\n  relay:\n    enabled: true\nipam:\n  mode: \
cluster-pool\n  operator:\n    clusterPoolIPv4PodCIDRList:\n    - 10.42.0.0/16\n    clusterPoolIPv4MaskSize: 24\n\
k8sServiceHost: 192.168.10.4\nk8sServicePort: 6443\nkubeProxyReplacement: true\n";

/// Written by hand to exercise the reader: a Node list as `kubectl get nodes -o yaml` writes it, trimmed.
const NODES: &str = "apiVersion: v1\nitems:\n- metadata:\n    name: node-a\n  status:\n    nodeInfo:\n      \
kernelVersion: 6.8.0-1019-aws\nkind: List\n";

fn write_dump(dir: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        std::fs::write(dir.join(name.replace("<ts>", TS)), text).unwrap();
    }
}

fn full(dir: &Path) {
    write_dump(
        dir,
        &[
            ("k8s-version-<ts>.txt", VERSION),
            ("cilium-helm-metadata-<ts>.yaml", METADATA),
            ("cilium-helm-values-<ts>.yaml", VALUES),
            ("k8s-nodes-<ts>.yaml", NODES),
            ("cniconf-cilium-x7k2p-05-cilium.conflist-<ts>.txt", "{\"plugins\":[{\"type\":\"cilium-cni\"}]}"),
            ("cniconf-cilium-x7k2p-10-calico.conflist-<ts>.txt", "{\"plugins\":[{\"type\":\"calico\"}]}"),
        ],
    );
}

#[test]
fn a_sysdump_becomes_a_spec_of_its_versions_and_values_and_says_what_it_could_not_carry() {
    let dir = tempfile::tempdir().unwrap();
    full(dir.path());
    assert!(looks_like(dir.path()));
    let dump = Sysdump::read(dir.path()).unwrap();
    assert_eq!((dump.kubernetes.as_str(), dump.cilium.as_str()), ("v1.33.5", "1.18.3"));
    let c = dump.to_spec("repro-prod");
    let v = c.spec.versions.pins();
    assert_eq!((v.kubernetes.as_str(), v.cilium.as_str(), v.cilium_cli.as_str()), ("1.33.5", "1.18.3", "0.19.7"));
    assert_eq!(v.containerd, "2.1.0", "containerd's table recommends 2.1.0+ for 1.33, not the preset's 2.2");
    assert_eq!(c.spec.versions.named.get(&VersionKey::Kubernetes).map(String::as_str), Some("1.33.5"));
    assert_eq!(c.spec.network.pods.to_string(), "10.42.0.0/16");
    assert_eq!(c.spec.cilium.values.get("cluster.name"), Some(&toml::Value::String("prod-eu".into())));
    assert_eq!(c.spec.cilium.values.get("hubble.relay.enabled"), Some(&toml::Value::Boolean(true)));
    let not = c.not_carried.join("\n");
    for said in
        ["devices = \"ens5\"", "k8sServiceHost = \"192.168.10.4\"", "kernel 6.8.0-1019-aws", "10-calico.conflist"]
    {
        assert!(not.contains(said), "{said} is said not carried:\n{not}");
    }
    assert!(!not.contains("05-cilium.conflist"), "Cilium's own CNI configuration is what kthw installs:\n{not}");
    assert!(c.spec.violations().is_empty(), "{:?}", c.spec.violations());
    assert!(ClusterSpec::from_toml_validated(&c.spec.to_effective_toml(), "repro.toml").is_ok(), "writes a valid spec");
}

#[test]
fn a_sysdump_zip_reads_as_its_directory_does() {
    if crate::testing::needs(crate::testing::on_path("zip", "reading a sysdump .zip")).is_none() {
        return;
    }
    if crate::testing::needs(crate::testing::on_path("unzip", "reading a sysdump .zip")).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let inner = dir.path().join(format!("cilium-sysdump-{TS}"));
    std::fs::create_dir(&inner).unwrap();
    full(&inner);
    let zip = dir.path().join(format!("cilium-sysdump-{TS}.zip"));
    let status =
        Command::new("zip").arg("-qr").arg(&zip).arg(inner.file_name().unwrap()).current_dir(dir.path()).status();
    assert!(status.unwrap().success());
    assert!(looks_like(&zip));
    let from_zip = Sysdump::read(&zip).unwrap();
    assert_eq!(Sysdump { path: inner.clone(), ..from_zip }, Sysdump::read(&inner).unwrap());
    let bad = dir.path().join("cut.zip");
    std::fs::write(&bad, b"PK\x03\x04 not really").unwrap();
    assert!(Sysdump::read(&bad).unwrap_err().to_string().contains("is not a zip archive"));
}

#[test]
fn what_is_not_a_sysdump_is_refused_saying_what_was_expected_inside() {
    let dir = tempfile::tempdir().unwrap();
    write_dump(dir.path(), &[("k8s-version-<ts>.txt", VERSION)]);
    let err = Sysdump::read(dir.path()).unwrap_err().to_string();
    assert!(err.contains("is not a cilium sysdump: it holds no cilium-helm-metadata-<ts>.yaml"), "{err}");
    assert!(err.contains("cilium-sysdump-<ts>/"), "{err}");
    write_dump(dir.path(), &[("k8s-version-<ts>.txt", "version.Info{Major:\"1\"}")]);
    write_dump(dir.path(), &[("cilium-helm-metadata-<ts>.yaml", METADATA), ("cilium-helm-values-<ts>.yaml", "")]);
    let err = Sysdump::read(dir.path()).unwrap_err().to_string();
    assert!(err.contains("no GitVersion"), "{err}");
    assert!(!looks_like(&dir.path().join("nothing")));
}
