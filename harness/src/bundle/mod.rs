//! Failure bundles: everything that explains a failed run in one directory and one `.tar.gz` under
//! `<state>/bundles/`, for the person reading a nightly failure at 3 a.m. or attaching it to a bug report.
//!
//! A bundle holds the spec, versions, image manifest and artifact list, the run directory's records (phase
//! records and timings, timeline, consoles, SSH logs, phase outputs), each node's domain XML, journal, units and
//! network state, and, when the apiserver answers, kubectl's and Cilium's view. Every collection step is
//! best-effort with its own deadline: a step that fails records its error in the bundle and the next one runs.
//! Each file is capped (the end of a log is kept: that is where a failure shows), the whole bundle too, and
//! private keys are never included ([`secrets`]). `MANIFEST.json` lists every step; `README.txt` says the same
//! for a person. `kthw gc` prunes old bundles ([`prune`]).

mod collect;
pub mod harness_log;
mod kube;
pub mod prune;
mod read;
pub mod secrets;
mod test;
mod writer;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use collect::{
    collect, collect_boot_failure, collect_budget, collect_for_scenario, collect_for_test, collect_with,
};
pub use read::{open, Opened};
pub use test::{file_name, Extras, TestRecord};

/// The bundle layout this kthw writes and the newest it reads.
pub const FORMAT: u32 = 1;
/// The manifest's name inside a bundle.
pub const MANIFEST: &str = "MANIFEST.json";
/// The spec inside a bundle, as `kthw spec show` prints it.
pub const SPEC: &str = "spec.toml";
/// The lock the run used, when its versions were no preset: `kthw repro` stands the cluster up from it.
pub const LOCK: &str = "spec.lock";
/// The largest file a bundle holds; longer logs keep their end.
pub const FILE_CAP: u64 = 8 * 1024 * 1024;
/// A Cilium sysdump is an archive (cutting it would ruin it): included whole up to this size, else left out.
pub const SYSDUMP_CAP: u64 = 64 * 1024 * 1024;
/// Once the files hold this much, the remaining steps are recorded as skipped.
pub const TOTAL_CAP: u64 = 256 * 1024 * 1024;

/// What went wrong making or reading a bundle. Collection steps never fail a bundle: they record their error
/// in it. Only writing the bundle itself, or a bundle that cannot be read, is an error.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot {what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no bundle at {}: {why}", path.display())]
    NotFound { path: PathBuf, why: String },
    #[error("{} is not a kthw bundle: {why}", path.display())]
    NotABundle { path: PathBuf, why: String },
    #[error("the bundle {} is truncated or corrupt: {why}; copy it again from where it was made", path.display())]
    Truncated { path: PathBuf, why: String },
    #[error(
        "the bundle {} has format {found}, newer than this kthw reads ({FORMAT}, kthw {}); \
         use the kthw that made it (kthw {made_by}) or a newer one",
        path.display(), env!("CARGO_PKG_VERSION")
    )]
    NewerFormat { path: PathBuf, found: u32, made_by: String },
}

impl BundleError {
    fn io(what: &'static str, path: &Path, source: std::io::Error) -> BundleError {
        BundleError::Io { what, path: path.to_path_buf(), source }
    }
}

/// `MANIFEST.json`: what the bundle is and how each step went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub harness_version: String,
    pub cluster: String,
    pub cluster_id: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
    /// Why the bundle was made: the failure, or "on demand".
    pub reason: String,
    /// The scenario (kthw-scenarios) whose failure this is, for `kthw repro` to run again; absent in bundles of
    /// other failures and in those older kthw made.
    #[serde(default)]
    pub scenario: Option<String>,
    /// The test (`kthw::testkit`) whose failure this is, for `kthw repro` to say how to run it again; absent in
    /// bundles of other failures and in those older kthw made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<TestRecord>,
    /// The cluster failed while its nodes booted, before any phase ran: `kthw repro` boots it again rather
    /// than restoring a golden snapshot of booted nodes, which would skip what failed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub boot_failed: bool,
    pub image_key: String,
    pub file_cap: u64,
    pub total_cap: u64,
    pub steps: Vec<Step>,
    /// Files of the run directory left out, and why (private keys, disks).
    pub excluded: Vec<Excluded>,
}

/// One collection step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub name: String,
    /// The file it wrote, relative to the bundle; None when it wrote nothing.
    pub file: Option<String>,
    pub bytes: u64,
    /// The size before the cap, when the file was cut.
    pub truncated_from: Option<u64>,
    /// Why the step failed or was skipped; None when it worked.
    pub error: Option<String>,
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Excluded {
    pub path: String,
    pub why: String,
}

/// A bundle made: its directory and archive.
#[derive(Debug, Clone)]
pub struct Made {
    pub dir: PathBuf,
    pub archive: PathBuf,
    /// The archive's size.
    pub archive_bytes: u64,
    pub manifest: Manifest,
}

impl Made {
    /// Steps that failed or were skipped.
    pub fn failed_steps(&self) -> impl Iterator<Item = &Step> {
        self.manifest.steps.iter().filter(|s| s.error.is_some())
    }
}

/// The run's timeline picture inside bundle `dir`: the run directory's, drawn when the bundle was made and
/// copied with the rest of it.
pub fn timeline_svg(dir: &Path) -> PathBuf {
    dir.join("run").join(crate::rundir::TIMELINE_SVG)
}

/// Where bundles live: beside the run directories, so `kthw down` (which removes the run directory) leaves them.
pub fn bundles_dir(paths: &crate::paths::Paths) -> PathBuf {
    paths.state.join("bundles")
}

/// The end of a writer's marker's name: `.<bundle>.writing`.
const WRITING_SUFFIX: &str = ".writing";

/// The marker that exists, beside bundle `name`, while a process writes it.
fn writing_marker(bundles: &Path, name: &str) -> PathBuf {
    bundles.join(format!(".{name}{WRITING_SUFFIX}"))
}
