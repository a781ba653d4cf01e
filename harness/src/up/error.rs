//! Why a cluster did not come up, as [`Up::run`](super::Up::run) tells it.

use std::path::PathBuf;

use crate::bootstrap::{render_lacks, BootstrapError, Lack};
use crate::cluster::ClusterError;
use crate::golden::GoldenError;
use crate::image::ImageError;
use crate::phase::Phase;
use crate::rundir::{RunDir, TIMELINE_SVG};

/// Why a cluster did not come up.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error(
        "the phases through {until} need {} artifact{} this host lacks; no VM was booted:\n{}{}\n\
         hint: `kthw up --partial` runs every phase the artifacts at hand allow and stops before the first that lacks one",
        lacks.len(),
        if lacks.len() == 1 { "" } else { "s" },
        render_lacks(lacks),
        hint.as_ref().map(|h| format!("\nhint: {h}")).unwrap_or_default()
    )]
    MissingArtifacts { until: Phase, lacks: Vec<Lack>, hint: Option<String> },
    #[error("the spec cannot be installed; nothing was booted: {0}")]
    Spec(String),
    #[error("no node image, and building one failed")]
    Image(#[source] ImageError),
    #[error("cluster {name} did not come up{}", bundle.as_ref().map(|b| format!(
        "; it was torn down\nfailure bundle: {} (and {}.tar.gz): the nodes' consoles are in its run/nodes/*/console.log, \
         where the time went in its run/{TIMELINE_SVG}",
        b.display(), b.display()
    )).unwrap_or_default())]
    Boot {
        name: String,
        /// The failure bundle made before the teardown, when the cluster existed and one could be written.
        bundle: Option<PathBuf>,
        #[source]
        source: Box<ClusterError>,
    },
    #[error("cluster {name}: {}{}", if *kept {
        format!("it stays up to look at: `kthw ssh {name} NODE`, `kthw kubeconfig {name}`; node logs in {}/nodes/*/ssh.log; \
                 `kthw down {name}` removes it, `kthw gc` once its time to live ends", run_dir.root().display())
    } else {
        "it was torn down".to_string()
    }, bundle.as_ref().map(|b| format!(
        "\nfailure bundle: {} (and {}.tar.gz); where the time went: {}",
        b.display(), b.display(), crate::bundle::timeline_svg(b).display()
    )).unwrap_or_default())]
    Phase {
        name: String,
        run_dir: RunDir,
        kept: bool,
        /// The failure bundle made before the cluster was torn down or kept, if one could be written.
        bundle: Option<PathBuf>,
        #[source]
        source: Box<BootstrapError>,
    },
    #[error("interrupted by {signal}: cluster {name} was torn down")]
    Interrupted { signal: &'static str, name: String },
    #[error("cluster {name}: the golden snapshot")]
    Golden {
        name: String,
        #[source]
        source: Box<GoldenError>,
    },
    #[error("keeping cluster {name}")]
    Keep {
        name: String,
        #[source]
        source: Box<ClusterError>,
    },
    #[error("cluster {name}: writing the lock of its versions into its run directory")]
    Lock {
        name: String,
        #[source]
        source: Box<crate::lock::LockError>,
    },
}
