//! What the kubelet, the hard way and the Cilium agent need of a worker before they start, per kubelet and
//! Cilium version, each with where upstream says so. Kubernetes and Cilium sources are cited at the version's
//! tag by path and function (the search index holds kubernetes/kubernetes and cilium/cilium at one commit each, not at
//! every tag: `kubernetes/kubernetes@001332b0` for container_manager_linux.go, `@0428b0fd` for
//! validation_linux.go, `cilium/cilium@25972d8e` for requirements.go, `@e0cc421a` for probes.go, `@00c88111`
//! for system_requirements.rst, and each read there); the Cilium chart and the hard way are cited by line at
//! the exact commit (cilium/cilium-cli vendors each chart release).

use crate::spec::{Release, Versions};

/// One thing a worker must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// Who checks it or fails without it: "kubelet 1.35.4", "Cilium agent 1.19.5", "the hard way".
    pub who: String,
    pub check: Check,
    /// Where upstream requires it.
    pub source: String,
}

/// How a requirement is read off the node (or off the configuration files the workers phase renders).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// /sys/fs/cgroup is the cgroup v2 unified hierarchy.
    CgroupV2,
    /// cgroup v2, or cgroup v1 with each of these controllers mounted.
    CgroupV2OrV1(&'static [&'static str]),
    /// /proc/swaps lists no active swap.
    SwapOff,
    /// PID 1 is systemd (the systemd cgroup driver talks to it).
    SystemdInit,
    /// containerd's runc `SystemdCgroup` and the kubelet's `cgroupDriver` say the same.
    CgroupDriversMatch,
    Sysctl {
        key: &'static str,
        want: &'static str,
    },
    /// Loaded, or built into the kernel.
    Module(&'static str),
    KernelAtLeast(u32, u32),
    /// `=y` or `=m` in the running kernel's /boot/config-<release>.
    KernelConfig(&'static str),
    /// The kernel can mount this filesystem type (/proc/filesystems).
    Filesystem(&'static str),
    /// bpffs mounted at /sys/fs/bpf, or mountable there (the agent's init container mounts it).
    BpfFs,
    /// `bpftool -j feature probe` lists `helper` for program type `prog`.
    BpfHelper {
        prog: &'static str,
        helper: &'static str,
    },
    /// `bpftool -j feature probe`'s `misc` section has this feature true.
    BpfMisc(&'static str),
}

impl Check {
    /// What it asks, as a person says it.
    pub fn describe(&self) -> String {
        match self {
            Check::CgroupV2 => "cgroup v2 (the unified hierarchy) mounted at /sys/fs/cgroup".into(),
            Check::CgroupV2OrV1(c) => format!("cgroup v2 at /sys/fs/cgroup, or cgroup v1 with {}", c.join(", ")),
            Check::SwapOff => "no swap in use".into(),
            Check::SystemdInit => "systemd as PID 1 (the systemd cgroup driver)".into(),
            Check::CgroupDriversMatch => {
                "containerd's SystemdCgroup and the kubelet's cgroupDriver name the same cgroup driver".into()
            }
            Check::Sysctl { key, want } => format!("sysctl {key} = {want}"),
            Check::Module(m) => format!("kernel module {m} loaded (or built in)"),
            Check::KernelAtLeast(a, b) => format!("Linux kernel >= {a}.{b}"),
            Check::KernelConfig(o) => format!("{o}=y or =m in the kernel's config"),
            Check::Filesystem(f) => format!("the kernel mounts {f} filesystems"),
            Check::BpfFs => "bpffs mounted at /sys/fs/bpf, or mountable there".into(),
            Check::BpfHelper { prog, helper } => format!("BPF helper {helper} for {prog} programs"),
            Check::BpfMisc(f) => format!("BPF feature {f}"),
        }
    }
}

/// What the rendered configuration files say that decides which requirements apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The kubelet's `cgroupDriver`.
    pub kubelet_cgroup_driver: String,
    /// The kubelet's `failSwapOn`, defaulted as the kubelet defaults it.
    pub fail_swap_on: bool,
    /// The kubelet's `failCgroupV1`, defaulted as that kubelet's version defaults it.
    pub fail_cgroup_v1: bool,
    /// containerd's runc `SystemdCgroup`.
    pub containerd_systemd_cgroup: bool,
}

/// The base kernel options of Cilium's system requirements ("Base Requirements", the same twelve at v1.17.4
/// and v1.19.5: Documentation/operations/system_requirements.rst, "In order for the eBPF feature to be enabled
/// properly, the following kernel configuration options must be enabled ... either choice [module or built in]
/// is valid").
const CILIUM_BASE_CONFIG: [&str; 12] = [
    "CONFIG_BPF",
    "CONFIG_BPF_SYSCALL",
    "CONFIG_NET_CLS_BPF",
    "CONFIG_BPF_JIT",
    "CONFIG_NET_CLS_ACT",
    "CONFIG_NET_SCH_INGRESS",
    "CONFIG_CRYPTO_SHA1",
    "CONFIG_CRYPTO_USER_API_HASH",
    "CONFIG_CGROUPS",
    "CONFIG_CGROUP_BPF",
    "CONFIG_PERF_EVENTS",
    "CONFIG_SCHEDSTATS",
];

/// "Requirements for Iptables-based Masquerading": the chart leaves `bpf.masquerade` off, so the agent
/// masquerades with iptables (`enable-bpf-masquerade=false, the default value`).
const CILIUM_IPTABLES_MASQUERADE_CONFIG: [&str; 4] =
    ["CONFIG_NETFILTER_XT_SET", "CONFIG_IP_SET", "CONFIG_IP_SET_HASH_IP", "CONFIG_NETFILTER_XT_MATCH_COMMENT"];

/// "Requirements for Tunneling and Routing": the chart's default routing is a VXLAN tunnel, with policy
/// routing. Added to the document by cilium/cilium pull 38173 (March 2025, marked for backport) after the
/// agent was seen failing without them ("failed to setup vxlan tunnel device ... maybe kernel module for vxlan
/// is not available", cilium/cilium issue 36189, on 1.16).
const CILIUM_TUNNEL_CONFIG: [&str; 3] = ["CONFIG_VXLAN", "CONFIG_GENEVE", "CONFIG_FIB_RULES"];

/// The hard way's commit the project follows (bootstrap/configs.rs cites the same).
const HARD_WAY: &str = "kelseyhightower/kubernetes-the-hard-way@52eb26d";

/// The oldest Linux each Cilium minor runs on, with where that is said. Read at the pinned tags for 1.17 and
/// 1.19 (Documentation/operations/system_requirements.rst, "Summary"); for 1.16 and 1.18 from the pull
/// requests that moved the floor, since the documents at those tags were not read here.
struct KernelFloor {
    cilium: (u32, u32),
    kernel: (u32, u32),
    /// Where it is said when not in the document at the tag (which was not read).
    said: Option<&'static str>,
}

const CILIUM_KERNEL: [KernelFloor; 4] = [
    KernelFloor {
        cilium: (1, 16),
        kernel: (5, 4),
        said: Some(
            "cilium/cilium pull 30869 (\"Increase the minimum required kernel version to v5.4 / RHEL 8.6\"), in 1.16 \
             as pull 36386 says (\"We bumped this requirement in Cilium v1.16\")",
        ),
    },
    KernelFloor { cilium: (1, 17), kernel: (5, 4), said: None },
    KernelFloor {
        cilium: (1, 18),
        kernel: (5, 10),
        said: Some("cilium/cilium pull 42081 (\"With v1.18 we bumped the minimum kernel version to 5.10\")"),
    },
    KernelFloor { cilium: (1, 19), kernel: (5, 10), said: None },
];

/// The first Cilium minor whose agent probes, and requires, the BPF helpers its 5.10 floor provides ("Require
/// support for ..." in pkg/datapath/linux/requirements.go CheckRequirements): cilium/cilium pull 39384
/// ("strictly require more BPF functionality that's provided by all v5.10+ kernels", May 2025, after the
/// floor moved to 5.10 for 1.18).
const CILIUM_PROBES_FROM: (u32, u32) = (1, 18);

/// The kubelet's `failCgroupV1` default: the field came in 1.31 (kubernetes/kubernetes CHANGELOG-1.31.md,
/// v1.31.0, "Introduced a new boolean kubelet flag `--fail-cgroupv1`", #126031) defaulting to false, and
/// defaults to true from 1.35 (CHANGELOG-1.35.md, v1.35.0 Deprecation, "ACTION REQUIRED: `failCgroupV1`
/// will be set to true from 1.35", #134298).
pub fn kubelet_fails_on_cgroup_v1_by_default(kubernetes: &str) -> bool {
    minor(kubernetes) >= (1, 35)
}

fn minor(version: &str) -> (u32, u32) {
    Release::parse(version)
        .unwrap_or_else(|| panic!("{version:?} is a release version (the spec's table says so)"))
        .minor_version()
}

/// Where the chart's agent DaemonSet template is: the charts cilium-cli vendors (each release's, read at
/// v0.19.7 for 1.16.0, 1.16.19, 1.18.0, 1.18.11 and 1.19.5: every one has the init containers cited), with
/// the lines of the two pinned charts.
fn chart_template(cilium: &str) -> (String, Option<(u32, u32)>) {
    let (cli, lines) = match cilium {
        "1.17.4" => ("v0.18.4", Some((510, 593))),
        "1.19.5" => ("v0.19.7", Some((571, 654))),
        _ => ("v0.19.7", None),
    };
    let at = format!(
        "cilium/cilium-cli@{cli}:vendor/github.com/cilium/charts/cilium-{cilium}.tgz, cilium/templates/cilium-agent/\
         daemonset.yaml"
    );
    (at, lines)
}

/// Every requirement of a worker whose kubelet and Cilium are `v`'s, given what the workers phase renders.
pub fn requirements(v: &Versions, rendered: &Rendered) -> Vec<Requirement> {
    let (k8s, cilium) = (format!("v{}", v.kubernetes), format!("v{}", v.cilium));
    let kubelet = format!("kubelet {}", v.kubernetes);
    let agent = format!("Cilium agent {}", v.cilium);
    let kk = |path: &str, what: &str| format!("kubernetes/kubernetes@{k8s}:{path} ({what})");
    let docs = |section: &str| {
        format!("cilium/cilium@{cilium}:Documentation/operations/system_requirements.rst (\"{section}\")")
    };
    let r = |who: &str, check: Check, source: String| Requirement { who: who.to_string(), check, source };
    let mut out = Vec::new();

    // The kubelet.
    if rendered.fail_cgroup_v1 {
        out.push(r(
            &kubelet,
            Check::CgroupV2,
            format!(
                "{}: \"kubelet is configured to not run on a host using cgroup v1\"; failCgroupV1 defaults to \
                 true from 1.35 ({}), and our kubelet config leaves it unset",
                kk(
                    "pkg/kubelet/apis/config/validation/validation_linux.go:32",
                    "validateKubeletOSConfiguration; the line in the index's copy at 0428b0fd"
                ),
                kk("pkg/kubelet/apis/config/v1beta1/defaults.go", "SetDefaults_KubeletConfiguration"),
            ),
        ));
    } else {
        out.push(r(
            &kubelet,
            Check::CgroupV2OrV1(&["cpu", "cpuacct", "cpuset", "memory"]),
            format!(
                "{}: on cgroup v1 \"Following Cgroup subsystem not mounted\"; failCgroupV1 defaults to false \
                 before 1.35 ({})",
                kk("pkg/kubelet/cm/container_manager_linux.go", "validateSystemRequirements"),
                kk("pkg/kubelet/apis/config/v1beta1/defaults.go", "SetDefaults_KubeletConfiguration"),
            ),
        ));
    }
    if rendered.fail_swap_on {
        out.push(r(
            &kubelet,
            Check::SwapOff,
            format!(
                "{}: \"running with swap on is not supported, please disable swap\" when failSwapOn (default \
                 true, left unset in our kubelet config); swap read from /proc/swaps ({}); {HARD_WAY}:docs/\
                 09-bootstrapping-kubernetes-workers.md:71-80 turns swap off",
                kk("pkg/kubelet/cm/container_manager_linux.go", "NewContainerManager"),
                kk("pkg/kubelet/util/swap/swap_util.go", "IsSwapOn"),
            ),
        ));
    }
    out.push(r(
        &kubelet,
        Check::CgroupDriversMatch,
        format!(
            "kubernetes/website content/en/docs/setup/production-environment/container-runtimes.md (\"Matching \
             the container runtime and kubelet cgroup drivers is required\"); {HARD_WAY}:configs/\
             containerd-config.toml:10 (SystemdCgroup = true) with configs/kubelet-config.yaml:13 (cgroupDriver: \
             systemd)"
        ),
    ));
    if rendered.kubelet_cgroup_driver == "systemd" {
        out.push(r(
            &kubelet,
            Check::SystemdInit,
            "kubernetes/website content/en/docs/setup/production-environment/container-runtimes.md (\"systemd \
             cgroup driver\": used when systemd is the init system)"
                .into(),
        ));
    }
    out.push(r(
        &kubelet,
        Check::Sysctl { key: "net.ipv4.ip_forward", want: "1" },
        "kubernetes/website content/en/docs/setup/production-environment/container-runtimes.md (\"Enable IPv4 \
         packet forwarding\": net.ipv4.ip_forward = 1, a prerequisite of every runtime)"
            .into(),
    ));

    // The hard way's worker setup.
    let hw = "the hard way";
    out.push(r(
        hw,
        Check::Module("overlay"),
        format!("{HARD_WAY}:units/containerd.service:7 (ExecStartPre=/sbin/modprobe overlay)"),
    ));
    out.push(r(
        hw,
        Check::Module("br_netfilter"),
        format!("{HARD_WAY}:docs/09-bootstrapping-kubernetes-workers.md:120 (modprobe br-netfilter)"),
    ));
    for (key, line) in [("net.bridge.bridge-nf-call-iptables", 127), ("net.bridge.bridge-nf-call-ip6tables", 129)] {
        out.push(r(
            hw,
            Check::Sysctl { key, want: "1" },
            format!("{HARD_WAY}:docs/09-bootstrapping-kubernetes-workers.md:{line}"),
        ));
    }

    // The Cilium agent.
    let cilium_minor = minor(&v.cilium);
    let row = CILIUM_KERNEL.iter().rev().find(|row| row.cilium <= cilium_minor).unwrap_or(&CILIUM_KERNEL[0]);
    let ((major, min), said) = (row.kernel, row.said);
    let summary = format!("{} (\"Linux kernel >= {major}.{min} or equivalent\")", docs("Summary"));
    out.push(r(
        &agent,
        Check::KernelAtLeast(major, min),
        match said {
            None => summary,
            Some(pull) => format!("{summary}; not read at this tag: {pull}"),
        },
    ));
    for option in CILIUM_BASE_CONFIG {
        out.push(r(&agent, Check::KernelConfig(option), docs("Base Requirements")));
    }
    out.push(r(
        &agent,
        Check::KernelConfig("CONFIG_HAVE_EBPF_JIT"),
        format!(
            "cilium/cilium@{cilium}:pkg/datapath/linux/probes/probes.go (GetRequiredConfig, read from `bpftool -j \
             feature probe`: \"Essential eBPF infrastructure\")"
        ),
    ));
    for option in CILIUM_IPTABLES_MASQUERADE_CONFIG {
        out.push(r(&agent, Check::KernelConfig(option), docs("Requirements for Iptables-based Masquerading")));
    }
    for option in CILIUM_TUNNEL_CONFIG {
        out.push(r(
            &agent,
            Check::KernelConfig(option),
            format!("{} (cilium/cilium pull 38173; issue 36189)", docs("Requirements for Tunneling and Routing")),
        ));
    }
    let (chart, lines) = chart_template(&v.cilium);
    let line = |n: fn((u32, u32)) -> u32| lines.map(|l| format!(":{}", n(l))).unwrap_or_default();
    out.push(r(
        &agent,
        Check::BpfFs,
        format!(
            "{chart}{} (init container mount-bpf-fs: `mount -t bpf bpf /sys/fs/bpf` unless mounted)",
            line(|l| l.1)
        ),
    ));
    out.push(r(
        &agent,
        Check::Filesystem("cgroup2"),
        format!(
            "{chart}{} (init container mount-cgroup: cilium-mount mounts cgroup2 at /run/cilium/cgroupv2 in the \
             host's mount namespace)",
            line(|l| l.0)
        ),
    ));
    if cilium_minor >= CILIUM_PROBES_FROM {
        // Each failure stops the agent ("Require support for ..."); the list as read at the index's 25972d8e.
        let req = format!(
            "cilium/cilium@{cilium}:pkg/datapath/linux/requirements.go (CheckRequirements; cilium/cilium pull 39384)"
        );
        for (prog, helper) in [
            ("cgroup_sock_addr", "bpf_get_socket_cookie"),
            ("sched_cls", "bpf_csum_level"),
            ("sched_cls", "bpf_redirect_neigh"),
            ("sched_cls", "bpf_redirect_peer"),
        ] {
            out.push(r(&agent, Check::BpfHelper { prog, helper }, req.clone()));
        }
        out.push(r(&agent, Check::BpfMisc("have_large_insn_limit"), req));
    }
    out
}
