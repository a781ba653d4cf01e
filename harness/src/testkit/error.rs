//! Why a test's step did not do what it was asked: one enum for the whole test API, each variant naming what
//! was asked, where, and what was seen.

use std::path::PathBuf;
use std::time::Duration;

use crate::access::AccessError;
use crate::cluster::{ClusterError, FaultError};
use crate::golden::GoldenError;
use crate::oci::OciError;
use crate::ssh::SshError;
use crate::up::UpError;

/// What went wrong in a test, or made it fail (`TestError::Failed`, from [`crate::testkit::run`]).
#[derive(Debug, thiserror::Error)]
pub enum TestError {
    #[error("no node {node} in the cluster's spec; its nodes: {}", known.join(", "))]
    UnknownNode { node: String, known: Vec<String> },
    #[error("the test's cluster did not come up")]
    Up(#[source] Box<UpError>),
    #[error("cluster {cluster}")]
    Cluster {
        cluster: String,
        #[source]
        source: Box<ClusterError>,
    },
    #[error("on {node}: `{cmd}`")]
    Ssh {
        node: String,
        cmd: String,
        #[source]
        source: Box<SshError>,
    },
    #[error("on {node}: {what} did not happen within {waited:.0?}; last seen: {last}")]
    Timeout { node: String, what: String, waited: Duration, last: String },
    #[error("on {node}: unit {unit} {why}")]
    Unit { node: String, unit: String, why: String },
    #[error("fault {fault} on {node}")]
    Fault {
        node: String,
        fault: String,
        #[source]
        source: Box<FaultError>,
    },
    #[error("no API client for the test's cluster")]
    Access(#[source] Box<AccessError>),
    #[error("{what}")]
    Kube {
        what: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("the YAML given does not parse: {why}")]
    Yaml { why: String },
    #[error("document {index} of the YAML given: {why}")]
    Manifest { index: usize, why: String },
    #[error("the apiserver refused {kind} {name} (document {index}): {message}")]
    Refused { index: usize, kind: String, name: String, message: String },
    #[error("{what} did not happen within {waited:.0?}; last seen: {last}")]
    NotReached { what: String, waited: Duration, last: String },
    #[error("golden state {name:?} (version {version:?}): {why}")]
    GoldenName { name: String, version: String, why: String },
    #[error("golden state {name} (version {version}): its setup step failed; nothing was saved")]
    Setup {
        name: String,
        version: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("golden state {name} (version {version})")]
    Golden {
        name: String,
        version: String,
        #[source]
        source: Box<GoldenError>,
    },
    #[error("images")]
    Image(#[source] Box<OciError>),
    #[error("cannot {what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Env(String),
    #[error("{0}")]
    Check(String),
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
    #[error("test {test} failed: {message}{}", bundle.as_ref().map(|b| format!("\nfailure bundle: {}", b.display())).unwrap_or_default())]
    Failed { test: String, message: String, bundle: Option<PathBuf> },
}

impl TestError {
    /// A check of the test's own that did not hold: `return Err(TestError::check("3 pods, not 2"))`.
    pub fn check(what: impl Into<String>) -> TestError {
        TestError::Check(what.into())
    }

    /// An error of another kind (the test's own, a library's): `.map_err(TestError::other)?`.
    pub fn other(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> TestError {
        TestError::Other(e.into())
    }
}
