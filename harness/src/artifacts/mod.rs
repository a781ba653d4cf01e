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
mod test_server;

use std::path::PathBuf;

use serde::Deserialize;

pub use cache::{Cache, Entry, Missing, State};
pub use checksum::{Algorithm, Checksum};
pub use download::{Attempt, Download, DownloadError};
pub use mirror::Mirror;

use crate::phase::Phase;
use crate::spec::{ClusterSpec, Origin, VersionSet};

/// The artifacts `containerd_from = "debian"` replaces with the node image's packages.
pub const CONTAINER_RUNTIME: [&str; 3] = ["containerd", "runc", "cni-plugins"];

const MANIFEST: &str = include_str!("../../artifacts.toml");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    File,
    Image,
}

/// One pinned artifact.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    pub name: String,
    /// The version set (`versions` of the spec) this pin belongs to; a name is unique within a set.
    pub set: VersionSet,
    pub kind: Kind,
    /// The `[versions]` entry of the spec that pins it: kubernetes, etcd, cilium, cilium_cli, coredns.
    pub component: String,
    /// That spec version.
    pub version: String,
    /// The upstream tag in the URL or image reference.
    pub upstream_version: String,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub reference: Option<String>,
    #[serde(default)]
    pub checksum: Option<String>,
    #[serde(default)]
    pub digest: Option<String>,
    /// Where the checksum was published.
    pub source: String,
    /// Why there is no published sum, when there is none: fetch refuses such an artifact.
    #[serde(default)]
    pub missing_checksum: Option<String>,
    /// The phases that need it (by their names in the manifest; an unknown name fails the parse).
    pub phases: Vec<Phase>,
    /// The scenarios (kthw-scenarios) that need it beyond what their phases do, by scenario name.
    #[serde(default)]
    pub scenarios: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
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

    /// Parses and checks a manifest: every artifact has a URL or reference matching its kind, and either a
    /// well-formed sum or a reason it has none.
    pub fn parse(text: &str, origin: &str) -> Result<Manifest, ArtifactError> {
        let bad = |message: String| ArtifactError::Manifest { origin: origin.to_string(), message };
        let m: Manifest = toml::from_str(text).map_err(|e| bad(e.message().to_string()))?;
        for a in &m.artifacts {
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
            if m.artifacts.iter().filter(|b| b.set == a.set && b.name == a.name).count() > 1 {
                return Err(bad(format!("{}: pinned more than once in the {} set", a.name, a.set)));
            }
        }
        Ok(m)
    }

    /// Only the artifacts of one version set, in which each name is unique (so [`Manifest::get`] is
    /// unambiguous).
    pub fn for_set(&self, set: VersionSet) -> Manifest {
        Manifest { artifacts: self.artifacts.iter().filter(|a| a.set == set).cloned().collect() }
    }

    /// The version sets this manifest pins, in order.
    pub fn sets(&self) -> Vec<VersionSet> {
        let mut sets: Vec<VersionSet> = self.artifacts.iter().map(|a| a.set).collect();
        sets.sort();
        sets.dedup();
        sets
    }

    /// The artifacts of the spec's version set the phases up to and including `until` need (etcd from Debian
    /// needs no upstream etcd).
    pub fn needed_until(&self, spec: &ClusterSpec, until: Phase) -> Vec<&Artifact> {
        self.artifacts
            .iter()
            .filter(|a| a.set == spec.versions)
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
        let v = spec.versions.pins();
        Some(match self.component.as_str() {
            "kubernetes" => v.kubernetes,
            "etcd" => v.etcd,
            "cilium" => v.cilium,
            "cilium_cli" => v.cilium_cli,
            "coredns" => v.coredns,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod published_tests;
#[cfg(test)]
mod tests;
