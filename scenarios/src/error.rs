//! Why a scenario could not run to its verdict. A check that fails is not an error: it is a [`crate::Report`]
//! that did not pass.

use std::path::PathBuf;
use std::time::Duration;

use kthw::bootstrap::{render_lacks, BootstrapError, Lack};
use kthw::cluster::ClusterError;
use kthw::phase::Phase;
use kthw::ssh::SshError;
use kthw::testkit::TestError;
use kthw::up::UpError;

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("no scenario is named {name:?}; the scenarios are: {}", known.join(", "))]
    Unknown { name: String, known: Vec<&'static str> },
    #[error(
        "scenario {scenario} needs {} artifact{} this host lacks; no VM was booted:\n{}",
        lacks.len(),
        if lacks.len() == 1 { "" } else { "s" },
        render_lacks(lacks)
    )]
    MissingArtifacts { scenario: &'static str, lacks: Vec<Lack> },
    #[error("scenario {scenario}: its cluster did not come up")]
    Up {
        scenario: &'static str,
        #[source]
        source: Box<UpError>,
    },
    #[error("scenario {scenario}: cannot open cluster {cluster}")]
    Open {
        scenario: &'static str,
        cluster: String,
        #[source]
        source: Box<ClusterError>,
    },
    #[error(
        "scenario {scenario} cannot run on cluster {cluster}: {why}\n  hint: without --on, `kthw scenario run \
         {scenario}` brings up a cluster of its own"
    )]
    Unsuitable { scenario: &'static str, cluster: String, why: String },
    #[error("scenario {scenario} cannot run on this spec: {why}; no VM was booted")]
    Unfit { scenario: &'static str, why: String },
    #[error("scenario {scenario}: phase {phase} failed")]
    Phase {
        scenario: &'static str,
        phase: Phase,
        #[source]
        source: Box<BootstrapError>,
    },
    #[error("scenario {scenario}: on {node}: {cmd}")]
    Ssh {
        scenario: &'static str,
        node: String,
        cmd: String,
        #[source]
        source: Box<SshError>,
    },
    #[error("scenario {scenario}: on {node}, `{cmd}` failed ({status}):\n{output}")]
    Command { scenario: &'static str, node: String, cmd: String, status: String, output: String },
    #[error("scenario {scenario}: {what}")]
    Kube {
        scenario: &'static str,
        what: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("scenario {scenario}: {what} did not happen within {waited:.0?}; last seen: {last}")]
    Timeout { scenario: &'static str, what: String, waited: Duration, last: String },
    #[error("scenario {scenario}")]
    Test {
        scenario: &'static str,
        #[source]
        source: Box<TestError>,
    },
    #[error("scenario {scenario}: cannot write {}", path.display())]
    Io {
        scenario: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
