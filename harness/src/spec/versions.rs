//! The spec's `versions`: a preset (`"seed"`, `"current"`) or a `[versions]` table naming any component's
//! version, the components it does not name taken from its `preset` (the seed's by default).
//!
//! Whether upstream supports the combination is [`super::support`]'s question; which files and images the
//! versions mean, with their published sums, is the lock's (`kthw versions lock`).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A named set of component versions, each pinned with its published sums in `harness/artifacts.toml` (whose
/// test holds the two in agreement): the locks kthw ships.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VersionSet {
    /// The seed's cluster: Kubernetes 1.32, Cilium 1.17 (both past upstream support since).
    #[default]
    Seed,
    /// The newest Kubernetes, Cilium, cilium CLI, etcd, containerd and CoreDNS upstream supports together
    /// (why each was chosen is in `harness/artifacts.toml`).
    Current,
}

/// Why a version set name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown version set {:?}: choose one of {}", .0, VersionSet::NAMES.join(", "))]
pub struct UnknownVersionSet(pub String);

impl VersionSet {
    pub const ALL: [VersionSet; 2] = [VersionSet::Seed, VersionSet::Current];
    pub const NAMES: [&'static str; 2] = [VersionSet::Seed.name(), VersionSet::Current.name()];

    pub const fn name(self) -> &'static str {
        match self {
            VersionSet::Seed => "seed",
            VersionSet::Current => "current",
        }
    }

    /// The version of each component this set pins.
    pub fn pins(self) -> Versions {
        let v = |[kubernetes, etcd, containerd, runc, cni_plugins, cilium, cilium_cli, coredns]: [&str; 8]| Versions {
            kubernetes: kubernetes.to_string(),
            etcd: etcd.to_string(),
            containerd: containerd.to_string(),
            runc: runc.to_string(),
            cni_plugins: cni_plugins.to_string(),
            cilium: cilium.to_string(),
            cilium_cli: cilium_cli.to_string(),
            coredns: coredns.to_string(),
        };
        match self {
            VersionSet::Seed => v(["1.32.4", "3.5.21", "1.7.27", "1.2.5", "1.6.2", "1.17.4", "0.18.4", "1.12.1"]),
            VersionSet::Current => v(["1.35.4", "3.6.14", "2.2.7", "1.3.6", "1.9.1", "1.19.5", "0.19.7", "1.14.6"]),
        }
    }
}

impl std::str::FromStr for VersionSet {
    type Err = UnknownVersionSet;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        VersionSet::ALL.into_iter().find(|v| v.name() == s).ok_or_else(|| UnknownVersionSet(s.to_string()))
    }
}

impl fmt::Display for VersionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One component a spec can name a version of: a key of the `[versions]` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VersionKey {
    Kubernetes,
    Etcd,
    Containerd,
    Runc,
    CniPlugins,
    Cilium,
    CiliumCli,
    Coredns,
}

impl VersionKey {
    pub const ALL: [VersionKey; 8] = [
        VersionKey::Kubernetes,
        VersionKey::Etcd,
        VersionKey::Containerd,
        VersionKey::Runc,
        VersionKey::CniPlugins,
        VersionKey::Cilium,
        VersionKey::CiliumCli,
        VersionKey::Coredns,
    ];

    /// Its key in the `[versions]` table (and the `component` of its artifacts in a manifest or lock).
    pub const fn key(self) -> &'static str {
        match self {
            VersionKey::Kubernetes => "kubernetes",
            VersionKey::Etcd => "etcd",
            VersionKey::Containerd => "containerd",
            VersionKey::Runc => "runc",
            VersionKey::CniPlugins => "cni_plugins",
            VersionKey::Cilium => "cilium",
            VersionKey::CiliumCli => "cilium_cli",
            VersionKey::Coredns => "coredns",
        }
    }

    pub fn from_key(key: &str) -> Option<VersionKey> {
        VersionKey::ALL.into_iter().find(|c| c.key() == key)
    }
}

impl fmt::Display for VersionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// The version of every component: a preset's pins, or a spec's once its table is applied.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Versions {
    pub kubernetes: String,
    pub etcd: String,
    pub containerd: String,
    pub runc: String,
    pub cni_plugins: String,
    pub cilium: String,
    pub cilium_cli: String,
    pub coredns: String,
}

impl Versions {
    pub fn get(&self, c: VersionKey) -> &str {
        match c {
            VersionKey::Kubernetes => &self.kubernetes,
            VersionKey::Etcd => &self.etcd,
            VersionKey::Containerd => &self.containerd,
            VersionKey::Runc => &self.runc,
            VersionKey::CniPlugins => &self.cni_plugins,
            VersionKey::Cilium => &self.cilium,
            VersionKey::CiliumCli => &self.cilium_cli,
            VersionKey::Coredns => &self.coredns,
        }
    }

    fn get_mut(&mut self, c: VersionKey) -> &mut String {
        match c {
            VersionKey::Kubernetes => &mut self.kubernetes,
            VersionKey::Etcd => &mut self.etcd,
            VersionKey::Containerd => &mut self.containerd,
            VersionKey::Runc => &mut self.runc,
            VersionKey::CniPlugins => &mut self.cni_plugins,
            VersionKey::Cilium => &mut self.cilium,
            VersionKey::CiliumCli => &mut self.cilium_cli,
            VersionKey::Coredns => &mut self.coredns,
        }
    }

    /// What differs from `other`, one `component A -> B` per component, in table order.
    pub fn differences(&self, other: &Versions) -> Vec<String> {
        VersionKey::ALL
            .into_iter()
            .filter(|c| self.get(*c) != other.get(*c))
            .map(|c| format!("{c} {} -> {}", self.get(c), other.get(c)))
            .collect()
    }
}

impl fmt::Display for Versions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = VersionKey::ALL.iter().map(|c| format!("{c} {}", self.get(*c))).collect();
        f.write_str(&parts.join(", "))
    }
}

/// A release version as the `[versions]` table takes it: `MAJOR.MINOR.PATCH`, digits only (a leading `v`, as
/// tags and bug reports write it, is dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Release {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Release {
    pub fn parse(text: &str) -> Option<Release> {
        let t = text.strip_prefix('v').unwrap_or(text);
        let mut parts = t.split('.');
        let mut next = || -> Option<u32> {
            let p = parts.next()?;
            (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && (p == "0" || !p.starts_with('0')))
                .then(|| p.parse().ok())
                .flatten()
        };
        let r = Release { major: next()?, minor: next()?, patch: next()? };
        parts.next().is_none().then_some(r)
    }

    /// `MAJOR.MINOR`, the granularity of every support table.
    pub fn minor_version(self) -> (u32, u32) {
        (self.major, self.minor)
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The spec's `versions`: a preset, and the components the spec names a version of instead of the preset's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct VersionSpec {
    /// Where the components the table does not name come from (`preset` in the table; the seed's by default).
    pub preset: VersionSet,
    /// The versions the table names, normalised (`v1.33.5` is `1.33.5`).
    pub named: BTreeMap<VersionKey, String>,
}

impl From<VersionSet> for VersionSpec {
    fn from(preset: VersionSet) -> VersionSpec {
        VersionSpec { preset, named: BTreeMap::new() }
    }
}

impl VersionSpec {
    /// Every component's version: the preset's, with the table's applied.
    pub fn pins(&self) -> Versions {
        let mut v = self.preset.pins();
        for (c, version) in &self.named {
            *v.get_mut(*c) = version.clone();
        }
        v
    }

    /// The preset these versions are exactly, if any: its shipped lock applies and nothing needs resolving.
    pub fn as_preset(&self) -> Option<VersionSet> {
        let pins = self.pins();
        VersionSet::ALL.into_iter().find(|s| s.pins() == pins)
    }

    /// `seed`, `current`, or `custom (kubernetes 1.33.5, cilium 1.18.3 over seed)`: for logs and bundles.
    pub fn describe(&self) -> String {
        match self.as_preset() {
            Some(set) => set.to_string(),
            None => {
                let base = self.preset.pins();
                let named: Vec<String> = self
                    .named
                    .iter()
                    .filter(|(c, v)| base.get(**c) != v.as_str())
                    .map(|(c, v)| format!("{c} {v}"))
                    .collect();
                format!("custom ({} over {})", named.join(", "), self.preset)
            }
        }
    }
}

impl fmt::Display for VersionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// A preset as its name; anything else as a table of the preset and the components that differ from it, so
/// `kthw spec show` writes back what reads the same.
impl Serialize for VersionSpec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        if let Some(set) = self.as_preset() {
            return serializer.serialize_str(set.name());
        }
        let base = self.preset.pins();
        let differing: Vec<(&VersionKey, &String)> =
            self.named.iter().filter(|(c, v)| base.get(**c) != v.as_str()).collect();
        let mut map = serializer.serialize_map(Some(differing.len() + 1))?;
        map.serialize_entry("preset", self.preset.name())?;
        for (c, v) in differing {
            map.serialize_entry(c.key(), v)?;
        }
        map.end()
    }
}

/// A preset's name, or a table: `preset` and any of the component keys, each a `MAJOR.MINOR.PATCH` release.
/// Specs and failure bundles written before versions were free carry a full table of five components: it reads
/// as what it names (the seed's preset when it names the seed's pins).
impl<'de> Deserialize<'de> for VersionSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameOrTable;
        impl<'de> serde::de::Visitor<'de> for NameOrTable {
            type Value = VersionSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(
                    f,
                    "a version preset name ({}) or a [versions] table of preset and component versions",
                    VersionSet::NAMES.join(", ")
                )
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<VersionSpec, E> {
                name.parse::<VersionSet>().map(VersionSpec::from).map_err(E::custom)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<VersionSpec, A::Error> {
                use serde::de::Error;
                let mut spec = VersionSpec::default();
                while let Some(key) = map.next_key::<String>()? {
                    if key == "preset" {
                        let name: String = map.next_value()?;
                        spec.preset = name.parse().map_err(A::Error::custom)?;
                        continue;
                    }
                    let Some(c) = VersionKey::from_key(&key) else {
                        let keys: Vec<&str> = VersionKey::ALL.iter().map(|c| c.key()).collect();
                        return Err(A::Error::custom(format!(
                            "unknown [versions] key {key:?}: the table takes preset ({}) and {}",
                            VersionSet::NAMES.join(" or "),
                            keys.join(", ")
                        )));
                    };
                    let text: String = map.next_value()?;
                    let release = Release::parse(text.trim()).ok_or_else(|| {
                        A::Error::custom(format!(
                            "versions.{key} = {text:?} is not a release version: write MAJOR.MINOR.PATCH as upstream \
                             tags it, e.g. {:?}",
                            VersionSet::Seed.pins().get(c)
                        ))
                    })?;
                    if spec.named.insert(c, release.to_string()).is_some() {
                        return Err(A::Error::custom(format!("versions.{key} is given twice")));
                    }
                }
                // What the table names as the preset has it is the preset's: two tables that mean the same
                // versions are the same spec (and the same golden snapshot key).
                let base = spec.preset.pins();
                spec.named.retain(|c, v| base.get(*c) != v.as_str());
                Ok(spec)
            }
        }
        deserializer.deserialize_any(NameOrTable)
    }
}
