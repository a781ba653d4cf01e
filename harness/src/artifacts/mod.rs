//! Pinned upstream artifacts: version, URL and published checksum; download, verify, cache.
//!
//! The manifest is `harness/artifacts.toml`, compiled in. A cache directory holds each file artifact as
//! `<dir>/<name>/<upstream_version>/<file>` and each image as `<dir>/images/<name>-<tag>.oci.tar`, each with a
//! `.verified` marker holding the sum it was checked against, so that listing does not rehash gigabytes.
//! The same layout in any directory is an air-gapped artifact directory.

mod cache;
mod checksum;
pub mod debian;
mod download;
mod mirror;
#[cfg(test)]
pub(crate) mod test_server;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use cache::{Cache, Entry, Missing, State};
pub use checksum::{Algorithm, Checksum};
pub use download::{Attempt, Download, DownloadError};
pub use mirror::Mirror;

use crate::phase::Phase;
use crate::spec::{ClusterSpec, Origin, VersionKey, VersionSet};

/// The artifacts `containerd_from = "debian"` replaces with the node image's packages.
pub const CONTAINER_RUNTIME: [&str; 3] = ["containerd", "runc", "cni-plugins"];

const MANIFEST: &str = include_str!("../../artifacts.toml");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    File,
    Image,
}

/// One pinned artifact: an entry of the shipped manifest or of a lock (`crate::lock`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    pub name: String,
    /// The preset this pin belongs to in the shipped manifest (a name is unique within a set); none in a lock,
    /// which holds one set of versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<VersionSet>,
    pub kind: Kind,
    /// The `[versions]` key of the spec that pins it (`spec::VersionKey`): kubernetes, etcd, containerd, ...
    pub component: String,
    /// That spec version.
    pub version: String,
    /// The upstream tag in the URL or image reference.
    pub upstream_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Where the checksum was published.
    pub source: String,
    /// Why there is no published sum, when there is none: fetch refuses such an artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_checksum: Option<String>,
    /// The phases that need it (by their names in the manifest; an unknown name fails the parse).
    pub phases: Vec<Phase>,
    /// The scenarios (kthw-scenarios) that need it beyond what their phases do, by scenario name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scenarios: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(rename = "artifact")]
    pub artifacts: Vec<Artifact>,
}

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("artifact manifest {origin}: {message}")]
    Manifest { origin: String, message: String },
    #[error("{name}: no published checksum is pinned ({reason}); refusing to fetch what cannot be verified")]
    NoChecksum { name: String, reason: String },
    #[error(
        "cannot download {name} from {url}\n  if this host cannot reach it, run `kthw artifacts fetch --dir DIR` where \
         it can and pass `--artifacts-dir DIR` here, or fetch through a mirror (`--mirror URL`)"
    )]
    Download {
        name: String,
        url: String,
        #[source]
        source: DownloadError,
    },
    #[error("cannot run skopeo to pull image {reference}: install it (`apt-get install skopeo`)")]
    Skopeo {
        reference: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot pull image {reference}: skopeo exited with {status} (its messages are above)")]
    Pull { reference: String, status: std::process::ExitStatus },
    #[error("cannot keep image {name} as pulled")]
    Image {
        name: String,
        #[source]
        source: Box<crate::oci::OciError>,
    },
    #[error("artifact mirror {value:?} {why}: give an http(s) URL such as https://mirror.example/kthw")]
    Mirror { value: String, why: &'static str },
    #[error("checksum mismatch for {name} ({}); the file was deleted\n  expected {expected}\n  actual   {actual}", path.display())]
    Mismatch { name: String, path: PathBuf, expected: String, actual: String },
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Manifest {
    /// The manifest compiled into kthw: every version set.
    pub fn pinned() -> Manifest {
        Manifest::parse(MANIFEST, "harness/artifacts.toml").expect("the compiled-in artifact manifest is valid")
    }

    /// Parses and checks a manifest: see [`Manifest::check`].
    pub fn parse(text: &str, origin: &str) -> Result<Manifest, ArtifactError> {
        let m: Manifest = toml::from_str(text)
            .map_err(|e| ArtifactError::Manifest { origin: origin.to_string(), message: e.message().to_string() })?;
        Manifest::check(&m.artifacts, origin)?;
        Ok(m)
    }

    /// Every artifact has a URL or reference matching its kind, either a well-formed sum or a reason it has
    /// none, a phase or scenario that needs it, and a name unique within its set.
    pub fn check(artifacts: &[Artifact], origin: &str) -> Result<(), ArtifactError> {
        let bad = |message: String| ArtifactError::Manifest { origin: origin.to_string(), message };
        for a in artifacts {
            let (locator, sum) = match a.kind {
                Kind::File => (&a.url, &a.checksum),
                Kind::Image => (&a.reference, &a.digest),
            };
            if locator.is_none() {
                return Err(bad(format!("{}: a {:?} artifact needs a {}", a.name, a.kind, a.locator_field())));
            }
            match (sum, &a.missing_checksum) {
                (Some(s), None) => {
                    Checksum::parse(s).map_err(|e| bad(format!("{}: {e}", a.name)))?;
                }
                (None, Some(_)) => {}
                (Some(_), Some(_)) => return Err(bad(format!("{}: has a sum and a missing_checksum reason", a.name))),
                (None, None) => return Err(bad(format!("{}: no checksum and no missing_checksum reason", a.name))),
            }
            if a.phases.is_empty() && a.scenarios.is_empty() {
                return Err(bad(format!("{}: names no phase or scenario that needs it", a.name)));
            }
            if VersionKey::from_key(&a.component).is_none() {
                return Err(bad(format!("{}: component {:?} is no [versions] key", a.name, a.component)));
            }
            if artifacts.iter().filter(|b| b.set == a.set && b.name == a.name).count() > 1 {
                let within = a.set.map_or("the lock".to_string(), |s| format!("the {s} set"));
                return Err(bad(format!("{}: pinned more than once in {within}", a.name)));
            }
        }
        Ok(())
    }

    /// Only the artifacts of one version set, in which each name is unique (so [`Manifest::get`] is
    /// unambiguous).
    pub fn for_set(&self, set: VersionSet) -> Manifest {
        Manifest { artifacts: self.artifacts.iter().filter(|a| a.set == Some(set)).cloned().collect() }
    }

    /// The version sets this manifest pins, in order.
    pub fn sets(&self) -> Vec<VersionSet> {
        let mut sets: Vec<VersionSet> = self.artifacts.iter().filter_map(|a| a.set).collect();
        sets.sort();
        sets.dedup();
        sets
    }

    /// The artifacts of the spec's versions the phases up to and including `until` need (etcd from Debian
    /// needs no upstream etcd): a lock's all, the shipped manifest's those of the spec's preset.
    pub fn needed_until(&self, spec: &ClusterSpec, until: Phase) -> Vec<&Artifact> {
        let preset = spec.versions.as_preset();
        self.artifacts
            .iter()
            .filter(|a| a.set.is_none() || a.set == preset)
            .filter(|a| a.phases.iter().any(|p| *p <= until))
            .filter(|a| !(a.component == "etcd" && spec.etcd_from == Origin::Debian))
            .filter(|a| !(CONTAINER_RUNTIME.contains(&a.name.as_str()) && spec.containerd_from == Origin::Debian))
            .collect()
    }

    /// The artifact `name`: call it on one set's manifest ([`Manifest::for_set`]); on the whole manifest it
    /// is the first set's pin of that name.
    pub fn get(&self, name: &str) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| a.name == name)
    }
}

impl Artifact {
    fn locator_field(&self) -> &'static str {
        match self.kind {
            Kind::File => "url",
            Kind::Image => "reference",
        }
    }

    /// The URL (files) or image reference (images).
    pub fn locator(&self) -> &str {
        match self.kind {
            Kind::File => self.url.as_deref(),
            Kind::Image => self.reference.as_deref(),
        }
        .expect("Manifest::parse checked the locator")
    }

    /// The published sum, or why there is none.
    pub fn sum(&self) -> Result<Checksum, ArtifactError> {
        let text = match self.kind {
            Kind::File => self.checksum.as_deref(),
            Kind::Image => self.digest.as_deref(),
        };
        match text {
            Some(t) => Ok(Checksum::parse(t).expect("Manifest::parse checked the sum")),
            None => Err(ArtifactError::NoChecksum {
                name: self.name.clone(),
                reason: self.missing_checksum.clone().unwrap_or_default(),
            }),
        }
    }

    /// The version the spec pins for this artifact's component.
    pub fn spec_version(&self, spec: &ClusterSpec) -> Option<String> {
        let key = VersionKey::from_key(&self.component)?;
        Some(spec.versions.pins().get(key).to_string())
    }
}

#[cfg(test)]
pub(crate) mod published_tests;
#[cfg(test)]
mod tests;
