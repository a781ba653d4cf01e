use std::path::PathBuf;
use std::time::Duration;

use super::nodecheck::NodeLacks;
use super::rollout::RolloutStalled;
use super::Lack;
use crate::access::AccessError;
use crate::artifacts::debian::DebError;
use crate::cluster::ClusterError;
use crate::kubeconfig::KubeconfigError;
use crate::oci::OciError;
use crate::phase::Phase;
use crate::pki::PkiError;
use crate::ssh::SshError;

/// Why a phase failed: which phase, on which node, what it waited for and what it last saw.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("phase {phase}")]
    Cluster {
        phase: Phase,
        #[source]
        source: ClusterError,
    },
    #[error("phase {phase}")]
    Ssh {
        phase: Phase,
        #[source]
        source: SshError,
    },
    #[error("phase {phase}")]
    Pki {
        phase: Phase,
        #[source]
        source: PkiError,
    },
    #[error("phase {phase}")]
    Kubeconfig {
        phase: Phase,
        #[source]
        source: KubeconfigError,
    },
    #[error(transparent)]
    Wait(Box<WaitFailed>),
    #[error("phase {phase} needs artifacts this host lacks:\n{}", render_lacks(missing))]
    MissingArtifacts { phase: Phase, missing: Vec<Lack> },
    #[error("phase {phase}: cannot extract {member} from {}: {detail}", tarball.display())]
    Extract { phase: Phase, tarball: PathBuf, member: String, detail: String },
    #[error("phase {phase}: {detail}")]
    Node { phase: Phase, detail: String },
    #[error("phase {phase}: putting an image on a node")]
    Oci {
        phase: Phase,
        #[source]
        source: Box<OciError>,
    },
    #[error("phase {phase}: the host's API client")]
    Access {
        phase: Phase,
        #[source]
        source: Box<AccessError>,
    },
    #[error("phase {phase}: waiting for the workloads it deployed")]
    Rollout {
        phase: Phase,
        #[source]
        source: Box<RolloutStalled>,
    },
    #[error("phase {phase}: {what} failed: {explained}\nits output (kept in {}):\n{tail}", kept.display())]
    Diagnosed { phase: Phase, what: String, explained: String, kept: PathBuf, tail: String },
    #[error("phase {phase}: applying {object}")]
    Apply {
        phase: Phase,
        object: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("phase {phase}: a Debian package the host fetches for the nodes")]
    Deb {
        phase: Phase,
        #[source]
        source: Box<DebError>,
    },
    #[error("phase {phase}")]
    NodeLacks {
        phase: Phase,
        #[source]
        source: Box<NodeLacks>,
    },
    #[error("phase {phase}: the spec: {detail}")]
    Spec { phase: Phase, detail: String },
    #[error("phase {phase}: cannot {action} {}", path.display())]
    Io {
        phase: Phase,
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A wait that ended without the state it waited for.
#[derive(Debug, thiserror::Error)]
#[error(
    "phase {phase} on {node}: waited {waited:?} for {what}\n\
     the check `{check}` last said:\n{last_output}\n\
     {diagnostics}"
)]
pub struct WaitFailed {
    pub phase: Phase,
    pub node: String,
    pub what: String,
    pub waited: Duration,
    pub check: String,
    pub last_output: String,
    /// Why it gave up early, if it did; the unit's state and the last lines of its journal.
    pub diagnostics: String,
}

/// One line per missing artifact: what, where it would be (and what is there instead), and the command that
/// provides it.
pub fn render_lacks(lacks: &[Lack]) -> String {
    lacks
        .iter()
        .map(|l| {
            let at = match &l.found {
                Some(found) => format!("at {}: {found}", l.path.display()),
                None => format!("expected at {}", l.path.display()),
            };
            format!("  - {} (for {}; {at})\n      {}", l.artifact, l.phase, l.command)
        })
        .collect::<Vec<_>>()
        .join("\n")
}
