//! Which versions kthw runs together: upstream's own support tables, each row citing where it was read, and
//! the ranges kthw itself covers. A combination outside them is refused before anything boots, naming the
//! table that says so. `support_tests` holds every row against the lines of its source, transcribed there.

use super::{ClusterSpec, Component, Origin, Release, VersionKey, Versions};

/// Where a row or bound comes from: the table's name as a person knows it, and the file it was read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    pub table: &'static str,
    pub at: &'static str,
}

/// Cilium's Kubernetes compatibility: "All Kubernetes versions listed are e2e tested and guaranteed to be
/// compatible with Cilium", per Cilium minor (Documentation/network/kubernetes/compatibility.rst at each tag).
pub struct CiliumRow {
    pub cilium: (u32, u32),
    pub kubernetes: &'static [(u32, u32)],
    pub source: Source,
    /// True when the table at that tag was read; false when it could not be read here and the row follows
    /// the page's own rule instead (see [`CILIUM_RULE`]), which the rows that were read bear out.
    pub read: bool,
}

/// The page's rule, quoted in every release since 1.16 (v1.18.14 and v1.19.3 read): "Cilium aims to run e2e
/// tests using the latest build from the development branch against currently supported Kubernetes versions
/// ... Once a release branch gets created ... Cilium typically does not change the Kubernetes versions".
pub const CILIUM_RULE: &str = "the four Kubernetes minors upstream supported when the Cilium minor branched";

const CILIUM_TABLE: &str = "Cilium's Kubernetes compatibility table";

pub const CILIUM: &[CiliumRow] = &[
    CiliumRow {
        cilium: (1, 16),
        kubernetes: &[(1, 27), (1, 28), (1, 29), (1, 30)],
        source: Source {
            table: CILIUM_TABLE,
            at: "cilium/cilium@v1.16 Documentation/network/kubernetes/compatibility.rst (not read here: derived from the page's rule)",
        },
        read: false,
    },
    CiliumRow {
        cilium: (1, 17),
        kubernetes: &[(1, 29), (1, 30), (1, 31), (1, 32)],
        source: Source {
            table: CILIUM_TABLE,
            at: "cilium/cilium@v1.17 Documentation/network/kubernetes/compatibility.rst (not read here: derived from the page's rule)",
        },
        read: false,
    },
    CiliumRow {
        cilium: (1, 18),
        kubernetes: &[(1, 30), (1, 31), (1, 32), (1, 33)],
        source: Source {
            table: CILIUM_TABLE,
            at: "cilium/cilium@v1.18.14 Documentation/network/kubernetes/compatibility.rst",
        },
        read: true,
    },
    CiliumRow {
        cilium: (1, 19),
        kubernetes: &[(1, 32), (1, 33), (1, 34), (1, 35)],
        source: Source {
            table: CILIUM_TABLE,
            at: "cilium/cilium@v1.19.3 Documentation/network/kubernetes/compatibility.rst (as contextqmd.com mirrors it)",
        },
        read: true,
    },
];

/// containerd's "Kubernetes Support" table (RELEASES.md): per Kubernetes minor, the containerd releases
/// recommended for it, each as the oldest patch of a minor (`1.7.24+`).
pub struct ContainerdRow {
    pub kubernetes: (u32, u32),
    pub containerd: &'static [Release],
    pub source: Source,
}

const fn r(major: u32, minor: u32, patch: u32) -> Release {
    Release { major, minor, patch }
}

const CONTAINERD_TABLE: &str = "containerd's Kubernetes support table";
const CONTAINERD_OLD: Source = Source {
    table: CONTAINERD_TABLE,
    at: "containerd/containerd@007244d86cabfec3641d2e216f4d13a8245029f8 RELEASES.md",
};
const CONTAINERD_NEW: Source = Source {
    table: CONTAINERD_TABLE,
    at: "containerd/containerd@301026e58c619e63d09c0ec411012e54c0124b03 RELEASES.md",
};

pub const CONTAINERD: &[ContainerdRow] = &[
    ContainerdRow {
        kubernetes: (1, 30),
        containerd: &[r(2, 1, 0), r(2, 0, 0), r(1, 7, 13), r(1, 6, 28)],
        source: CONTAINERD_OLD,
    },
    ContainerdRow {
        kubernetes: (1, 31),
        containerd: &[r(2, 1, 0), r(2, 0, 0), r(1, 7, 20), r(1, 6, 34)],
        source: CONTAINERD_OLD,
    },
    ContainerdRow {
        kubernetes: (1, 32),
        containerd: &[r(2, 1, 0), r(2, 0, 1), r(1, 7, 24), r(1, 6, 36)],
        source: CONTAINERD_OLD,
    },
    ContainerdRow {
        kubernetes: (1, 33),
        containerd: &[r(2, 1, 0), r(2, 0, 4), r(1, 7, 24), r(1, 6, 36)],
        source: CONTAINERD_OLD,
    },
    ContainerdRow {
        kubernetes: (1, 34),
        containerd: &[r(2, 1, 3), r(2, 0, 6), r(1, 7, 28), r(1, 6, 39)],
        source: CONTAINERD_NEW,
    },
    ContainerdRow { kubernetes: (1, 35), containerd: &[r(2, 2, 0), r(2, 1, 5), r(1, 7, 28)], source: CONTAINERD_NEW },
];

/// The cilium CLI's README "Releases" table: the oldest Cilium each CLI minor installs ("Cilium 1.16 and
/// newer"). A Cilium whose chart the CLI does not embed is handed to it as a chart directory fetched on the
/// host (`cilium install --chart-directory`, cilium-cli internal/helm ResolveHelmChartVersion).
pub struct CliRow {
    pub cli: (u32, u32),
    pub oldest_cilium: (u32, u32),
    pub source: Source,
}

const CLI_TABLE: &str = "the cilium CLI's Releases table";

pub const CILIUM_CLI: &[CliRow] = &[
    CliRow {
        cli: (0, 18),
        oldest_cilium: (1, 15),
        source: Source { table: CLI_TABLE, at: "cilium/cilium-cli@v0.18.4 README.md" },
    },
    CliRow {
        cli: (0, 19),
        oldest_cilium: (1, 16),
        source: Source { table: CLI_TABLE, at: "cilium/cilium-cli@v0.19.7 README.md" },
    },
];

/// The etcd minors Kubernetes' own installer runs with the Kubernetes minors kthw covers: kubeadm's
/// `SupportedEtcdVersion` (cmd/kubeadm/app/constants/constants.go) maps 1.30-1.33 to 3.5.x and 1.34 onwards
/// to 3.6.x; the API server speaks the same etcd v3 API to both.
pub const ETCD: &[(u32, u32)] = &[(3, 5), (3, 6)];
pub const ETCD_SOURCE: Source = Source {
    table: "kubeadm's SupportedEtcdVersion",
    at: "kubernetes/kubernetes cmd/kubeadm/app/constants/constants.go, as etcd-io/etcd's guide \"Bump etcd Version in \
         Kubernetes\" quotes it (30-33: 3.5.21-0; 34-36: 3.6.9-0)",
};

/// A command-line flag a Kubernetes release removed: given in `[components]` to that release or a newer one,
/// the component would not start, so the spec is refused first. kthw renders none of these itself.
pub struct RemovedFlag {
    pub component: Component,
    pub flag: &'static str,
    pub removed_in: (u32, u32),
    pub source: Source,
}

const fn removed(
    component: Component,
    flag: &'static str,
    removed_in: (u32, u32),
    table: &'static str,
    at: &'static str,
) -> RemovedFlag {
    RemovedFlag { component, flag, removed_in, source: Source { table, at } }
}

const URGENT_1_31: &str = "Kubernetes 1.31's Urgent Upgrade Notes";
const CHANGES_1_31: &str = "Kubernetes 1.31's Changes by Kind";

/// The removals of command-line flags of our four components that the v1.31.0 to v1.35.0 sections of
/// kubernetes/kubernetes CHANGELOG/CHANGELOG-1.3x.md name ("Urgent Upgrade Notes", "Changes by Kind"; read at
/// the index's commits of each file). v1.32.0 has "no urgent upgrade notes" and names none.
pub const REMOVED_FLAGS: &[RemovedFlag] = &[
    removed(
        Component::Kubelet,
        "keep-terminated-pod-volumes",
        (1, 31),
        URGENT_1_31,
        "kubernetes/kubernetes CHANGELOG/CHANGELOG-1.31.md, v1.31.0 (#122082)",
    ),
    removed(
        Component::KubeControllerManager,
        "horizontal-pod-autoscaler-upscale-delay",
        (1, 31),
        CHANGES_1_31,
        "kubernetes/kubernetes CHANGELOG/CHANGELOG-1.31.md, v1.31.0, API Change (#124948)",
    ),
    removed(
        Component::KubeControllerManager,
        "horizontal-pod-autoscaler-downscale-delay",
        (1, 31),
        CHANGES_1_31,
        "kubernetes/kubernetes CHANGELOG/CHANGELOG-1.31.md, v1.31.0, API Change (#124948)",
    ),
    removed(
        Component::KubeControllerManager,
        "volume-host-cidr-denylist",
        (1, 31),
        CHANGES_1_31,
        "kubernetes/kubernetes CHANGELOG/CHANGELOG-1.31.md, v1.31.0, API Change (#124017)",
    ),
    removed(
        Component::KubeControllerManager,
        "volume-host-allow-local-loopback",
        (1, 31),
        CHANGES_1_31,
        "kubernetes/kubernetes CHANGELOG/CHANGELOG-1.31.md, v1.31.0, API Change (#124017)",
    ),
    removed(
        Component::KubeApiserver,
        "cloud-provider",
        (1, 33),
        "Kubernetes 1.33's Changes by Kind",
        "kubernetes/kubernetes CHANGELOG/CHANGELOG-1.33.md, v1.33.0, Other (Cleanup or Flake) (#130162)",
    ),
    removed(
        Component::KubeApiserver,
        "cloud-config",
        (1, 33),
        "Kubernetes 1.33's Changes by Kind",
        "kubernetes/kubernetes CHANGELOG/CHANGELOG-1.33.md, v1.33.0, Other (Cleanup or Flake) (#130162)",
    ),
    removed(
        Component::Kubelet,
        "cloud-config",
        (1, 34),
        "Kubernetes 1.34's Urgent Upgrade Notes",
        "kubernetes/kubernetes CHANGELOG/CHANGELOG-1.34.md, v1.34.0 (#130161)",
    ),
    removed(
        Component::Kubelet,
        "pod-infra-container-image",
        (1, 35),
        "Kubernetes 1.35's Urgent Upgrade Notes",
        "kubernetes/kubernetes CHANGELOG/CHANGELOG-1.35.md, v1.35.0 (#133779)",
    ),
];

/// Every `[components]` flag the spec's Kubernetes no longer has.
pub fn removed_flags(spec: &ClusterSpec) -> Vec<Unsupported> {
    let Some(k8s) = minor(&spec.versions.pins().kubernetes) else { return Vec::new() };
    REMOVED_FLAGS
        .iter()
        .filter(|r| k8s >= r.removed_in && spec.components.for_component(r.component).contains_key(r.flag))
        .map(|r| Unsupported {
            field: format!("components.{}.{}", r.component.name(), r.flag),
            message: format!(
                "--{} was removed from {} in Kubernetes {}, and this spec runs {}: remove it",
                r.flag,
                r.component.name(),
                show(r.removed_in),
                spec.versions.pins().kubernetes
            ),
            source: r.source,
        })
        .collect()
}

/// What kthw itself covers, and why each bound is where it is.
pub struct Range {
    pub key: VersionKey,
    pub oldest: (u32, u32),
    pub newest: (u32, u32),
    pub why: &'static str,
}

pub const RANGES: &[Range] = &[
    Range {
        key: VersionKey::Kubernetes,
        oldest: (1, 30),
        newest: (1, 35),
        why: "1.30 is the oldest minor containerd's support table still lists; 1.35 the newest any supported \
              Cilium (1.19) is e2e tested with",
    },
    Range {
        key: VersionKey::Cilium,
        oldest: (1, 16),
        newest: (1, 19),
        why: "1.16 is the oldest Cilium the newest cilium CLI (0.19) installs; 1.19 the newest stable minor whose \
              Kubernetes table is known here",
    },
    Range {
        key: VersionKey::CiliumCli,
        oldest: (0, 18),
        newest: (0, 19),
        why: "the CLI minors whose Releases table and chart handling were read (v0.18.4, v0.19.7)",
    },
    Range {
        key: VersionKey::Etcd,
        oldest: (3, 5),
        newest: (3, 6),
        why: "the etcd minors kubeadm's SupportedEtcdVersion pairs with Kubernetes 1.30-1.35",
    },
    Range {
        key: VersionKey::Containerd,
        oldest: (1, 7),
        newest: (2, 2),
        why: "the minors containerd's support table recommends for Kubernetes 1.30-1.35 that kthw renders a config \
              and unit for (1.7 with config version 2, 2.x with its own version 3)",
    },
    Range {
        key: VersionKey::Runc,
        oldest: (1, 2),
        newest: (1, 3),
        why: "the runc minors the presets pin (containerd 2.2.7 is built and tested with runc 1.3: its \
              script/setup/runc-version); no upstream table pairs runc with Kubernetes",
    },
    Range {
        key: VersionKey::CniPlugins,
        oldest: (1, 1),
        newest: (1, 9),
        why: "kthw installs only the loopback plugin (Cilium is the CNI); 1.1 is Debian 12's, 1.9 the newest the \
              presets pin",
    },
    Range {
        key: VersionKey::Coredns,
        oldest: (1, 11),
        newest: (1, 14),
        why: "around the presets' pins (1.12.1; 1.14.6, which cilium-cli v0.19.7 deploys as its DNS test \
              server); CoreDNS has no Kubernetes support table, and the registry's tags decide what exists",
    },
];

/// One way a spec's versions leave what upstream supports together: the field, what is wrong, and the table
/// (with where it was read) that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    pub field: String,
    pub message: String,
    pub source: Source,
}

fn minor(text: &str) -> Option<(u32, u32)> {
    Release::parse(text).map(Release::minor_version)
}

fn show(m: (u32, u32)) -> String {
    format!("{}.{}", m.0, m.1)
}

fn list(ms: &[(u32, u32)]) -> String {
    ms.iter().map(|m| show(*m)).collect::<Vec<_>>().join(", ")
}

/// Every way `v` leaves kthw's ranges and upstream's tables. Components from Debian (`etcd_from`,
/// `containerd_from`) are the node image's and not checked.
pub fn check(v: &Versions, etcd_from: Origin, containerd_from: Origin) -> Vec<Unsupported> {
    let mut out = Vec::new();
    let used = |k: VersionKey| match k {
        VersionKey::Etcd => etcd_from == Origin::Upstream,
        VersionKey::Containerd | VersionKey::Runc | VersionKey::CniPlugins => containerd_from == Origin::Upstream,
        _ => true,
    };
    for range in RANGES.iter().filter(|r| used(r.key)) {
        let Some(m) = minor(v.get(range.key)) else { continue };
        if m < range.oldest || m > range.newest {
            out.push(Unsupported {
                field: format!("versions.{}", range.key),
                message: format!(
                    "{} {} is outside what kthw supports, {} to {} ({})",
                    range.key,
                    v.get(range.key),
                    show(range.oldest),
                    show(range.newest),
                    range.why
                ),
                source: Source { table: "kthw's supported ranges", at: "README.md, Versions" },
            });
        }
    }
    let (Some(k8s), Some(cilium)) = (minor(&v.kubernetes), minor(&v.cilium)) else { return out };
    if let Some(row) = CILIUM.iter().find(|row| row.cilium == cilium) {
        if !row.kubernetes.contains(&k8s) {
            out.push(Unsupported {
                field: "versions.kubernetes".to_string(),
                message: format!(
                    "Cilium {} is e2e tested with Kubernetes {} only, not {}: choose one of those, or the Cilium \
                     minor whose table lists {}",
                    show(cilium),
                    list(row.kubernetes),
                    v.kubernetes,
                    show(k8s)
                ),
                source: row.source,
            });
        }
    }
    let cli = minor(&v.cilium_cli);
    if let Some((cli, row)) = cli.and_then(|cli| Some((cli, CILIUM_CLI.iter().find(|row| row.cli == cli)?))) {
        if cilium < row.oldest_cilium {
            out.push(Unsupported {
                field: "versions.cilium_cli".to_string(),
                message: format!(
                    "cilium CLI {} installs Cilium {} and newer, not {}",
                    show(cli),
                    show(row.oldest_cilium),
                    v.cilium
                ),
                source: row.source,
            });
        }
    }
    if used(VersionKey::Etcd) {
        if let Some(etcd) = minor(&v.etcd) {
            if !ETCD.contains(&etcd) {
                out.push(Unsupported {
                    field: "versions.etcd".to_string(),
                    message: format!("etcd {} is not a minor Kubernetes runs with ({})", v.etcd, list(ETCD)),
                    source: ETCD_SOURCE,
                });
            }
        }
    }
    if used(VersionKey::Containerd) {
        if let (Some(row), Some(c)) =
            (CONTAINERD.iter().find(|row| row.kubernetes == k8s), Release::parse(&v.containerd))
        {
            let fits = row.containerd.iter().any(|floor| floor.minor_version() == c.minor_version() && c >= *floor);
            if !fits {
                let recommended: Vec<String> = row.containerd.iter().map(|f| format!("{f}+")).collect();
                out.push(Unsupported {
                    field: "versions.containerd".to_string(),
                    message: format!(
                        "containerd {} is not recommended for Kubernetes {}: {}",
                        v.containerd,
                        show(k8s),
                        recommended.join(", ")
                    ),
                    source: row.source,
                });
            }
        }
    }
    out
}
