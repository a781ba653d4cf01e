//! What the kubelet and the Cilium agent check when they start, checked on a worker before the workers phase
//! starts anything: cgroup v2 (1.35's kubelet refuses cgroup v1), swap, the hard way's modules and sysctls,
//! the CRI's cgroup driver against the kubelet's, bpffs, the kernel version and the kernel options Cilium's
//! system requirements list, and the BPF features the 1.19 agent probes. A worker that lacks one fails the
//! phase naming what is missing and where upstream requires it ([`NodeLacks`]), instead of a kubelet or agent
//! that crash-loops later. `requirements` says what applies per kubelet and Cilium version, `facts` reads the
//! node.

mod facts;
mod requirements;
#[cfg(test)]
mod tests;
mod workers;

use std::collections::BTreeSet;
use std::path::PathBuf;

pub use facts::{kernel_config, mounts, probe, Mount, NodeFacts};
pub use requirements::{kubelet_fails_on_cgroup_v1_by_default, requirements, Check, Rendered, Requirement};
pub use workers::{check_workers, output_file};

use crate::bootstrap::configs::CriSettings;
use crate::spec::Versions;
use crate::ssh::{Session, SshError};

/// One requirement as a node meets it, or not, with what was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub requirement: Requirement,
    pub met: bool,
    /// What the node (or the rendered config) showed.
    pub saw: String,
}

impl Finding {
    /// One line: met or missing, what, what was seen, who needs it and where upstream says so.
    pub fn line(&self) -> String {
        let r = &self.requirement;
        let mark = if self.met { "ok     " } else { "MISSING" };
        format!("{mark} {} (saw: {}); {}: {}", r.check.describe(), self.saw, r.who, r.source)
    }
}

/// A worker that lacks what the kubelet or the Cilium agent needs at start.
#[derive(Debug, thiserror::Error)]
#[error(
    "{node} lacks what kubelet {} and Cilium agent {} check when they start; nothing was started on it:\n{}\n\
     every check, met or not, is in {}",
    versions.kubernetes,
    versions.cilium,
    missing.iter().map(|f| format!("  - {}", f.line())).collect::<Vec<_>>().join("\n"),
    kept.display()
)]
pub struct NodeLacks {
    pub node: String,
    /// The versions whose requirements were checked.
    pub versions: Versions,
    pub missing: Vec<Finding>,
    /// The phase output holding every finding.
    pub kept: PathBuf,
}

/// What the kubelet and containerd configuration files the workers phase renders say (`kubelet` JSON, which
/// the kubelet reads as YAML; containerd's TOML of either config version, [`CriSettings`]), with the kubelet's own defaults for what they leave unset
/// (kubernetes/kubernetes@v1.35.4:pkg/kubelet/apis/config/v1beta1/defaults.go SetDefaults_KubeletConfiguration:
/// cgroupDriver "cgroupfs", failSwapOn true; failCgroupV1 as [`kubelet_fails_on_cgroup_v1_by_default`] says
/// for `kubernetes`).
pub fn rendered(kubernetes: &str, kubelet_config: &str, containerd_config: &str) -> Result<Rendered, String> {
    let kubelet: serde_json::Value =
        serde_json::from_str(kubelet_config).map_err(|e| format!("the rendered kubelet config: {e}"))?;
    let containerd =
        CriSettings::read(containerd_config).map_err(|e| format!("the rendered containerd config: {e}"))?;
    let flag = |key: &str, default: bool| kubelet.get(key).and_then(|v| v.as_bool()).unwrap_or(default);
    Ok(Rendered {
        kubelet_cgroup_driver: kubelet.get("cgroupDriver").and_then(|v| v.as_str()).unwrap_or("cgroupfs").to_string(),
        fail_swap_on: flag("failSwapOn", true),
        fail_cgroup_v1: flag("failCgroupV1", kubelet_fails_on_cgroup_v1_by_default(kubernetes)),
        containerd_systemd_cgroup: containerd.systemd_cgroup,
    })
}

/// The kernel options `requirements` reads from /boot/config (what [`probe`] greps for).
pub fn kernel_options(requirements: &[Requirement]) -> Vec<&'static str> {
    requirements
        .iter()
        .filter_map(|r| match r.check {
            Check::KernelConfig(o) => Some(o),
            _ => None,
        })
        .collect()
}

/// Each requirement against `facts` and `rendered`.
pub fn evaluate(requirements: &[Requirement], facts: &NodeFacts, rendered: &Rendered) -> Vec<Finding> {
    requirements
        .iter()
        .map(|r| {
            let (met, saw) = assess(&r.check, facts, rendered);
            Finding { requirement: r.clone(), met, saw }
        })
        .collect()
}

fn assess(check: &Check, f: &NodeFacts, rendered: &Rendered) -> (bool, String) {
    let cgroup_fs = || f.mounted_at("/sys/fs/cgroup").map(|m| m.fstype.clone()).unwrap_or_else(|| "nothing".into());
    match check {
        Check::CgroupV2 => (cgroup_fs() == "cgroup2", format!("{} at /sys/fs/cgroup", cgroup_fs())),
        Check::CgroupV2OrV1(controllers) => {
            if cgroup_fs() == "cgroup2" {
                return (true, "cgroup2 at /sys/fs/cgroup".into());
            }
            let mounted: BTreeSet<&str> = f
                .mounts
                .iter()
                .filter(|m| m.fstype == "cgroup")
                .flat_map(|m| m.options.iter().map(String::as_str))
                .collect();
            let lacking: Vec<&str> = controllers.iter().copied().filter(|c| !mounted.contains(c)).collect();
            (
                lacking.is_empty(),
                format!("cgroup v1 without {}", if lacking.is_empty() { "none".into() } else { lacking.join(", ") }),
            )
        }
        Check::SwapOff => {
            (f.swaps.is_empty(), if f.swaps.is_empty() { "/proc/swaps lists none".into() } else { f.swaps.join("; ") })
        }
        Check::SystemdInit => (f.init == "systemd", format!("PID 1 is {:?}", f.init)),
        Check::CgroupDriversMatch => {
            let containerd = if rendered.containerd_systemd_cgroup { "systemd" } else { "cgroupfs" };
            (
                containerd == rendered.kubelet_cgroup_driver,
                format!(
                    "containerd SystemdCgroup = {} ({containerd}), kubelet cgroupDriver = {}",
                    rendered.containerd_systemd_cgroup, rendered.kubelet_cgroup_driver
                ),
            )
        }
        Check::Sysctl { key, want } => match f.sysctls.get(*key) {
            Some(v) => (v == want, format!("{key} = {v}")),
            None => (false, format!("no {key} (its module is not loaded)")),
        },
        Check::Module(m) => {
            let met = f.modules.contains(&m.replace('-', "_"));
            (met, if met { format!("{m} loaded or built in") } else { format!("{m} neither loaded nor built in") })
        }
        Check::KernelAtLeast(a, b) => match f.kernel_version() {
            Some(v) => (v >= (*a, *b), format!("{} ({}.{})", f.release, v.0, v.1)),
            None => (false, format!("an unreadable release {:?}", f.release)),
        },
        Check::KernelConfig(option) => match &f.kernel_config {
            None => (false, format!("no /boot/config-{} to read", f.release)),
            Some(config) => match config.get(*option).map(String::as_str) {
                Some(v @ ("y" | "m")) => (true, format!("{option}={v}")),
                Some("n") => (false, format!("{option} is not set")),
                Some(v) => (false, format!("{option}={v}")),
                None => (false, format!("{option} absent from /boot/config-{}", f.release)),
            },
        },
        Check::Filesystem(fs) => (
            f.filesystems.contains(*fs),
            format!("{fs} {}in /proc/filesystems", if f.filesystems.contains(*fs) { "" } else { "not " }),
        ),
        Check::BpfFs => {
            let mounted = f.mounted_at("/sys/fs/bpf").is_some_and(|m| m.fstype == "bpf");
            let mountable = f.filesystems.contains("bpf");
            let saw = match (mounted, mountable) {
                (true, _) => "bpf mounted at /sys/fs/bpf",
                (false, true) => "not mounted; bpf in /proc/filesystems",
                (false, false) => "not mounted, and no bpf in /proc/filesystems",
            };
            (mounted || mountable, saw.into())
        }
        Check::BpfHelper { prog, helper } => match &f.bpftool {
            Err(why) => (false, why.clone()),
            Ok(json) => {
                let list = json.get("helpers").and_then(|h| h.get(format!("{prog}_available_helpers")));
                let has = list.and_then(|l| l.as_array()).is_some_and(|l| l.iter().any(|h| h.as_str() == Some(helper)));
                let saw = match list {
                    None => format!("no {prog}_available_helpers in bpftool's output"),
                    Some(_) if has => format!("{helper} listed for {prog}"),
                    Some(_) => format!("{helper} not listed for {prog}"),
                };
                (has, saw)
            }
        },
        Check::BpfMisc(feature) => match &f.bpftool {
            Err(why) => (false, why.clone()),
            Ok(json) => {
                let v = json.get("misc").and_then(|m| m.get(*feature)).and_then(|v| v.as_bool());
                (v == Some(true), format!("misc.{feature} = {}", v.map_or("absent".into(), |b| b.to_string())))
            }
        },
    }
}

/// Runs [`probe`] on `node` and reads its facts for `requirements`.
pub async fn read_node(node: &Session, requirements: &[Requirement]) -> Result<(NodeFacts, String), SshError> {
    let out = node.succeed(&probe(&kernel_options(requirements))).await?.stdout_lossy();
    Ok((NodeFacts::parse(&out), out))
}

/// The report a phase keeps: every finding, one a line, then the probe's raw output.
pub fn report(node: &str, versions: &Versions, findings: &[Finding], raw: &str) -> String {
    let met = findings.iter().filter(|f| f.met).count();
    let mut text = format!("{node}: {met} of {} startup requirements of {versions} met\n", findings.len());
    for f in findings {
        text.push_str(&f.line());
        text.push('\n');
    }
    text.push_str("\nthe probe's output:\n");
    text.push_str(raw);
    text
}
