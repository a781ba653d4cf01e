use super::*;
use crate::bootstrap::configs::{containerd_config, kubelet_config, ContainerdConfig};
use crate::bootstrap::Layout;
use crate::spec::{ClusterSpec, VersionSet, Versions};

/// What a booted worker of the node image answered to [`probe`] (tests/fixtures/README.md: the command and
/// the host).
const NODE: &str = include_str!("../../../tests/fixtures/node-probe-bookworm-6.1.txt");

fn ours(set: VersionSet) -> Rendered {
    let spec = ClusterSpec { versions: set.into(), ..ClusterSpec::default() };
    let layout = Layout::default();
    let containerd = containerd_config(ContainerdConfig::for_spec(&spec), "registry.k8s.io/pause:3.10");
    rendered(&set.pins().kubernetes, &kubelet_config(&spec, "worker-node-1", &layout), &containerd).unwrap()
}

fn findings(set: VersionSet, facts: &NodeFacts) -> Vec<Finding> {
    let rendered = ours(set);
    evaluate(&requirements(&set.pins(), &rendered), facts, &rendered)
}

fn missing(findings: &[Finding]) -> Vec<String> {
    findings.iter().filter(|f| !f.met).map(|f| f.requirement.check.describe()).collect()
}

#[test]
fn what_we_render_is_systemd_on_both_sides_and_only_1_35_refuses_cgroup_v1() {
    let seed = ours(VersionSet::Seed);
    assert_eq!(seed.kubelet_cgroup_driver, "systemd");
    assert!(seed.containerd_systemd_cgroup && seed.fail_swap_on && !seed.fail_cgroup_v1);
    assert!(ours(VersionSet::Current).fail_cgroup_v1, "1.35 defaults failCgroupV1 to true");
    // A kubelet config that opts out, as the kubelet reads it.
    let opted = rendered(
        &VersionSet::Current.pins().kubernetes,
        r#"{"failCgroupV1": false, "failSwapOn": false}"#,
        "version = 2\n",
    )
    .unwrap();
    assert!(!opted.fail_cgroup_v1 && !opted.fail_swap_on && !opted.containerd_systemd_cgroup);
    assert_eq!(opted.kubelet_cgroup_driver, "cgroupfs", "the kubelet's default");
    let reqs = requirements(&VersionSet::Current.pins(), &opted);
    assert!(!reqs.iter().any(|r| r.check == Check::SwapOff || r.check == Check::CgroupV2));
}

#[test]
fn every_requirement_names_who_needs_it_and_an_upstream_source_at_the_sets_pins() {
    for set in VersionSet::ALL {
        let pins = set.pins();
        let reqs = requirements(&set.pins(), &ours(set));
        for r in &reqs {
            assert!(
                r.source.contains('@') && r.source.contains(':') || r.source.starts_with("kubernetes/website"),
                "{r:?}"
            );
            if r.source.starts_with("kubernetes/kubernetes@") {
                assert!(r.source.starts_with(&format!("kubernetes/kubernetes@v{}:", pins.kubernetes)), "{r:?}");
            }
            if r.source.starts_with("cilium/cilium@") {
                assert!(r.source.starts_with(&format!("cilium/cilium@v{}:", pins.cilium)), "{r:?}");
            }
        }
        let kernel = reqs.iter().find_map(|r| match r.check {
            Check::KernelAtLeast(a, b) => Some((a, b)),
            _ => None,
        });
        assert_eq!(kernel, Some(if set == VersionSet::Seed { (5, 4) } else { (5, 10) }));
        assert_eq!(kernel_options(&reqs).len(), 12 + 1 + 4 + 3, "base, HAVE_EBPF_JIT, masquerading, tunnels");
    }
}

#[test]
fn the_node_image_meets_every_startup_requirement_of_both_sets() {
    let facts = NodeFacts::parse(NODE);
    assert!(facts.release.starts_with("6.1."), "{}", facts.release);
    assert_eq!(facts.mounted_at("/sys/fs/cgroup").map(|m| m.fstype.as_str()), Some("cgroup2"));
    assert!(facts.bpftool.is_ok(), "{:?}", facts.bpftool);
    for set in VersionSet::ALL {
        let f = findings(set, &facts);
        assert_eq!(missing(&f), Vec::<String>::new(), "{set}:\n{}", report("worker-node-1", &set.pins(), &f, ""));
    }
}

/// `probe`'s sections with `section` replaced by `text`.
fn with_section(section: &str, text: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in NODE.lines() {
        if let Some(name) = line.strip_prefix("### kthw-probe ") {
            skipping = name == section;
            out.push_str(line);
            out.push('\n');
            if skipping {
                out.push_str(text);
            }
            continue;
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[test]
fn swap_in_use_fails_the_kubelets_check_with_its_source() {
    // Written by hand in /proc/swaps' format (a swap file as `swapon` lists it).
    let swaps = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/swapfile                               file\t\t16380\t\t0\t\t-2\n";
    let facts = NodeFacts::parse(&with_section("swaps", swaps));
    for set in VersionSet::ALL {
        let f = findings(set, &facts);
        let lacking: Vec<&Finding> = f.iter().filter(|f| !f.met).collect();
        assert_eq!(lacking.len(), 1, "{set}: {:?}", missing(&f));
        assert_eq!(lacking[0].requirement.check, Check::SwapOff);
        assert!(lacking[0].saw.contains("/swapfile"), "{}", lacking[0].line());
        assert!(lacking[0].line().contains("pkg/kubelet/cm/container_manager_linux.go"), "{}", lacking[0].line());
    }
}

#[test]
fn cgroup_v1_is_refused_by_1_35_only_and_1_32_wants_its_controllers() {
    // Written by hand as a systemd hybrid host shows /proc/mounts (cgroup v1 controllers under a tmpfs,
    // cgroup2 only for systemd's own tree).
    let v1 = "sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0\n\
              tmpfs /sys/fs/cgroup tmpfs ro,nosuid,nodev,noexec,mode=755 0 0\n\
              cgroup2 /sys/fs/cgroup/unified cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 0\n\
              cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,nodev,noexec,relatime,cpu,cpuacct 0 0\n\
              cgroup /sys/fs/cgroup/memory cgroup rw,nosuid,nodev,noexec,relatime,memory 0 0\n\
              bpf /sys/fs/bpf bpf rw,nosuid,nodev,noexec,relatime,mode=700 0 0\n";
    let facts = NodeFacts::parse(&with_section("mounts", v1));
    let current = findings(VersionSet::Current, &facts);
    assert_eq!(missing(&current), ["cgroup v2 (the unified hierarchy) mounted at /sys/fs/cgroup"]);
    let line = current.iter().find(|f| !f.met).unwrap().line();
    assert!(line.contains("validation_linux.go") && line.contains("saw: tmpfs at /sys/fs/cgroup"), "{line}");
    let seed = findings(VersionSet::Seed, &facts);
    assert_eq!(missing(&seed), ["cgroup v2 at /sys/fs/cgroup, or cgroup v1 with cpu, cpuacct, cpuset, memory"]);
    assert!(seed.iter().any(|f| !f.met && f.saw == "cgroup v1 without cpuset"), "{:?}", seed);
}

#[test]
fn a_kernel_option_that_is_not_set_or_absent_is_named() {
    let config = with_section("config", "# CONFIG_VXLAN is not set\nCONFIG_BPF=y\n");
    let f = findings(VersionSet::Seed, &NodeFacts::parse(&config));
    let lacking: Vec<&Finding> = f.iter().filter(|f| !f.met).collect();
    let vxlan = lacking.iter().find(|f| f.requirement.check == Check::KernelConfig("CONFIG_VXLAN")).unwrap();
    assert_eq!(vxlan.saw, "CONFIG_VXLAN is not set");
    assert!(vxlan.line().contains("Requirements for Tunneling and Routing"), "{}", vxlan.line());
    assert!(lacking.iter().any(|f| f.saw.starts_with("CONFIG_BPF_SYSCALL absent")), "{:?}", missing(&f));
    assert!(!lacking.iter().any(|f| f.requirement.check == Check::KernelConfig("CONFIG_BPF")));
    let none = NodeFacts::parse(&with_section("config", "absent: /boot/config-6.1.0-41-amd64\n"));
    assert!(findings(VersionSet::Seed, &none).iter().any(|f| !f.met && f.saw.starts_with("no /boot/config-")));
}

#[test]
fn an_old_kernel_and_missing_bpf_helpers_fail_the_1_19_agent() {
    let facts = NodeFacts::parse(&with_section("uname", "5.4.0-150-generic\n"));
    assert_eq!(missing(&findings(VersionSet::Seed, &facts)), Vec::<String>::new(), "5.4 is enough for 1.17");
    assert_eq!(missing(&findings(VersionSet::Current, &facts)), ["Linux kernel >= 5.10"]);
    // bpftool's JSON with sched_cls lacking bpf_redirect_peer (written by hand in bpftool -j's shape).
    let json = r#"{"helpers":{"sched_cls_available_helpers":["bpf_csum_level","bpf_redirect_neigh"],"cgroup_sock_addr_available_helpers":["bpf_get_socket_cookie"]},"misc":{"have_large_insn_limit":true}}"#;
    let f = findings(VersionSet::Current, &NodeFacts::parse(&with_section("bpftool", &format!("{json}\n"))));
    assert_eq!(missing(&f), ["BPF helper bpf_redirect_peer for sched_cls programs"]);
    let gone = NodeFacts::parse(&with_section("bpftool", "absent: bpftool is not installed\n"));
    assert_eq!(missing(&findings(VersionSet::Current, &gone)).len(), 5, "every bpftool-read requirement");
    assert_eq!(missing(&findings(VersionSet::Seed, &gone)), Vec::<String>::new(), "1.17's are read elsewhere");
}

#[test]
fn unloaded_bridge_netfilter_fails_the_hard_ways_module_and_sysctls() {
    let facts = NodeFacts::parse(&with_section("sysctl", "net.ipv4.ip_forward = 1\n"));
    let mut facts = facts;
    facts.modules.remove("br_netfilter");
    let lacking = missing(&findings(VersionSet::Seed, &facts));
    assert_eq!(
        lacking,
        [
            "kernel module br_netfilter loaded (or built in)",
            "sysctl net.bridge.bridge-nf-call-iptables = 1",
            "sysctl net.bridge.bridge-nf-call-ip6tables = 1"
        ]
    );
}

#[test]
fn mismatched_cgroup_drivers_are_named_with_both_values() {
    let facts = NodeFacts::parse(NODE);
    let cgroupfs =
        rendered(&VersionSet::Seed.pins().kubernetes, r#"{"cgroupDriver": "systemd"}"#, "version = 2\n").unwrap();
    let f = evaluate(&requirements(&VersionSet::Seed.pins(), &cgroupfs), &facts, &cgroupfs);
    let bad: Vec<&Finding> = f.iter().filter(|f| !f.met).collect();
    assert_eq!(bad.len(), 1, "{:?}", missing(&f));
    assert_eq!(bad[0].saw, "containerd SystemdCgroup = false (cgroupfs), kubelet cgroupDriver = systemd");
}

/// The seed's pins with `kubernetes` and `cilium` instead.
fn with(kubernetes: &str, cilium: &str) -> Versions {
    Versions { kubernetes: kubernetes.into(), cilium: cilium.into(), ..VersionSet::Seed.pins() }
}

#[test]
fn the_kubelets_cgroup_v1_refusal_follows_its_minor_not_the_preset() {
    // CHANGELOG-1.31.md (#126031) added failCgroupV1 defaulting to false; CHANGELOG-1.35.md (#134298) made it
    // true.
    for (k8s, refuses) in
        [("1.30.14", false), ("1.31.0", false), ("1.33.5", false), ("1.34.2", false), ("1.35.0", true)]
    {
        assert_eq!(kubelet_fails_on_cgroup_v1_by_default(k8s), refuses, "{k8s}");
        let unset = rendered(k8s, r#"{"cgroupDriver": "systemd"}"#, "version = 3\n").unwrap();
        assert_eq!(unset.fail_cgroup_v1, refuses, "{k8s}");
        let reqs = requirements(&with(k8s, "1.17.4"), &unset);
        assert_eq!(reqs.iter().any(|r| r.check == Check::CgroupV2), refuses, "{k8s}");
        assert!(reqs.iter().filter(|r| r.who == format!("kubelet {k8s}")).count() >= 4, "{k8s}: {reqs:?}");
    }
}

#[test]
fn the_agents_kernel_floor_and_probes_follow_its_minor_with_the_pull_that_moved_them() {
    let none = Rendered {
        kubelet_cgroup_driver: "systemd".into(),
        fail_swap_on: true,
        fail_cgroup_v1: false,
        containerd_systemd_cgroup: true,
    };
    for (cilium, kernel, pull, probes) in [
        ("1.16.19", (5, 4), Some("pull 30869"), false),
        ("1.17.4", (5, 4), None, false),
        ("1.18.11", (5, 10), Some("pull 42081"), true),
        ("1.19.5", (5, 10), None, true),
    ] {
        let reqs = requirements(&with("1.33.5", cilium), &none);
        let floor = reqs.iter().find(|r| matches!(r.check, Check::KernelAtLeast(..))).unwrap();
        assert_eq!(floor.check, Check::KernelAtLeast(kernel.0, kernel.1), "{cilium}");
        assert_eq!(floor.who, format!("Cilium agent {cilium}"));
        assert!(floor.source.starts_with(&format!("cilium/cilium@v{cilium}:")), "{}", floor.source);
        assert_eq!(pull.is_some_and(|p| floor.source.contains(p)), pull.is_some(), "{}", floor.source);
        let helpers = reqs.iter().filter(|r| matches!(r.check, Check::BpfHelper { .. } | Check::BpfMisc(_))).count();
        assert_eq!(helpers, if probes { 5 } else { 0 }, "{cilium}");
        let chart = reqs.iter().find(|r| r.check == Check::BpfFs).unwrap();
        assert!(chart.source.contains(&format!("charts/cilium-{cilium}.tgz")), "{}", chart.source);
        let pinned = ["1.17.4", "1.19.5"].contains(&cilium);
        assert_eq!(chart.source.contains("daemonset.yaml:"), pinned, "lines only where read: {}", chart.source);
    }
}

#[test]
fn a_spec_naming_its_own_versions_is_checked_against_them() {
    // Kubernetes 1.33 and Cilium 1.18 over the current preset (Kubernetes 1.35, Cilium 1.19).
    let mut versions = crate::spec::VersionSpec::from(VersionSet::Current);
    versions.named.insert(crate::spec::VersionKey::Kubernetes, "1.33.5".into());
    versions.named.insert(crate::spec::VersionKey::Cilium, "1.18.11".into());
    let spec = ClusterSpec { versions, ..ClusterSpec::default() };
    let pins = spec.versions.pins();
    let layout = Layout::default();
    let containerd = containerd_config(ContainerdConfig::for_spec(&spec), "registry.k8s.io/pause:3.10");
    let ours = rendered(&pins.kubernetes, &kubelet_config(&spec, "worker-node-1", &layout), &containerd).unwrap();
    assert!(!ours.fail_cgroup_v1, "1.33 does not refuse cgroup v1, whatever the preset's 1.35 does");
    let reqs = requirements(&pins, &ours);
    assert!(reqs.iter().all(|r| !r.source.contains("@v1.35.4") && !r.source.contains("@v1.19.5")), "{reqs:?}");
    let f = evaluate(&reqs, &NodeFacts::parse(NODE), &ours);
    assert_eq!(missing(&f), Vec::<String>::new(), "{}", report("worker-node-1", &pins, &f, ""));
    assert!(report("worker-node-1", &pins, &f, "").contains("kubernetes 1.33.5"), "the report names the versions");
}
