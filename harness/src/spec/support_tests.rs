//! Every row of the support tables held against the lines of its source, transcribed here (only the lines
//! that carry the row), and the refusals a spec gets outside them.

use super::support::*;
use super::*;

/// A row of an RST or Markdown table: its cells, trimmed.
fn cells(line: &str) -> Vec<&str> {
    line.trim().trim_matches('|').split('|').map(str::trim).collect()
}

fn minors(text: &str) -> Vec<(u32, u32)> {
    text.split(',')
        .map(|m| {
            let (a, b) = m.trim().split_once('.').unwrap_or_else(|| panic!("{m:?} is no minor"));
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect()
}

/// The table row of Cilium's Documentation/network/kubernetes/compatibility.rst at each tag read.
const CILIUM_EXCERPTS: &[((u32, u32), &str)] = &[
    // raw.githubusercontent.com/cilium/cilium/v1.18.14/Documentation/network/kubernetes/compatibility.rst
    ((1, 18), "| 1.30, 1.31, 1.32, 1.33 | * `networking.k8s.io/v1`_ | :term:`CustomResourceDefinition` |"),
    // contextqmd.com/libraries/cilium/versions/1.19.3/pages/Documentation/network/kubernetes/compatibility (the
    // rst of v1.19.3 as that site mirrors it)
    ((1, 19), "| 1.32, 1.33, 1.34, 1.35 | * `networking.k8s.io/v1`_ | :term:`CustomResourceDefinition` |"),
];

#[test]
fn each_cilium_row_that_was_read_is_the_table_at_its_tag() {
    for row in CILIUM.iter().filter(|r| r.read) {
        let (_, line) = CILIUM_EXCERPTS.iter().find(|(c, _)| *c == row.cilium).expect("a read row has its excerpt");
        assert_eq!(minors(cells(line)[0]), row.kubernetes, "Cilium {:?} ({})", row.cilium, row.source.at);
        assert!(row.source.at.contains(&format!("v{}.{}", row.cilium.0, row.cilium.1)), "{}", row.source.at);
    }
}

/// Months (YYYY-MM) of the Kubernetes minors' first releases (kubernetes.io/releases) and of the Cilium
/// minors' `.0` (github.com/cilium/cilium/releases).
const KUBERNETES_RELEASED: &[((u32, u32), &str)] = &[
    ((1, 26), "2022-12"),
    ((1, 27), "2023-04"),
    ((1, 28), "2023-08"),
    ((1, 29), "2023-12"),
    ((1, 30), "2024-04"),
    ((1, 31), "2024-08"),
    ((1, 32), "2024-12"),
    ((1, 33), "2025-04"),
    ((1, 34), "2025-08"),
    ((1, 35), "2025-12"),
];
const CILIUM_RELEASED: &[((u32, u32), &str)] =
    &[((1, 16), "2024-07"), ((1, 17), "2025-02"), ((1, 18), "2025-07"), ((1, 19), "2026-02")];

/// [`CILIUM_RULE`]: the four newest Kubernetes minors released before the Cilium minor's `.0`.
fn by_rule(cilium: (u32, u32)) -> Vec<(u32, u32)> {
    let month = CILIUM_RELEASED.iter().find(|(c, _)| *c == cilium).unwrap().1;
    let before: Vec<(u32, u32)> = KUBERNETES_RELEASED.iter().filter(|(_, m)| *m < month).map(|(k, _)| *k).collect();
    before[before.len() - 4..].to_vec()
}

#[test]
fn the_rows_not_read_follow_the_pages_rule_which_the_rows_read_bear_out() {
    for row in CILIUM {
        assert_eq!(by_rule(row.cilium), row.kubernetes, "Cilium {:?} ({})", row.cilium, row.source.at);
        assert_eq!(row.read, !row.source.at.contains("not read here"), "a derived row says so: {}", row.source.at);
    }
    assert!(CILIUM.iter().filter(|r| r.read).count() >= 2, "the rule is borne out by at least two read rows");
}

/// containerd RELEASES.md "Kubernetes Support" rows, at the commits `CONTAINERD` cites.
const CONTAINERD_EXCERPTS: &[&str] = &[
    // containerd/containerd@007244d86cabfec3641d2e216f4d13a8245029f8 RELEASES.md
    "| 1.30               | 2.1.0+, 2.0.0+, 1.7.13+, 1.6.28+ | v1              |",
    "| 1.31               | 2.1.0+, 2.0.0+, 1.7.20+, 1.6.34+ | v1              |",
    "| 1.32               | 2.1.0+, 2.0.1+, 1.7.24+, 1.6.36+ | v1              |",
    "| 1.33               | 2.1.0+, 2.0.4+, 1.7.24+, 1.6.36+ | v1              |",
    // containerd/containerd@301026e58c619e63d09c0ec411012e54c0124b03 RELEASES.md
    "| 1.34               | 2.1.3+, 2.0.6+, 1.7.28+, 1.6.39+ | v1              |",
    "| 1.35               | 2.2.0+, 2.1.5+, 1.7.28+          | v1              |",
];

#[test]
fn each_containerd_row_is_the_support_table_row() {
    assert_eq!(CONTAINERD.len(), CONTAINERD_EXCERPTS.len());
    for (row, line) in CONTAINERD.iter().zip(CONTAINERD_EXCERPTS) {
        let c = cells(line);
        assert_eq!(minors(c[0]), [row.kubernetes], "{line}");
        let floors: Vec<Release> =
            c[1].split(',').map(|f| Release::parse(f.trim().trim_end_matches('+')).unwrap()).collect();
        assert_eq!(floors, row.containerd, "{line}");
        assert_eq!(c[2], "v1", "kthw's kubelets speak CRI v1");
    }
}

/// The cilium CLI's README "Releases" row at each tag read.
const CLI_EXCERPTS: &[&str] = &[
    "| [v0.18.4](https://github.com/cilium/cilium-cli/releases/tag/v0.18.4)   | Yes        | Cilium 1.15 and newer      |",
    "| [v0.19.7](https://github.com/cilium/cilium-cli/releases/tag/v0.19.7) | Yes        | Cilium 1.16 and newer      |",
];

#[test]
fn each_cilium_cli_row_is_its_readmes_releases_row() {
    for (row, line) in CILIUM_CLI.iter().zip(CLI_EXCERPTS) {
        let c = cells(line);
        let tag = c[0].split(']').next().unwrap().trim_start_matches("[v");
        assert!(row.source.at.contains(&format!("v{tag}")), "{line}");
        assert_eq!(Release::parse(tag).unwrap().minor_version(), row.cli, "{line}");
        let oldest = c[2].strip_prefix("Cilium ").and_then(|r| r.strip_suffix(" and newer")).unwrap();
        assert_eq!(minors(oldest), [row.oldest_cilium], "{line}");
    }
}

/// kubeadm's SupportedEtcdVersion entries (cmd/kubeadm/app/constants/constants.go), as etcd-io/etcd's
/// contributor guide "Bump etcd Version in Kubernetes" quotes them for the 3.5.21 bump (Kubernetes 1.30-1.33;
/// "we bump etcd v3.5.x for K8s release-1.33 and lower versions, and we bump etcd v3.6.x for K8s release-1.34
/// and higher versions") and the 3.6.9 bump (1.34-1.36).
const ETCD_EXCERPTS: &[&str] = &[
    "    30: \"3.5.21-0\",",
    "    31: \"3.5.21-0\",",
    "    32: \"3.5.21-0\",",
    "    33: \"3.5.21-0\",",
    "               34: \"3.6.9-0\",",
    "               35: \"3.6.9-0\",",
    "               36: \"3.6.9-0\",",
];

#[test]
fn the_etcd_minors_are_those_kubeadm_pairs_with_the_kubernetes_range() {
    let range = RANGES.iter().find(|r| r.key == VersionKey::Kubernetes).unwrap();
    let mut seen = Vec::new();
    for line in ETCD_EXCERPTS {
        let (k, e) = line.trim().trim_end_matches(',').split_once(": ").unwrap();
        let k: u32 = k.parse().unwrap();
        let etcd = Release::parse(e.trim_matches('"').trim_end_matches("-0")).unwrap().minor_version();
        if (1, k) >= range.oldest && (1, k) <= range.newest && !seen.contains(&etcd) {
            seen.push(etcd);
        }
    }
    assert_eq!(seen, ETCD);
}

// ---------------------------------------------------------------------------------------------------------

fn spec_with(table: &str) -> Result<ClusterSpec, SpecError> {
    ClusterSpec::from_toml_validated(&format!("[versions]\n{table}"), "lab.toml")
}

#[test]
fn the_presets_and_a_combination_in_every_table_are_accepted() {
    for set in VersionSet::ALL {
        assert_eq!(check(&set.pins(), Origin::Upstream, Origin::Upstream), [], "{set}");
    }
    let spec = spec_with("kubernetes = \"1.33.5\"\ncontainerd = \"2.1.5\"\ncilium = \"1.18.3\"\n").unwrap();
    assert_eq!(spec.versions.pins().cilium_cli, "0.18.4", "unnamed components are the preset's");
    for k in ["1.30.14", "1.31.1", "1.32.4", "1.33.0"] {
        let table = format!("kubernetes = \"{k}\"\ncontainerd = \"2.1.5\"\ncilium = \"1.18.3\"\n");
        spec_with(&table).unwrap_or_else(|e| panic!("{k}: {e}"));
    }
}

#[test]
fn a_combination_upstream_does_not_support_is_refused_naming_the_table_that_says_so() {
    // The seed's Cilium 1.17 was never tested with Kubernetes 1.35.
    let err = spec_with("kubernetes = \"1.35.4\"\ncontainerd = \"2.2.7\"\n").unwrap_err().to_string();
    assert!(err.contains("Cilium 1.17 is e2e tested with Kubernetes 1.29, 1.30, 1.31, 1.32 only, not 1.35.4"), "{err}");
    assert!(err.contains("Cilium's Kubernetes compatibility table") && err.contains("cilium/cilium@v1.17"), "{err}");
    assert!(err.contains("lab.toml") && err.contains("versions.kubernetes"), "{err}");

    let err =
        spec_with("preset = \"current\"\nkubernetes = \"1.31.9\"\ncontainerd = \"2.1.5\"\n").unwrap_err().to_string();
    assert!(err.contains("Cilium 1.19 is e2e tested with Kubernetes 1.32, 1.33, 1.34, 1.35 only"), "{err}");
    assert!(err.contains("cilium/cilium@v1.19.3"), "{err}");

    let err = spec_with("preset = \"current\"\ncontainerd = \"1.7.24\"\n").unwrap_err().to_string();
    assert!(err.contains("containerd 1.7.24 is not recommended for Kubernetes 1.35: 2.2.0+, 2.1.5+, 1.7.28+"), "{err}");
    assert!(err.contains("containerd's Kubernetes support table") && err.contains("301026e5"), "{err}");

    let err = spec_with("preset = \"current\"\nkubernetes = \"1.36.0\"\n").unwrap_err().to_string();
    assert!(err.contains("kubernetes 1.36.0 is outside what kthw supports, 1.30 to 1.35"), "{err}");

    let err = spec_with("cilium = \"1.16.5\"\ncilium_cli = \"0.19.7\"\nkubernetes = \"1.30.1\"\n");
    assert!(err.is_ok(), "the 0.19 CLI installs Cilium 1.16: {err:?}");
    let err = spec_with("etcd = \"3.4.23\"\n").unwrap_err().to_string();
    assert!(err.contains("etcd 3.4.23") && err.contains("kubeadm's SupportedEtcdVersion"), "{err}");
}

#[test]
fn components_from_debian_are_the_node_images_and_not_checked() {
    let v = Versions { etcd: "3.4.23".into(), containerd: "1.6.20".into(), ..VersionSet::Seed.pins() };
    assert_eq!(check(&v, Origin::Debian, Origin::Debian), []);
    assert_eq!(check(&v, Origin::Upstream, Origin::Debian).len(), 2, "etcd out of range and of kubeadm's minors");
}

#[test]
fn a_version_that_is_no_release_is_refused_where_it_is_written() {
    let err = spec_with("name = \"x\"\ncilium = \"1.18\"\n").unwrap_err().to_string();
    assert!(err.contains("versions.cilium = \"1.18\" is not a release version") && err.contains("1.17.4"), "{err}");
    let err = spec_with("preset = \"newest\"\n").unwrap_err().to_string();
    assert!(err.contains("unknown version set \"newest\": choose one of seed, current"), "{err}");
    let spec = spec_with("kubernetes = \"v1.32.4\"\n").unwrap();
    assert_eq!(spec.versions.as_preset(), Some(VersionSet::Seed), "a tag's v is dropped");
    let shown = spec_with("kubernetes = \"1.31.2\"\n").unwrap().to_effective_toml();
    assert!(shown.contains("[versions]\npreset = \"seed\"\nkubernetes = \"1.31.2\"\n"), "{shown}");
    assert_eq!(ClusterSpec::from_toml_validated(&shown, "shown.toml").unwrap().versions.pins().kubernetes, "1.31.2");
}

/// The line of kubernetes/kubernetes CHANGELOG/CHANGELOG-1.35.md (v1.35.0, Urgent Upgrade Notes) that removes
/// the flag.
const REMOVED_EXCERPT: &str =
    "  Removed the `--pod-infra-container-image` flag from `kubelet` command line. For `non-kubeadm` clusters, \
     users must manually remove this flag from their `kubelet` configuration to prevent startup failures before \
     upgrading `kubelet`.";

#[test]
fn a_flag_a_kubernetes_release_removed_is_refused_from_that_release_on() {
    let row = REMOVED_FLAGS.iter().find(|r| r.flag == "pod-infra-container-image").unwrap();
    assert!(REMOVED_EXCERPT.contains(&format!("Removed the `--{}` flag from `{}`", row.flag, row.component.name())));
    assert!(row.source.at.contains("CHANGELOG-1.35.md") && row.removed_in == (1, 35));
    let flag = "[components.kubelet]\n\"pod-infra-container-image\" = \"registry.k8s.io/pause:3.10\"\n";
    assert!(ClusterSpec::from_toml_validated(flag, "seed.toml").is_ok(), "Kubernetes 1.32 still has it");
    let err = ClusterSpec::from_toml_validated(&format!("versions = \"current\"\n{flag}"), "lab.toml").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("components.kubelet.pod-infra-container-image"), "{text}");
    assert!(
        text.contains("was removed from kubelet in Kubernetes 1.35") && text.contains("CHANGELOG-1.35.md"),
        "{text}"
    );
}

/// The lines of kubernetes/kubernetes CHANGELOG/CHANGELOG-1.3x.md (v1.3x.0 sections, read at the index's
/// commit of each file) that remove the other flags, by pull request.
const REMOVALS: [(&str, &str); 5] = [
    ("#122082", "Kubelet flag `--keep-terminated-pod-volumes` was removed.  This flag was deprecated in 2017."),
    (
        "#124948",
        "Kube-controller-manager: the `horizontal-pod-autoscaler-upscale-delay` and \
         `horizontal-pod-autoscaler-downscale-delay` flags have been removed (deprecated and non-functional since \
         v1.12).",
    ),
    (
        "#124017",
        "Removed deprecated command flags --volume-host-cidr-denylist and --volume-host-allow-local-loopback from \
         kube-controller-manager.",
    ),
    ("#130162", "kube-apiserver: removed the deprecated the `--cloud-provider` and `--cloud-config` CLI parameters."),
    ("#130161", "Kubelet:  removed the deprecated flag `--cloud-config` from the command line."),
];

#[test]
fn every_removed_flag_is_the_one_its_changelog_line_removes_from_that_component() {
    for row in REMOVED_FLAGS.iter().filter(|r| r.flag != "pod-infra-container-image") {
        let (_, line) =
            REMOVALS.iter().find(|(pr, _)| row.source.at.contains(pr)).unwrap_or_else(|| panic!("{}", row.flag));
        assert!(line.contains(&format!("--{}", row.flag)) || line.contains(&format!("`{}`", row.flag)), "{line}");
        assert!(line.to_lowercase().contains(row.component.name()), "{}: {line}", row.component.name());
        let file = format!("CHANGELOG-{}.{}.md", row.removed_in.0, row.removed_in.1);
        assert!(row.source.at.contains(&file), "{} {}", row.flag, row.source.at);
    }
    // One a spec gives a component of a Kubernetes that still has it passes, one that no longer has it does not.
    let flag = "[components.kube-apiserver]\n\"cloud-provider\" = \"external\"\n";
    assert!(ClusterSpec::from_toml_validated(flag, "seed.toml").is_ok(), "Kubernetes 1.32 still has it");
    let err = ClusterSpec::from_toml_validated(&format!("versions = \"current\"\n{flag}"), "lab.toml").unwrap_err();
    assert!(err.to_string().contains("--cloud-provider was removed from kube-apiserver in Kubernetes 1.33"), "{err}");
}
