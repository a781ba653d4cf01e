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

/// What went wrong in a test, or made it fail (`TestError::Failed`, from [`crate::testkit::run`]). The
/// variants' fields are what their messages say.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)]
pub enum TestError {
    /// A node name the spec does not have.
    #[error("no node {node} in the cluster's spec; its nodes: {}", known.join(", "))]
    UnknownNode { node: String, known: Vec<String> },
    /// Bringing the cluster up (a golden restore, or the boot and phases) failed.
    #[error("the test's cluster did not come up")]
    Up(#[source] Box<UpError>),
    /// The cluster handle refused (a session that could not be opened, an unknown kept cluster).
    #[error("cluster {cluster}")]
    Cluster {
        cluster: String,
        #[source]
        source: Box<ClusterError>,
    },
    /// A command or transfer on a node failed, or its command did not exit as asked.
    #[error("on {node}: `{cmd}`")]
    Ssh {
        node: String,
        cmd: String,
        #[source]
        source: Box<SshError>,
    },
    /// A wait on a node ended at its deadline; `last` is what it last saw.
    #[error("on {node}: {what} did not happen within {waited:.0?}; last seen: {last}")]
    Timeout { node: String, what: String, waited: Duration, last: String },
    /// A unit waited for does not exist or failed.
    #[error("on {node}: unit {unit} {why}")]
    Unit { node: String, unit: String, why: String },
    /// A fault could not be injected or reverted.
    #[error("fault {fault} on {node}")]
    Fault {
        node: String,
        fault: String,
        #[source]
        source: Box<FaultError>,
    },
    /// No way to the apiserver (the control-plane phase not done, the forward refused).
    #[error("no API client for the test's cluster")]
    Access(#[source] Box<AccessError>),
    /// A call to the apiserver failed.
    #[error("{what}")]
    Kube {
        what: String,
        #[source]
        source: Box<kube::Error>,
    },
    /// The YAML given does not parse.
    #[error("the YAML given does not parse: {why}")]
    Yaml { why: String },
    /// A document lacks what server-side apply needs.
    #[error("document {index} of the YAML given: {why}")]
    Manifest { index: usize, why: String },
    /// The apiserver refused a document: its message, with the document's number, kind and name.
    #[error("the apiserver refused {kind} {name} (document {index}): {message}")]
    Refused { index: usize, kind: String, name: String, message: String },
    /// An object never met its condition; `last` is what it last looked like.
    #[error("{what} did not happen within {waited:.0?}; last seen: {last}")]
    NotReached { what: String, waited: Duration, last: String },
    /// A golden state's name or version cannot key a snapshot.
    #[error("golden state {name:?} (version {version:?}): {why}")]
    GoldenName { name: String, version: String, why: String },
    /// A golden state's setup step failed; nothing was saved. Its source names the bundle made of it.
    #[error("golden state {name} (version {version}): its setup step failed; nothing was saved")]
    Setup {
        name: String,
        version: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Saving or restoring a golden state failed.
    #[error("golden state {name} (version {version})")]
    Golden {
        name: String,
        version: String,
        #[source]
        source: Box<GoldenError>,
    },
    /// Images could not be had or put on the nodes.
    #[error("images")]
    Image(#[source] Box<OciError>),
    /// A file of the host could not be read or made.
    #[error("cannot {what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An environment variable (`KTHW_KEEP`, `KTHW_KEEP_TTL`) holds what it may not.
    #[error("{0}")]
    Env(String),
    /// A check of the test's own did not hold ([`TestError::check`]).
    #[error("{0}")]
    Check(String),
    /// An error of another kind ([`TestError::other`]).
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
    /// The test failed ([`crate::testkit::run`]): its name, its message, and the bundle made of it.
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
