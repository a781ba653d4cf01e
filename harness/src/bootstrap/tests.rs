//! What the rendered units and configs say, read back the way their consumers read them.

use super::configs::*;
use super::node_files::*;
use super::units::*;
use super::*;
use crate::accel::Accel;
use crate::spec::ClusterSpec;

/// The ExecStart flags of a unit, as `--name=value` pairs, joined across continuation lines.
fn exec_flags(unit: &str) -> Vec<(String, String)> {
    let exec = unit.split("ExecStart=").nth(1).expect("an ExecStart line");
    let exec: String = exec.lines().take_while(|l| !l.starts_with("Restart=")).collect::<Vec<_>>().join(" ");
    exec.split_whitespace()
        .filter_map(|w| w.strip_prefix("--"))
        .map(|f| {
            let (k, v) = f.split_once('=').expect("every flag has a value");
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn flag(unit: &str, name: &str) -> Option<String> {
    exec_flags(unit).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

fn all_rendered(spec: &ClusterSpec) -> Vec<NodeFile> {
    let layout = Layout::default();
    let mut files = etcd_files(spec, &layout, Accel::Kvm);
    files.extend(control_plane_files(spec, &layout, Accel::Kvm));
    for w in spec.workers() {
        files.extend(worker_files(spec, &w.name, &layout, "registry.k8s.io/pause:3.10"));
    }
    files
}

#[test]
fn controller_manager_cluster_cidr_is_ciliums_pool() {
    let spec = ClusterSpec::default();
    let unit = kube_controller_manager_unit(&spec, &Layout::default());
    let pool = &spec.derived().cilium_values["ipam.operator.clusterPoolIPv4PodCIDRList"];
    assert_eq!(flag(&unit, "cluster-cidr").as_ref(), Some(pool));
    // One allocator: Cilium's cluster-pool IPAM, not the controller manager too (see spec::derive).
    assert_eq!(flag(&unit, "allocate-node-cidrs").as_deref(), Some("false"));
    assert_eq!(flag(&unit, "node-cidr-mask-size").as_deref(), Some("24"));
    assert_eq!(flag(&unit, "service-cluster-ip-range").as_deref(), Some("10.32.0.0/24"));
    assert_eq!(flag(&unit, "kubeconfig").as_deref(), Some("/etc/kubernetes/kube-controller-manager.kubeconfig"));
}

#[test]
fn nothing_rendered_mentions_kube_proxy() {
    let files = all_rendered(&ClusterSpec::default());
    assert!(files.len() >= 9);
    for f in &files {
        assert!(!f.contents.contains("proxy"), "{} mentions a proxy:\n{}", f.path.display(), f.contents);
        assert!(!f.path.to_string_lossy().contains("proxy"));
    }
}

#[test]
fn etcd_serves_tls_on_loopback_only_from_the_chosen_binary() {
    let mut spec = ClusterSpec::default();
    let layout = Layout::default();
    let unit = etcd_unit(&spec, &layout, Accel::Kvm);
    assert!(unit.contains("ExecStart=/usr/local/bin/etcd \\\n"), "{unit}");
    // Clients on loopback only: etcd trusts the whole cluster CA, and its one client shares the node.
    assert_eq!(flag(&unit, "listen-client-urls").as_deref(), Some("https://127.0.0.1:2379"));
    assert_eq!(flag(&unit, "advertise-client-urls").as_deref(), Some("https://127.0.0.1:2379"));
    // One member: its peer port is on loopback only (as Kubernetes the hard way's units/etcd.service).
    assert_eq!(flag(&unit, "listen-peer-urls").as_deref(), Some("https://127.0.0.1:2380"));
    assert_eq!(flag(&unit, "initial-advertise-peer-urls").as_deref(), Some("https://127.0.0.1:2380"));
    assert_eq!(flag(&unit, "client-cert-auth").as_deref(), Some("true"));
    assert_eq!(flag(&unit, "cert-file").as_deref(), Some("/etc/kubernetes/pki/etcd-server.crt"));
    assert_eq!(flag(&unit, "trusted-ca-file").as_deref(), Some("/etc/kubernetes/pki/ca.crt"));
    assert_eq!(flag(&unit, "initial-cluster").as_deref(), Some("control-plane-1=https://127.0.0.1:2380"));
    assert!(unit.contains("Type=notify"));

    spec.etcd_from = crate::spec::Origin::Debian;
    assert!(etcd_unit(&spec, &layout, Accel::Kvm).contains("ExecStart=/usr/bin/etcd \\\n"));
}

#[test]
fn etcds_loopback_urls_are_names_its_certificates_carry() {
    // Peers on 127.0.0.1 (and clients there too, once spec::derive moves them): the etcd-peer and
    // etcd-server certificates must name loopback, or TLS fails between etcd and itself or the apiserver.
    let spec = ClusterSpec::default();
    let loopback = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    for stem in ["etcd-peer", "etcd-server"] {
        let p = crate::pki::profiles(&spec).into_iter().find(|p| p.stem == stem).unwrap();
        assert!(p.ip_addresses.contains(&loopback), "{stem}: {:?}", p.ip_addresses);
    }
}

#[test]
fn apiserver_uses_the_spec_service_range_and_etcd_on_loopback() {
    let spec = ClusterSpec::default();
    let unit = kube_apiserver_unit(&spec, &Layout::default(), Accel::Kvm);
    assert_eq!(flag(&unit, "service-cluster-ip-range").as_deref(), Some("10.32.0.0/24"));
    assert_eq!(flag(&unit, "etcd-servers").as_deref(), Some("https://127.0.0.1:2379"));
    assert_eq!(flag(&unit, "advertise-address").as_deref(), Some("10.0.0.4"));
    assert_eq!(flag(&unit, "secure-port").as_deref(), Some("6443"));
    assert_eq!(flag(&unit, "service-account-key-file").as_deref(), Some("/etc/kubernetes/pki/service-account.pub"));
    assert_eq!(flag(&unit, "etcd-certfile").as_deref(), Some("/etc/kubernetes/pki/etcd-client.crt"));
    // Left at kube-apiserver's default (Hostname first) unless the spec asks: the seed's DNS lesson.
    assert_eq!(flag(&unit, "kubelet-preferred-address-types"), None);
}

#[test]
fn extra_component_flags_are_appended() {
    let mut spec = ClusterSpec::default();
    spec.components
        .kube_apiserver
        .insert("kubelet-preferred-address-types".to_string(), "InternalIP,Hostname".to_string());
    spec.components.kubelet.insert("node-labels".to_string(), "role=worker".to_string());
    spec.components.etcd.insert("quota-backend-bytes".to_string(), "8589934592".to_string());
    let layout = Layout::default();
    let api = kube_apiserver_unit(&spec, &layout, Accel::Kvm);
    assert_eq!(flag(&api, "kubelet-preferred-address-types").as_deref(), Some("InternalIP,Hostname"));
    assert_eq!(flag(&kubelet_unit(&spec, "worker-node-1", &layout), "node-labels").as_deref(), Some("role=worker"));
    assert_eq!(flag(&etcd_unit(&spec, &layout, Accel::Kvm), "quota-backend-bytes").as_deref(), Some("8589934592"));
}

#[test]
fn kubelet_config_carries_the_spec_cluster_dns_and_its_own_certificate() {
    let spec = ClusterSpec::default();
    let layout = Layout::default();
    let v: serde_json::Value = serde_json::from_str(&kubelet_config(&spec, "worker-node-2", &layout)).unwrap();
    assert_eq!(v["kind"], "KubeletConfiguration");
    assert_eq!(v["clusterDNS"], serde_json::json!([spec.network.cluster_dns.to_string()]));
    assert_eq!(v["clusterDomain"], "cluster.local");
    assert_eq!(v["cgroupDriver"], "systemd");
    assert_eq!(v["tlsCertFile"], "/etc/kubernetes/pki/kubelet-worker-node-2.crt");
    assert_eq!(v["authentication"]["x509"]["clientCAFile"], "/etc/kubernetes/pki/ca.crt");
    assert_eq!(v["containerRuntimeEndpoint"], "unix:///run/containerd/containerd.sock");
    // The image runs systemd-resolved: pods get its upstream list, not the 127.0.0.53 stub (Kubernetes'
    // DNS debugging guide, "Known issues").
    assert_eq!(v["resolvConf"], "/run/systemd/resolve/resolv.conf");
    assert!(images_debian("packages.txt").lines().any(|l| l.trim() == "systemd-resolved"));

    let unit = kubelet_unit(&spec, "worker-node-2", &layout);
    assert_eq!(flag(&unit, "kubeconfig").as_deref(), Some("/etc/kubernetes/kubelet-worker-node-2.kubeconfig"));
    assert_eq!(flag(&unit, "cluster-dns"), None, "DNS is set in the config file, once");
    assert_eq!(flag(&unit, "node-ip").as_deref(), Some("10.0.0.6"), "the InternalIP is the cluster address");
    assert!(unit.contains("Requires=containerd.service"));
}

#[test]
fn scheduler_config_points_at_its_kubeconfig() {
    let v: serde_json::Value = serde_json::from_str(&kube_scheduler_config(&Layout::default())).unwrap();
    assert_eq!(v["kind"], "KubeSchedulerConfiguration");
    assert_eq!(v["clientConnection"]["kubeconfig"], "/etc/kubernetes/kube-scheduler.kubeconfig");
    let unit = kube_scheduler_unit(&ClusterSpec::default(), &Layout::default());
    assert_eq!(flag(&unit, "config").as_deref(), Some("/etc/kubernetes/kube-scheduler.yaml"));
}

#[test]
fn units_are_well_formed_and_escape_systemd_specifiers() {
    let mut spec = ClusterSpec::default();
    spec.components.etcd.insert("log-format".to_string(), "100%$HOME".to_string());
    for f in all_rendered(&spec).iter().filter(|f| f.path.extension().is_some_and(|e| e == "service")) {
        let sections: Vec<&str> = f.contents.lines().filter(|l| l.starts_with('[')).collect();
        assert_eq!(sections, ["[Unit]", "[Service]", "[Install]"], "{}", f.path.display());
        for line in f.contents.lines().filter(|l| !l.is_empty() && !l.starts_with('[')) {
            assert!(line.contains('=') || line.starts_with("  --"), "{}: stray line {line:?}", f.path.display());
        }
        let exec =
            f.contents.lines().skip_while(|l| !l.starts_with("ExecStart=")).take_while(|l| !l.starts_with("Restart="));
        let exec: Vec<&str> = exec.collect();
        assert!(exec[..exec.len() - 1].iter().all(|l| l.ends_with(" \\")), "continuations: {exec:?}");
    }
    let etcd = etcd_unit(&spec, &Layout::default(), Accel::Kvm);
    assert_eq!(flag(&etcd, "log-format").as_deref(), Some("100%%$$HOME"));
}

/// A file of the node image recipe, read at test time (the recipe is data, not compiled in).
pub(super) fn images_debian(path: &str) -> String {
    let p = crate::testing::workspace_dir().join("images/debian").join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn every_kubelet_registers_its_own_cluster_address() {
    let spec = ClusterSpec::default();
    for w in spec.workers() {
        let unit = kubelet_unit(&spec, &w.name, &Layout::default());
        assert_eq!(flag(&unit, "node-ip"), Some(w.address.to_string()), "{}", w.name);
    }
}

#[test]
fn notify_units_wait_for_readiness_as_long_as_the_accelerator_needs() {
    let spec = ClusterSpec::default();
    let layout = Layout::default();
    // systemd's compiled-in default, which Debian's /etc/systemd/system.conf shows commented out.
    assert_eq!(SYSTEMD_DEFAULT_START_TIMEOUT.as_secs(), 90);
    for (accel, secs) in [(Accel::Kvm, 90), (Accel::Tcg, 90 * u64::from(Accel::Tcg.slowdown()))] {
        assert_eq!(start_timeout(accel).as_secs(), secs);
        let line = format!("TimeoutStartSec={secs}\n");
        assert!(etcd_unit(&spec, &layout, accel).contains(&line), "etcd under {accel:?}");
        assert!(kube_apiserver_unit(&spec, &layout, accel).contains(&line), "apiserver under {accel:?}");
        assert!(containerd_unit(&layout, accel, "v1.7.27").contains(&line), "containerd under {accel:?}");
    }
    for simple in [
        kube_controller_manager_unit(&spec, &layout),
        kube_scheduler_unit(&spec, &layout),
        kubelet_unit(&spec, "worker-node-1", &layout),
    ] {
        assert!(simple.contains("Type=simple") && !simple.contains("TimeoutStartSec"), "{simple}");
    }
}

#[test]
fn upstream_containerd_runs_as_its_release_unit_says() {
    let unit = containerd_unit(&Layout::default(), Accel::Kvm, "v1.7.27");
    // containerd/containerd containerd.service at tag v1.7.27.
    let common = [
        "ExecStartPre=-/sbin/modprobe overlay",
        "ExecStart=/usr/local/bin/containerd",
        "Type=notify",
        "Delegate=yes",
        "KillMode=process",
        "Restart=always",
        "RestartSec=5",
        "LimitNPROC=infinity",
        "LimitCORE=infinity",
        "TasksMax=infinity",
        "OOMScoreAdjust=-999",
        "WantedBy=multi-user.target",
    ];
    for line in common.iter().chain(&["LimitNOFILE=infinity", "After=network.target local-fs.target dbus.service"]) {
        assert!(unit.lines().any(|l| l == *line), "missing {line:?}:\n{unit}");
    }
    // containerd.service at tag v2.2.7: the same, less LimitNOFILE (commit 3ca39ef01, first in v2.0.0) and
    // local-fs.target.
    let unit = containerd_unit(&Layout::default(), Accel::Kvm, "v2.2.7");
    for line in common.iter().chain(&["After=network.target dbus.service"]) {
        assert!(unit.lines().any(|l| l == *line), "missing {line:?}:\n{unit}");
    }
    assert!(!unit.contains("LimitNOFILE"), "{unit}");
    // The harness renders the unit for the containerd each set pins.
    let m = crate::artifacts::Manifest::pinned();
    let pinned = |set| m.for_set(set).get("containerd").unwrap().upstream_version.clone();
    assert_eq!(pinned(crate::spec::VersionSet::Seed), "v1.7.27");
    assert_eq!(pinned(crate::spec::VersionSet::Current), "v2.2.7");
}

#[test]
fn the_image_and_the_workers_phase_name_the_same_pinned_sandbox_image() {
    let pause = crate::artifacts::Manifest::pinned().get("pause").unwrap().locator().to_string();
    assert_eq!(pause, "registry.k8s.io/pause:3.10");
    let baked: toml::Value = toml::from_str(&images_debian("files/etc/containerd/config.toml")).unwrap();
    assert_eq!(baked["plugins"]["io.containerd.grpc.v1.cri"]["sandbox_image"].as_str(), Some(pause.as_str()));
}

/// Each Kubernetes minor kthw runs, 1.30 to 1.35, against the flags the CHANGELOGs say it removed
/// (`spec::support::REMOVED_FLAGS`): what we render for each component is the same set at every minor, and
/// none of it is gone by then. The one per-minor difference the same CHANGELOGs name in what we render is a
/// default, not a flag: the kubelet's `failCgroupV1` (nodecheck reads it per minor).
#[test]
fn every_flag_we_render_is_one_each_kubernetes_minor_still_has() {
    use crate::spec::support::REMOVED_FLAGS;
    use crate::spec::{Component, VersionKey, VersionSet, VersionSpec};
    let layout = Layout::default();
    let mut per_minor = Vec::new();
    for minor in 30..=35 {
        let mut versions = VersionSpec::from(VersionSet::Seed);
        versions.named.insert(VersionKey::Kubernetes, format!("1.{minor}.0"));
        let spec = ClusterSpec { versions, ..ClusterSpec::default() };
        let units = [
            (Component::KubeApiserver, kube_apiserver_unit(&spec, &layout, Accel::Kvm)),
            (Component::KubeControllerManager, kube_controller_manager_unit(&spec, &layout)),
            (Component::KubeScheduler, kube_scheduler_unit(&spec, &layout)),
            (Component::Kubelet, kubelet_unit(&spec, "worker-node-1", &layout)),
        ];
        for (component, unit) in &units {
            for (name, _) in exec_flags(unit) {
                let gone = REMOVED_FLAGS
                    .iter()
                    .find(|r| r.component == *component && r.flag == name && r.removed_in <= (1, minor));
                assert!(gone.is_none(), "1.{minor} {} has no --{name}: {}", component.name(), gone.unwrap().source.at);
            }
        }
        per_minor.push(units.map(|(c, u)| (c, exec_flags(&u).into_iter().map(|(k, _)| k).collect::<Vec<_>>())));
    }
    assert!(per_minor.windows(2).all(|w| w[0] == w[1]), "the rendered flag names do not depend on the minor");
}
