//! The command lines of the `cilium` phase, as the seed ran them on control-plane-1: `cilium install` with the
//! values the spec derives, and `cilium status --wait`. Pure functions of the spec; the phase runs them over
//! SSH as root with root's kubeconfig, admin-internal (`Layout::root_kubeconfig`, https://10.0.0.4:6443),
//! never a component's identity: the seed's RBAC lesson (the rbac-failure scenario passes another on purpose).
//!
//! Every flag is one of cilium-cli v0.18.4's, the pinned CLI (cilium/cilium-cli tag v0.18.4 vendors the CLI from
//! cilium/cilium, vendor/github.com/cilium/cilium/cilium-cli/cli/): `--kubeconfig` is a persistent flag of
//! the root command (cli/cmd.go), `--version` and `--set` are install's (cli/install.go:
//! addCommonInstallFlags registers "version"; addCommonHelmFlags registers "helm-set", which normalizeFlags
//! names "set"; "helm-set-string" is "set-string"), `--wait`, `--interactive` and `--wait-duration` are
//! status's (cli/status.go; the last a Go duration). The same flags are in v0.19.7.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::spec::ClusterSpec;

/// Where the phase installs the pinned cilium CLI on the control plane.
pub const CILIUM_CLI: &str = "/usr/local/bin/cilium";

/// The guest's name for its cluster NIC. The image boots with `net.ifnames=0` (images/debian/recipe.toml), so
/// virtio NICs are named eth0, eth1, ... in PCI order; the cluster NIC is the domain's libvirt-managed
/// interface, the management NIC sits at PCI slot 0x10 far above it (`virt::domain::MANAGEMENT_PCI_SLOT`),
/// and the vm tier sees the node address on eth0 (tests/tests/vm/ssh.rs).
pub const CLUSTER_NIC: &str = "eth0";

/// Helm values the harness adds to the spec's, unless `cilium.values` sets them. Without `devices` Cilium
/// "will automatically detect devices that have a non-local route" (values.yaml of the chart 1.17.4, the
/// `devices` comment): both NICs, so NodePort and the kube-proxy replacement would also serve the user-mode
/// management NIC. `devices` is rendered into cilium-config as `devices` and `nodePort.directRoutingDevice`
/// as `direct-routing-device` (templates/cilium-configmap.yaml of the same chart); the latter is the device
/// NodePort forwards to remote backends through, the cluster network here.
pub fn device_values() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([("devices", CLUSTER_NIC), ("nodePort.directRoutingDevice", CLUSTER_NIC)])
}

/// The top-level keys of each chart a version set pins, by chart version: the properties of its
/// values.schema.json and the keys its templates read (`.Values.<key>`) that values.yaml documents only in
/// comments (`devices`, `tunnel`, ...). The schema does not forbid unknown keys, so Helm would take a misspelt
/// one silently: these lists are what catch it.
pub const CHART_TOP_LEVEL_KEYS: &[(&str, &str)] = &[
    ("1.17.4", include_str!("chart_keys/cilium-1.17.4.txt")),
    ("1.19.5", include_str!("chart_keys/cilium-1.19.5.txt")),
];

/// The top-level keys of the Cilium Helm chart `version`, if the harness knows it: its list's lines, less
/// the `#` lines that say where the list comes from.
pub fn chart_top_level_keys(version: &str) -> Option<Vec<&'static str>> {
    let (_, text) = CHART_TOP_LEVEL_KEYS.iter().find(|(v, _)| *v == version)?;
    Some(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect())
}

/// A `cilium.values` key the pinned chart does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cilium.values: {key:?} is not a value of the Cilium {chart} Helm chart: it has no top-level key {top:?} \
     (see `helm show values cilium/cilium --version {chart}`)"
)]
pub struct UnknownCiliumValue {
    pub key: String,
    pub top: String,
    pub chart: String,
}

/// The top-level key of a Helm `--set` path: up to the first unescaped `.` or `[` (Helm's strvals
/// syntax, where `\.` is a literal dot).
fn top_level(key: &str) -> String {
    let mut top = String::new();
    let mut chars = key.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => top.extend(chars.next()),
            '.' | '[' => break,
            c => top.push(c),
        }
    }
    top
}

/// Why `cilium.values` could not be checked against a lock's chart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CiliumValuesError {
    #[error(transparent)]
    Unknown(#[from] UnknownCiliumValue),
    #[error(
        "cilium.values ({}) cannot be checked: the keys of the Cilium {chart} Helm chart are unknown until \
         `kthw versions lock` fetched that chart (kthw ships the keys of {} only); lock these versions, then \
         the lock beside the spec holds the chart's keys",
        keys.join(", "),
        CHART_TOP_LEVEL_KEYS.iter().map(|(v, _)| *v).collect::<Vec<_>>().join(" and ")
    )]
    KeysUnknown { chart: String, keys: Vec<String> },
}

/// Checks every `cilium.values` key against the top-level keys of the chart the spec's versions pin, before
/// anything reaches a node: the keys a lock read from that chart (`crate::lock::Lock::chart_keys`), else the
/// presets' charts' keys compiled in. A spec that sets `cilium.values` for a chart whose keys are neither is
/// refused, saying so, rather than passed unchecked.
pub fn validate_values_with(spec: &ClusterSpec, chart_keys: &[String]) -> Result<(), CiliumValuesError> {
    let chart = spec.versions.pins().cilium;
    if !chart_keys.is_empty() {
        let keys: Vec<&str> = chart_keys.iter().map(String::as_str).collect();
        return Ok(check_keys(spec, &keys, chart)?);
    }
    match chart_top_level_keys(&chart) {
        Some(keys) => Ok(check_keys(spec, &keys, chart)?),
        None if spec.cilium.values.is_empty() => Ok(()),
        None => Err(CiliumValuesError::KeysUnknown { chart, keys: spec.cilium.values.keys().cloned().collect() }),
    }
}

fn check_keys(spec: &ClusterSpec, keys: &[&str], chart: String) -> Result<(), UnknownCiliumValue> {
    for key in spec.cilium.values.keys() {
        let top = top_level(key);
        if !keys.contains(&top.as_str()) {
            return Err(UnknownCiliumValue { key: key.clone(), top, chart });
        }
    }
    Ok(())
}

/// Every Helm value the install sets: the spec's (`spec.derived().cilium_values`: the seed's six and
/// `cilium.values`), then [`device_values`] where the spec sets none of its own.
pub fn install_values(spec: &ClusterSpec) -> BTreeMap<String, String> {
    let mut values = spec.derived().cilium_values;
    for (k, v) in device_values() {
        values.entry(k.to_string()).or_insert_with(|| v.to_string());
    }
    values
}

/// A string as Helm's strvals reads it back unchanged: a backslash takes the next rune literally
/// (helm v3 pkg/strvals/parser.go `runesUntil`, vendored by cilium/cilium-cli v0.18.4; the same in helm v4,
/// v0.19.7), `,` ends a value (`val`: stop at ','), and `{` `}` open and close a list (`valList`).
fn helm_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '{' | '}') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The flag and `key=value` a `cilium.values` entry reaches Helm with. A TOML string (or a list of them) goes
/// through `--set-string`, which cilium-cli maps to Helm's (cli/install.go normalizeFlags: "helm-set-string"
/// is "set-string", v0.18.4 and v0.19.7), so that Helm keeps it a string: with `--set`, strvals' `typedVal`
/// turns "true", "false", "null" and numbers into typed values. Everything else keeps `--set`, typed as
/// TOML typed it.
fn user_value(key: &str, value: &toml::Value, rendered: &str) -> (&'static str, String) {
    match value {
        toml::Value::String(s) => ("--set-string", format!("{key}={}", helm_escape(s))),
        toml::Value::Array(items) if !items.is_empty() && items.iter().all(toml::Value::is_str) => {
            let items: Vec<String> = items.iter().filter_map(toml::Value::as_str).map(helm_escape).collect();
            ("--set-string", format!("{key}={{{}}}", items.join(",")))
        }
        _ => ("--set", format!("{key}={rendered}")),
    }
}

/// `cilium install --version <pinned> --kubeconfig <admin-internal> --set key=value ...`, one `--set` per value
/// the harness derives, and per `cilium.values` entry its own flag ([`user_value`]).
pub fn install_argv(spec: &ClusterSpec, kubeconfig: &Path) -> Vec<String> {
    install_argv_from(spec, kubeconfig, None)
}

/// [`install_argv`] with the chart from `chart_dir` (the locked chart archive unpacked on the node) instead of
/// the one the CLI embeds for `--version`: without `--chart-directory` the CLI takes the embedded chart of that
/// version or downloads it from helm.cilium.io, which a node without egress cannot; with it, the chart's own
/// version is installed and `--version` is not consulted (cilium/cilium-cli vendor/.../internal/helm/helm.go
/// `ResolveHelmChartVersion`, v0.19.7; the flag in cli/install.go at v0.18.4 and v0.19.7).
pub fn install_argv_from(spec: &ClusterSpec, kubeconfig: &Path, chart_dir: Option<&Path>) -> Vec<String> {
    let chart = match chart_dir {
        Some(dir) => ["--chart-directory".to_string(), dir.display().to_string()],
        None => ["--version".to_string(), spec.versions.pins().cilium],
    };
    let mut argv = vec![CILIUM_CLI.to_string(), "install".to_string()];
    argv.extend(chart);
    argv.extend(["--kubeconfig".to_string(), kubeconfig.display().to_string()]);
    let derived = crate::spec::cilium_derived_keys(spec);
    for (k, v) in install_values(spec) {
        let (flag, set) = match spec.cilium.values.get(&k) {
            Some(user) if !derived.contains(&k.as_str()) => user_value(&k, user, &v),
            _ => ("--set", format!("{k}={v}")),
        };
        argv.push(flag.to_string());
        argv.push(set);
    }
    argv
}

/// A duration as Go's time.ParseDuration reads it (what a cobra DurationVar flag takes).
fn go_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// `cilium status --wait --interactive=false --wait-duration <cilium.status_wait> --kubeconfig <admin-internal>`:
/// the seed's command, written to a file rather than a terminal. `--interactive` defaults to true, "Refresh the
/// status summary output after each retry when --wait flag is specified" (cilium-cli v0.18.4 and v0.19.7
/// cli/status.go), which status/k8s.go does with ANSI cursor-up and erase-line (`\033[A\033[2K`) every retry:
/// a file would hold every redraw and the escapes.
pub fn status_argv(spec: &ClusterSpec, kubeconfig: &Path) -> Vec<String> {
    vec![
        CILIUM_CLI.to_string(),
        "status".to_string(),
        "--wait".to_string(),
        "--interactive=false".to_string(),
        "--wait-duration".to_string(),
        go_duration(spec.cilium.status_wait),
        "--kubeconfig".to_string(),
        kubeconfig.display().to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> std::path::PathBuf {
        crate::bootstrap::Layout::default().root_kubeconfig
    }

    /// The `--set` and `--set-string` values of an argv, in order.
    fn sets(argv: &[String]) -> Vec<(String, String)> {
        argv.windows(2)
            .filter(|w| w[0] == "--set" || w[0] == "--set-string")
            .map(|w| {
                let (k, v) = w[1].split_once('=').expect("key=value");
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    #[test]
    fn a_locked_chart_is_installed_from_its_directory_and_its_keys_check_the_values() {
        let mut spec = ClusterSpec::default();
        spec.versions.named.insert(crate::spec::VersionKey::Cilium, "1.18.3".into());
        let dir = Path::new("/var/lib/kthw/cilium-chart/cilium");
        let argv = install_argv_from(&spec, &root(), Some(dir));
        assert_eq!(
            argv[..4],
            ["/usr/local/bin/cilium", "install", "--chart-directory", "/var/lib/kthw/cilium-chart/cilium"]
        );
        assert!(!argv.iter().any(|a| a == "--version"), "the chart's own version is installed: {argv:?}");
        assert_eq!(install_argv_from(&spec, &root(), None)[2..4], ["--version", "1.18.3"]);

        // No key list is compiled in for 1.18.3: the lock's, read from that chart, decides.
        spec.cilium.values.insert("hubble.enabled".into(), true.into());
        let Err(CiliumValuesError::KeysUnknown { chart, .. }) = validate_values_with(&spec, &[]) else {
            panic!("no keys for 1.18.3 and none from a lock: refused")
        };
        assert_eq!(chart, "1.18.3");
        let keys = vec!["image".to_string(), "hubble".to_string()];
        assert_eq!(validate_values_with(&spec, &keys), Ok(()));
        let Err(CiliumValuesError::Unknown(err)) = validate_values_with(&spec, &keys[..1]) else { panic!("unknown") };
        assert_eq!((err.top.as_str(), err.chart.as_str()), ("hubble", "1.18.3"));
        // Without a lock that read the chart, the values are refused as uncheckable, naming how to check them.
        let err = validate_values_with(&spec, &[]).unwrap_err();
        assert_eq!(err, CiliumValuesError::KeysUnknown { chart: "1.18.3".into(), keys: vec!["hubble.enabled".into()] });
        let text = err.to_string();
        assert!(text.contains("Cilium 1.18.3 Helm chart are unknown until `kthw versions lock`"), "{text}");
        assert!(text.contains("1.17.4 and 1.19.5"), "{text}");
        spec.cilium.values.clear();
        assert_eq!(validate_values_with(&spec, &[]), Ok(()), "nothing to check");
    }

    #[test]
    fn the_install_sets_exactly_the_seeds_table_and_the_cluster_nic() {
        let spec = ClusterSpec::default();
        let argv = install_argv(&spec, &root());
        assert_eq!(
            argv[..6],
            ["/usr/local/bin/cilium", "install", "--version", "1.17.4", "--kubeconfig", "/root/.kube/config"]
        );
        let expected: Vec<(String, String)> = [
            // seed/cilium-bootstrap.md, "Key Installation Parameters Explained".
            ("devices", "eth0"),
            ("ipam.mode", "cluster-pool"),
            ("ipam.operator.clusterPoolIPv4MaskSize", "24"),
            ("ipam.operator.clusterPoolIPv4PodCIDRList", "10.200.0.0/16"),
            ("k8sServiceHost", "10.0.0.4"),
            ("k8sServicePort", "6443"),
            ("kubeProxyReplacement", "true"),
            ("nodePort.directRoutingDevice", "eth0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(sets(&argv), expected);
        assert_eq!(argv.len(), 6 + 2 * expected.len(), "nothing else: {argv:?}");
        // The current set installs its own Cilium with the same values: the chart the CLI embeds (1.19.5)
        // still has each of them (values.schema.json: kubeProxyReplacement, k8sServiceHost, k8sServicePort,
        // ipam, nodePort; templates/cilium-configmap.yaml reads .Values.devices and nodePort.directRoutingDevice).
        let current = ClusterSpec { versions: crate::spec::VersionSet::Current.into(), ..spec.clone() };
        let argv = install_argv(&current, &root());
        assert_eq!(argv[2..4], ["--version", "1.19.5"]);
        assert_eq!(sets(&argv), expected);
    }

    #[test]
    fn spec_values_are_added_and_may_choose_other_devices() {
        let mut spec = ClusterSpec::default();
        spec.cilium.values.insert("hubble.relay.enabled".into(), toml::Value::Boolean(true));
        spec.cilium.values.insert("devices".into(), toml::Value::Array(vec!["eth0".into(), "eth1".into()]));
        let sets = sets(&install_argv(&spec, &root()));
        assert!(sets.contains(&("hubble.relay.enabled".into(), "true".into())));
        assert!(sets.contains(&("devices".into(), "{eth0,eth1}".into())), "{sets:?}");
        assert_eq!(sets.iter().filter(|(k, _)| k == "devices").count(), 1);
    }

    /// The value Helm's strvals reads from an escaped string: the inverse of [`helm_escape`], as `runesUntil`
    /// does it (a backslash takes the next rune), stopping at an unescaped `,` as `val` does.
    fn strvals_read(v: &str) -> (String, &str) {
        let mut out = String::new();
        let mut chars = v.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => out.extend(chars.next().map(|(_, c)| c)),
                ',' => return (out, &v[i..]),
                c => out.push(c),
            }
        }
        (out, "")
    }

    #[test]
    fn string_values_reach_helm_as_strings_with_commas_escaped() {
        let mut spec = ClusterSpec::default();
        let v = |s: &str| toml::Value::String(s.into());
        spec.cilium.values.insert("cluster.name".into(), v("true"));
        spec.cilium.values.insert("podAnnotations.team".into(), v("a,b=c"));
        spec.cilium.values.insert("extraConfig.x".into(), v("{not a list}\\"));
        spec.cilium.values.insert("hubble.relay.enabled".into(), toml::Value::Boolean(true));
        spec.cilium.values.insert("operator.replicas".into(), toml::Value::Integer(1));
        spec.cilium.values.insert("egressMasqueradeInterfaces".into(), toml::Value::Array(vec![v("eth0"), v("null")]));
        let argv = install_argv(&spec, &root());
        let flag = |kv: &str| argv.iter().position(|a| a == kv).map(|i| argv[i - 1].as_str());
        assert_eq!(flag("cluster.name=true"), Some("--set-string"), "{argv:?}");
        assert_eq!(flag("podAnnotations.team=a\\,b=c"), Some("--set-string"), "{argv:?}");
        assert_eq!(flag("extraConfig.x=\\{not a list\\}\\\\"), Some("--set-string"), "{argv:?}");
        assert_eq!(flag("egressMasqueradeInterfaces={eth0,null}"), Some("--set-string"), "{argv:?}");
        assert_eq!(flag("hubble.relay.enabled=true"), Some("--set"));
        assert_eq!(flag("operator.replicas=1"), Some("--set"));
        // The seed's values stay `--set`, as the seed ran them.
        assert_eq!(flag("kubeProxyReplacement=true"), Some("--set"));
        assert_eq!(flag("ipam.mode=cluster-pool"), Some("--set"));
        // What strvals reads back is the string as written, in one value.
        for s in ["a,b=c", "{not a list}\\", "plain"] {
            assert_eq!(strvals_read(&helm_escape(s)), (s.to_string(), ""), "{s}");
        }
    }

    #[test]
    fn the_cluster_nic_is_eth0_because_the_image_keeps_kernel_names_and_the_management_nic_comes_last() {
        let recipe: toml::Value = toml::from_str(&crate::bootstrap::tests::images_debian("recipe.toml")).unwrap();
        let cmdline = recipe["cmdline"].as_str().unwrap();
        assert!(cmdline.split_whitespace().any(|a| a == "net.ifnames=0"), "{cmdline}");
        // libvirt places the cluster NIC at the first free slot (0x02 or 0x03, after the host bridge and
        // the IDE/ISA bridge of the `pc` machine); the management NIC is passed to QEMU at this one.
        const { assert!(crate::virt::domain::MANAGEMENT_PCI_SLOT >= 0x10) };
        assert_eq!(CLUSTER_NIC, "eth0");
    }

    #[test]
    fn status_waits_as_long_as_the_spec_says() {
        let mut spec = ClusterSpec::default();
        assert_eq!(
            status_argv(&spec, &root()),
            [
                "/usr/local/bin/cilium",
                "status",
                "--wait",
                "--interactive=false",
                "--wait-duration",
                "180s",
                "--kubeconfig",
                "/root/.kube/config"
            ]
        );
        spec.cilium.status_wait = Duration::from_millis(90_500);
        assert_eq!(status_argv(&spec, &root())[5], "90500ms");
    }

    #[test]
    fn every_value_the_harness_sets_is_a_key_of_each_pinned_chart() {
        for set in crate::spec::VersionSet::ALL {
            let spec = ClusterSpec { versions: set.into(), ..ClusterSpec::default() };
            let keys = chart_top_level_keys(&spec.versions.pins().cilium).expect("a key list per pinned chart");
            for key in install_values(&spec).keys() {
                assert!(keys.contains(&top_level(key).as_str()), "{set}: {key}");
            }
            assert!(keys.windows(2).all(|w| w[0] < w[1]), "{set}: sorted, no duplicates");
        }
        let (old, new) = (chart_top_level_keys("1.17.4").unwrap(), chart_top_level_keys("1.19.5").unwrap());
        assert_eq!((old.len(), new.len()), (182, 187));
        let removed: Vec<&str> = old.iter().filter(|k| !new.contains(k)).copied().collect();
        let added: Vec<&str> = new.iter().filter(|k| !old.contains(k)).copied().collect();
        assert_eq!(removed.len(), 11, "{removed:?}");
        assert_eq!(added.len(), 16, "{added:?}");
        assert!(removed.contains(&"enableCiliumEndpointSlice"));
        for k in ["k8sServiceHostRef", "localRedirectPolicies", "standaloneDnsProxy"] {
            assert!(added.contains(&k), "{k}");
        }
    }

    fn validate_values(spec: &ClusterSpec) -> Result<(), CiliumValuesError> {
        validate_values_with(spec, &[])
    }

    #[test]
    fn an_unknown_value_is_an_error_naming_it() {
        let mut spec = ClusterSpec::default();
        spec.cilium.values.insert("hubble.relay.enabled".into(), toml::Value::Boolean(true));
        assert_eq!(validate_values(&spec), Ok(()));
        spec.cilium.values.insert("kubeProxyReplacment".into(), toml::Value::Boolean(true));
        let Err(CiliumValuesError::Unknown(err)) = validate_values(&spec) else { panic!("a typo is refused") };
        assert_eq!(err.top, "kubeProxyReplacment");
        let text = err.to_string();
        assert!(text.contains("\"kubeProxyReplacment\"") && text.contains("1.17.4"), "{text}");
        // Per set: a key 1.19.5 removed passes the seed set and fails the current one, naming 1.19.5.
        let mut spec = ClusterSpec::default();
        spec.cilium.values.insert("enableCiliumEndpointSlice".into(), toml::Value::Boolean(true));
        assert_eq!(validate_values(&spec), Ok(()));
        spec.versions = crate::spec::VersionSet::Current.into();
        let text = validate_values(&spec).unwrap_err().to_string();
        assert!(text.contains("\"enableCiliumEndpointSlice\"") && text.contains("Cilium 1.19.5"), "{text}");
        spec.cilium.values.clear();
        spec.cilium.values.insert("standaloneDnsProxy.enabled".into(), toml::Value::Boolean(false));
        assert_eq!(validate_values(&spec), Ok(()));
        assert_eq!(top_level("ipam.operator.clusterPoolIPv4PodCIDRList"), "ipam");
        assert_eq!(top_level("extraArgs[0]"), "extraArgs");
        assert_eq!(top_level("podAnnotations.example\\.com/team"), "podAnnotations");
        assert_eq!(top_level("a\\.b.c"), "a.b");
    }
}
