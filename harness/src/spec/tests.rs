use std::net::Ipv4Addr;

use proptest::prelude::*;
use rstest::rstest;

use super::*;

fn invalid(text: &str) -> Vec<ViolationKind> {
    match ClusterSpec::from_toml_validated(text, "test.toml") {
        Err(SpecError::Invalid { violations, .. }) => violations.into_iter().map(|v| v.kind).collect(),
        other => panic!("expected violations for\n{text}\ngot {other:?}"),
    }
}

#[test]
fn default_is_the_seed_cluster_field_by_field() {
    let s = ClusterSpec::default();
    let names: Vec<_> = s.nodes.iter().map(|n| (n.name.as_str(), n.role, n.address)).collect();
    assert_eq!(
        names,
        [
            ("control-plane-1", Role::ControlPlane, Ipv4Addr::new(10, 0, 0, 4)),
            ("worker-node-1", Role::Worker, Ipv4Addr::new(10, 0, 0, 5)),
            ("worker-node-2", Role::Worker, Ipv4Addr::new(10, 0, 0, 6)),
        ]
    );
    assert_eq!(s.network.nodes.to_string(), "10.0.0.0/24");
    assert_eq!(s.network.pods.to_string(), "10.200.0.0/16");
    assert_eq!(s.network.pod_mask_size, 24);
    assert_eq!(s.network.services.to_string(), "10.32.0.0/24");
    assert_eq!(s.network.apiserver_service_ip, Ipv4Addr::new(10, 32, 0, 1));
    assert_eq!(s.network.cluster_dns, Ipv4Addr::new(10, 32, 0, 10));
    assert_eq!(s.network.apiserver_port, 6443);
    assert!(s.cilium.kube_proxy_replacement);
    assert_eq!(s.cilium.status_wait, std::time::Duration::from_secs(180));
    assert!(!s.egress, "tests run without egress unless a spec asks for it");
    assert!(s.resolve_node_names);
    assert_eq!(s.control_plane().name, "control-plane-1");
    assert!(s.violations().is_empty(), "{:?}", s.violations());

    let d = s.derived();
    let want = [
        ("kubeProxyReplacement", "true"),
        ("k8sServiceHost", "10.0.0.4"),
        ("k8sServicePort", "6443"),
        ("ipam.mode", "cluster-pool"),
        ("ipam.operator.clusterPoolIPv4PodCIDRList", "10.200.0.0/16"),
        ("ipam.operator.clusterPoolIPv4MaskSize", "24"),
    ];
    for (k, val) in want {
        assert_eq!(d.cilium_values.get(k).map(String::as_str), Some(val), "cilium value {k}");
    }
    assert_eq!(d.cilium_values.len(), want.len());
    let kcm = &d.flags["kube-controller-manager"];
    assert_eq!(kcm["cluster-cidr"], d.cilium_values["ipam.operator.clusterPoolIPv4PodCIDRList"]);
    assert_eq!(d.flags["kube-apiserver"]["service-cluster-ip-range"], "10.32.0.0/24");
    assert_eq!(d.flags["kubelet"]["cluster-dns"], "10.32.0.10");
    assert_eq!(d.pod_blocks, 256);
}

#[test]
fn a_partial_file_keeps_every_other_default() {
    let s = ClusterSpec::from_toml_validated("egress = true\n[network]\napiserver_port = 7443\n", "t").unwrap();
    let mut want = ClusterSpec { egress: true, ..ClusterSpec::default() };
    want.network.apiserver_port = 7443;
    assert_eq!(s, want);
    assert_eq!(s.derived().cilium_values["k8sServicePort"], "7443");
}

#[test]
fn nodes_without_resources_get_the_defaults() {
    let s = ClusterSpec::from_toml_validated(
        "[[nodes]]\nname = \"cp\"\nrole = \"control-plane\"\naddress = \"10.0.0.10\"\n\
         [[nodes]]\nname = \"w\"\nrole = \"worker\"\naddress = \"10.0.0.11\"\nmemory_mib = 1024\n",
        "t",
    )
    .unwrap();
    assert_eq!(s.nodes[0].vcpus, 2);
    assert_eq!(s.nodes[0].memory_mib, 2048);
    assert_eq!(s.nodes[1].memory_mib, 1024);
    assert_eq!(s.derived().cilium_values["k8sServiceHost"], "10.0.0.10");
}

#[test]
fn unknown_fields_are_errors_with_line_and_column() {
    let err = ClusterSpec::from_toml("egress = false\n[network]\npod = \"10.1.0.0/16\"\n", "typo.toml").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, SpecError::Parse { location: Some(Location { line: 3, column: 1 }), .. }), "{err:?}");
    assert!(msg.starts_with("typo.toml:3:1: network.pod = \"10.1.0.0/16\": unknown field `pod`"), "{msg}");
    assert!(msg.contains("pods"), "the message lists the valid fields: {msg}");
}

#[test]
fn violations_from_a_file_carry_line_and_column() {
    let text = "[network]\npods = \"10.200.0.0/16\"\n\n[cilium.values]\n\"ipam.operator.clusterPoolIPv4PodCIDRList\" = \"10.100.0.0/16\"\n";
    let err = ClusterSpec::from_toml_validated(text, "pool.toml").unwrap_err();
    let v = &err.violations()[0];
    assert_eq!(v.location, Some(Location { line: 5, column: 46 }));
    let msg = err.to_string();
    assert!(msg.contains("line 5, column 46"), "{msg}");
    assert!(msg.contains("10.100.0.0/16") && msg.contains("10.200.0.0/16") && msg.contains("network.pods"), "{msg}");
}

#[test]
fn a_value_equal_to_the_derived_one_is_accepted() {
    // Written by hand to exercise a value that agrees with the derived one.
    let text = "[cilium.values]\n\"ipam.operator.clusterPoolIPv4PodCIDRList\" = [\"10.200.0.0/16\"]\nkubeProxyReplacement = true\n\"hubble.enabled\" = false\n\
                [components.kube-controller-manager]\n\"cluster-cidr\" = \"10.200.0.0/16\"\nv = \"2\"\n";
    let s = ClusterSpec::from_toml_validated(text, "t").unwrap();
    let d = s.derived();
    assert_eq!(d.cilium_values["hubble.enabled"], "false");
    assert_eq!(d.flags["kube-controller-manager"]["v"], "2");
}

#[test]
fn effective_toml_shows_spec_and_derived_values_and_reads_back() {
    let s = ClusterSpec::default();
    let text = s.to_effective_toml();
    for needle in [
        "[derived.cilium_values]",
        "\"ipam.operator.clusterPoolIPv4PodCIDRList\" = \"10.200.0.0/16\"",
        "k8sServiceHost = \"10.0.0.4\"",
        "[derived.flags.kube-controller-manager]",
        "cluster-cidr = \"10.200.0.0/16\"",
        "status_wait = \"180s\"",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    // The spec part alone is a valid spec file equal to the original.
    let spec_part = text.split("[derived").next().unwrap();
    assert_eq!(ClusterSpec::from_toml_validated(spec_part, "t").unwrap(), s);
}

const CP: &str = "[[nodes]]\nname = \"control-plane-1\"\nrole = \"control-plane\"\naddress = \"10.0.0.4\"\n";
const W1: &str = "[[nodes]]\nname = \"worker-node-1\"\nrole = \"worker\"\naddress = \"10.0.0.5\"\n";

#[rstest]
#[case::duplicate_name(
    format!("{CP}{W1}[[nodes]]\nname = \"worker-node-1\"\nrole = \"worker\"\naddress = \"10.0.0.6\"\n"),
    |k: &ViolationKind| matches!(k, ViolationKind::DuplicateNodeName { name } if name == "worker-node-1"))]
#[case::uppercase_name(
    format!("{CP}[[nodes]]\nname = \"Worker1\"\nrole = \"worker\"\naddress = \"10.0.0.5\"\n"),
    |k: &ViolationKind| matches!(k, ViolationKind::InvalidNodeName { name, .. } if name == "Worker1"))]
#[case::name_with_dot(
    format!("{CP}[[nodes]]\nname = \"w.1\"\nrole = \"worker\"\naddress = \"10.0.0.5\"\n"),
    |k: &ViolationKind| matches!(k, ViolationKind::InvalidNodeName { .. }))]
#[case::no_control_plane(
    W1.to_string(),
    |k: &ViolationKind| matches!(k, ViolationKind::ControlPlaneCount { names } if names.is_empty()))]
#[case::two_control_planes(
    format!("{CP}{W1}[[nodes]]\nname = \"cp2\"\nrole = \"control-plane\"\naddress = \"10.0.0.7\"\n"),
    |k: &ViolationKind| matches!(k, ViolationKind::ControlPlaneCount { names } if names.len() == 2))]
#[case::no_worker(
    CP.to_string(),
    |k: &ViolationKind| matches!(k, ViolationKind::NoWorkers))]
#[case::duplicate_address(
    format!("{CP}[[nodes]]\nname = \"w\"\nrole = \"worker\"\naddress = \"10.0.0.4\"\n"),
    |k: &ViolationKind| matches!(k, ViolationKind::DuplicateAddress { first, second, .. } if first == "control-plane-1" && second == "w"))]
#[case::address_outside(
    format!("{CP}[[nodes]]\nname = \"w\"\nrole = \"worker\"\naddress = \"192.168.1.5\"\n"),
    |k: &ViolationKind| matches!(k, ViolationKind::AddressOutsideNodeNetwork { .. }))]
#[case::network_address(
    format!("{CP}[[nodes]]\nname = \"w\"\nrole = \"worker\"\naddress = \"10.0.0.0\"\n"),
    |k: &ViolationKind| matches!(k, ViolationKind::AddressNotAHost { which: "network", .. }))]
#[case::broadcast_address(
    format!("{CP}[[nodes]]\nname = \"w\"\nrole = \"worker\"\naddress = \"10.0.0.255\"\n"),
    |k: &ViolationKind| matches!(k, ViolationKind::AddressNotAHost { which: "broadcast", .. }))]
#[case::pods_overlap_nodes(
    "[network]\npods = \"10.0.0.0/8\"\n".to_string(),
    |k: &ViolationKind| matches!(k, ViolationKind::NetworksOverlap { first_field: "network.nodes", second_field: "network.pods", .. }))]
#[case::services_inside_pods(
    "[network]\nservices = \"10.200.5.0/24\"\napiserver_service_ip = \"10.200.5.1\"\ncluster_dns = \"10.200.5.10\"\n".to_string(),
    |k: &ViolationKind| matches!(k, ViolationKind::NetworksOverlap { first_field: "network.pods", second_field: "network.services", .. }))]
#[case::mask_not_longer_than_pool(
    "[network]\npod_mask_size = 16\n".to_string(),
    |k: &ViolationKind| matches!(k, ViolationKind::MaskSizeNotInsidePool { mask: 16, .. }))]
#[case::too_few_blocks(
    "[network]\npods = \"10.200.0.0/23\"\npod_mask_size = 24\n".to_string(),
    |k: &ViolationKind| matches!(k, ViolationKind::TooFewPodBlocks { blocks: 2, nodes: 3, .. }))]
#[case::dns_outside_services(
    "[network]\ncluster_dns = \"10.33.0.10\"\n".to_string(),
    |k: &ViolationKind| matches!(k, ViolationKind::ServiceIpOutside { .. }))]
#[case::apiserver_ip_not_first(
    "[network]\napiserver_service_ip = \"10.32.0.2\"\n".to_string(),
    |k: &ViolationKind| matches!(k, ViolationKind::ApiserverServiceIpNotFirst { .. }))]
#[case::dns_equals_apiserver_ip(
    "[network]\ncluster_dns = \"10.32.0.1\"\n".to_string(),
    |k: &ViolationKind| matches!(k, ViolationKind::ClusterDnsIsApiserverIp { .. }))]
#[case::pool_value_contradicts(
    "[cilium.values]\n\"ipam.operator.clusterPoolIPv4PodCIDRList\" = \"10.100.0.0/16\"\n".to_string(),
    |k: &ViolationKind| matches!(k, ViolationKind::CiliumValueContradicts { given, derived, from: "network.pods", .. } if given == "10.100.0.0/16" && derived == "10.200.0.0/16"))]
#[case::service_host_contradicts(
    "[cilium.values]\nk8sServiceHost = \"10.0.0.9\"\n".to_string(),
    |k: &ViolationKind| matches!(k, ViolationKind::CiliumValueContradicts { key, derived, .. } if key == "k8sServiceHost" && derived == "10.0.0.4"))]
#[case::service_port_contradicts(
    "[cilium.values]\nk8sServicePort = 443\n".to_string(),
    |k: &ViolationKind| matches!(k, ViolationKind::CiliumValueContradicts { key, .. } if key == "k8sServicePort"))]
#[case::kube_proxy_replacement_contradicts(
    "[cilium.values]\nkubeProxyReplacement = false\n".to_string(),
    |k: &ViolationKind| matches!(k, ViolationKind::CiliumValueContradicts { key, .. } if key == "kubeProxyReplacement"))]
#[case::ipam_mode_contradicts(
    "[cilium.values]\n\"ipam.mode\" = \"kubernetes\"\n".to_string(),
    |k: &ViolationKind| matches!(k, ViolationKind::CiliumValueContradicts { key, .. } if key == "ipam.mode"))]
#[case::cluster_cidr_flag_contradicts(
    "[components.kube-controller-manager]\n\"cluster-cidr\" = \"10.100.0.0/16\"\n".to_string(),
    |k: &ViolationKind| matches!(k, ViolationKind::ComponentFlagContradicts { component: "kube-controller-manager", flag, .. } if flag == "cluster-cidr"))]
#[case::secure_port_flag_contradicts(
    "[components.kube-apiserver]\n\"secure-port\" = \"443\"\n".to_string(),
    |k: &ViolationKind| matches!(k, ViolationKind::ComponentFlagContradicts { component: "kube-apiserver", from: "network.apiserver_port", .. }))]
#[case::flag_with_dashes(
    "[components.kubelet]\n\"--v\" = \"2\"\n".to_string(),
    |k: &ViolationKind| matches!(k, ViolationKind::MalformedFlag { component: "kubelet", .. }))]
#[case::tiny_memory(
    format!("{CP}memory_mib = 128\n{W1}"),
    |k: &ViolationKind| matches!(k, ViolationKind::TooSmall { what: "memory_mib", value: 128, .. }))]
#[case::zero_vcpus(
    format!("{CP}vcpus = 0\n{W1}"),
    |k: &ViolationKind| matches!(k, ViolationKind::TooSmall { what: "vcpus", value: 0, .. }))]
#[case::node_network_too_small(
    "[network]\nnodes = \"10.0.0.4/31\"\n".to_string(),
    |k: &ViolationKind| matches!(k, ViolationKind::NodeNetworkTooSmall { .. }))]
#[case::no_nodes(
    "nodes = []\n".to_string(),
    |k: &ViolationKind| matches!(k, ViolationKind::NoNodes))]
fn invalid_specs_are_rejected_with_their_own_error(#[case] text: String, #[case] expected: fn(&ViolationKind) -> bool) {
    let kinds = invalid(&text);
    assert!(kinds.iter().any(expected), "expected violation not among {kinds:#?}\nfor:\n{text}");
    for k in &kinds {
        assert!(!k.to_string().is_empty());
    }
}

#[rstest]
#[case::wrong_type("egress = \"yes\"\n", 1)]
#[case::bad_cidr("[network]\npods = \"10.200.0.0/33\"\n", 2)]
#[case::bad_address("[[nodes]]\nname = \"a\"\nrole = \"worker\"\naddress = \"10.0.0\"\n", 4)]
#[case::bad_role("[[nodes]]\nname = \"a\"\nrole = \"master\"\naddress = \"10.0.0.5\"\n", 3)]
#[case::bad_duration("[cilium]\nstatus_wait = \"3 minutes\"\n", 2)]
#[case::unknown_etcd_source("etcd_from = \"apt\"\n", 1)]
#[case::missing_node_address("[[nodes]]\nname = \"a\"\nrole = \"worker\"\n", 1)]
fn malformed_files_are_parse_errors_at_their_line(#[case] text: &str, #[case] line: usize) {
    match ClusterSpec::from_toml(text, "f.toml") {
        Err(SpecError::Parse { location: Some(l), message, .. }) => {
            assert_eq!(l.line, line, "{message}");
            assert!(!message.is_empty());
        }
        other => panic!("expected a parse error for {text:?}, got {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        let _ = ClusterSpec::from_toml_validated(&text, "fuzz");
    }

    #[test]
    fn arbitrary_values_in_valid_shape_never_panic(
        pods in (any::<[u8; 4]>(), 0u8..=32), mask in any::<u8>(),
        nodes in (any::<[u8; 4]>(), 0u8..=32), services in (any::<[u8; 4]>(), 0u8..=32),
        addrs in proptest::collection::vec((any::<[u8; 4]>(), "[a-zA-Z0-9.-]{0,70}", any::<bool>(), 0u32..10_000), 0..6),
        port in any::<u16>(), key in "[a-zA-Z.]{0,30}", val in "\\PC{0,20}",
    ) {
        let ip = |o: [u8; 4]| Ipv4Addr::from(o).to_string();
        let mut text = format!(
            "[network]\npods = \"{}/{}\"\npod_mask_size = {mask}\nnodes = \"{}/{}\"\nservices = \"{}/{}\"\napiserver_port = {port}\n",
            ip(pods.0), pods.1, ip(nodes.0), nodes.1, ip(services.0), services.1);
        text.push_str(&format!("[cilium.values]\n{:?} = {:?}\n", key, val));
        for (a, name, cp, mem) in addrs {
            let role = if cp { "control-plane" } else { "worker" };
            text.push_str(&format!("[[nodes]]\nname = {name:?}\nrole = \"{role}\"\naddress = \"{}\"\nmemory_mib = {mem}\n", ip(a)));
        }
        if let Ok(spec) = ClusterSpec::from_toml_validated(&text, "fuzz") {
            // Whatever validates must be usable by everything downstream.
            let _ = spec.derived();
            let _ = spec.to_effective_toml();
            prop_assert_eq!(spec.nodes.iter().filter(|n| n.role == Role::ControlPlane).count(), 1);
        }
    }
}

#[rstest]
#[case::cidr("[network]\npods = \"10.200.0.0/33\"\n", "network.pods = \"10.200.0.0/33\"")]
#[case::second_node(
    "[[nodes]]\nname = \"cp\"\nrole = \"control-plane\"\naddress = \"10.0.0.4\"\n\n\
     [[nodes]]\nname = \"w\"\nrole = \"worker\"\naddress = \"10.0.0.256\"\n",
    "nodes[1].address = \"10.0.0.256\""
)]
#[case::top_level("egress = \"yes\"\n", "egress = \"yes\"")]
fn a_value_that_does_not_parse_is_named_with_its_field(#[case] text: &str, #[case] named: &str) {
    let err = ClusterSpec::from_toml(text, "lab.toml").unwrap_err().to_string();
    assert!(err.contains(named), "{err}");
    assert!(err.starts_with("lab.toml:"), "{err}");
}

#[test]
fn what_spec_show_prints_is_itself_a_valid_spec_of_the_same_cluster() {
    let mut spec = ClusterSpec::default();
    spec.network.pods = "10.244.0.0/16".parse().unwrap();
    spec.cilium.values.insert("hubble.enabled".into(), "true".into());
    let shown = spec.to_effective_toml();
    assert!(shown.contains("# \"ipam.operator.clusterPoolIPv4PodCIDRList\" = \"10.244.0.0/16\""), "{shown}");
    assert!(!shown.lines().any(|l| l.trim() == "[derived]"), "derived values are comments, not a table:\n{shown}");
    let back = ClusterSpec::from_toml_validated(&shown, "shown.toml").unwrap_or_else(|e| panic!("{e}\n{shown}"));
    assert_eq!(back, spec);
}

#[test]
fn a_spec_selects_a_version_set_by_name_and_the_default_is_the_seeds() {
    assert_eq!(ClusterSpec::default().versions, VersionSet::Seed.into());
    assert_eq!(ClusterSpec::default().versions.pins().kubernetes, "1.32.4");
    let current = ClusterSpec::from_toml_validated("versions = \"current\"\n", "lab.toml").unwrap();
    assert_eq!(current.versions, VersionSet::Current.into());
    assert_ne!(current.versions.pins(), VersionSet::Seed.pins());
    // `kthw spec show` writes the set back as its name.
    assert!(current.to_effective_toml().contains("versions = \"current\""));
    for set in VersionSet::ALL {
        assert_eq!(set.name().parse::<VersionSet>(), Ok(set));
    }
}

#[test]
fn an_unknown_version_set_is_refused_naming_the_known_ones_and_where() {
    let err = ClusterSpec::from_toml_validated("name = \"x\"\nversions = \"newest\"\n", "lab.toml").unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("lab.toml:2:"), "{text}");
    assert!(text.contains("newest") && text.contains("seed") && text.contains("current"), "{text}");
    let err = "newest".parse::<VersionSet>().unwrap_err().to_string();
    assert_eq!(err, "unknown version set \"newest\": choose one of seed, current");
}

/// What specs and failure bundles said before versions were free (`kthw spec show` wrote this table): read as
/// what it names, the seed's preset when it names the seed's pins; a table naming other versions is a custom
/// choice over the seed's preset; an unknown key is refused, naming the keys.
#[test]
fn an_old_versions_table_reads_as_what_it_names() {
    // Written by hand to exercise the old table, in the form `kthw spec show` wrote.
    let old = "[versions]\nkubernetes = \"1.32.4\"\netcd = \"3.5.21\"\ncilium = \"1.17.4\"\ncilium_cli = \"0.18.4\"\n\
               coredns = \"1.12.1\"\n";
    let spec = ClusterSpec::from_toml_validated(old, "bundle/spec.toml").unwrap();
    assert_eq!(spec.versions.as_preset(), Some(VersionSet::Seed));
    assert!(spec.to_effective_toml().contains("versions = \"seed\""), "written back as the preset's name");

    let mixed = old.replace("1.32.4", "1.31.9");
    let spec = ClusterSpec::from_toml_validated(&mixed, "lab.toml").unwrap();
    assert_eq!(spec.versions.as_preset(), None);
    assert_eq!(spec.versions.pins().kubernetes, "1.31.9");
    assert_eq!(spec.versions.to_string(), "custom (kubernetes 1.31.9 over seed)");

    let unknown = format!("{old}kube_proxy = \"1.32.4\"\n");
    let text = ClusterSpec::from_toml_validated(&unknown, "lab.toml").unwrap_err().to_string();
    assert!(text.contains("kube_proxy") && text.contains("cni_plugins") && text.contains("preset"), "{text}");
}
