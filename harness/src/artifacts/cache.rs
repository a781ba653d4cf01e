//! A directory of artifacts: where each one lives, whether it is there and verified, and fetching it.
//! Files come over HTTP(S) ([`Download`]: retries, resume, progress), images with `skopeo`, pulled by digest;
//! either from upstream or from a [`Mirror`].

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Artifact, ArtifactError, Checksum, Download, Kind, Manifest, Mirror};
use crate::oci;
use crate::phase::Phase;
use crate::spec::ClusterSpec;

/// An artifact directory: the user's cache, or an air-gapped directory used as is.
#[derive(Debug, Clone)]
pub struct Cache {
    pub dir: PathBuf,
    /// Given with `--artifacts-dir`: nothing is downloaded into it by a run.
    pub air_gapped: bool,
    /// Fetch from here instead of upstream.
    pub mirror: Option<Mirror>,
    pub download: Download,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Present, and verified against the pinned sum.
    Cached,
    /// Present, but not (or not against the current sum) verified: `fetch` verifies it.
    Unverified,
    Absent,
}

#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub artifact: &'a Artifact,
    pub path: PathBuf,
    pub state: State,
}

/// An artifact a run needs and does not have, with the command that provides it.
#[derive(Debug, Clone)]
pub struct Missing<'a> {
    pub artifact: &'a Artifact,
    pub path: PathBuf,
    pub command: String,
    /// What is at `path` instead, when something is: a file whose sum is not the pinned one.
    pub found: Option<String>,
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ArtifactError {
    let path = path.to_path_buf();
    move |source| ArtifactError::Io { action, path, source }
}

fn marker(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".verified");
    PathBuf::from(s)
}

/// Where a download or pull is written until it is complete.
pub(super) fn part(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

impl Cache {
    pub fn new(dir: PathBuf) -> Cache {
        Cache { dir, air_gapped: false, mirror: None, download: Download::default() }
    }

    pub fn air_gapped(dir: PathBuf) -> Cache {
        Cache { air_gapped: true, ..Cache::new(dir) }
    }

    /// Fetches through `mirror` (see [`Mirror`] for its layout) instead of upstream.
    pub fn with_mirror(self, mirror: Option<Mirror>) -> Cache {
        Cache { mirror, ..self }
    }

    /// Downloads with these retries and timeouts instead of the defaults.
    pub fn with_download(self, download: Download) -> Cache {
        Cache { download, ..self }
    }

    /// Where `a` lives in this directory.
    pub fn path_of(&self, a: &Artifact) -> PathBuf {
        match a.kind {
            Kind::File => {
                let file = a.locator().rsplit('/').next().unwrap_or(&a.name);
                self.dir.join(&a.name).join(&a.upstream_version).join(file)
            }
            Kind::Image => self.dir.join("images").join(format!("{}-{}.oci.tar", a.name, a.upstream_version)),
        }
    }

    pub fn state_of(&self, a: &Artifact) -> State {
        let path = self.path_of(a);
        if !path.is_file() {
            return State::Absent;
        }
        let verified = std::fs::read_to_string(marker(&path)).ok();
        match (verified, a.sum()) {
            (Some(v), Ok(sum)) if v.trim() == sum.to_string() => State::Cached,
            _ => State::Unverified,
        }
    }

    /// Every artifact of `manifest` with its state here.
    pub fn status<'a>(&self, manifest: &'a Manifest) -> Vec<Entry<'a>> {
        manifest
            .artifacts
            .iter()
            .map(|a| Entry { artifact: a, path: self.path_of(a), state: self.state_of(a) })
            .collect()
    }

    /// The command that puts `a` into this directory.
    pub fn command_for(&self, a: &Artifact) -> String {
        if let Err(e) = a.sum() {
            return format!("none: {e}");
        }
        let mut fetch = format!("kthw artifacts fetch --dir {}", self.dir.display());
        match a.set {
            Some(set) if set != crate::spec::VersionSet::default() => fetch.push_str(&format!(" --set {set}")),
            Some(_) => {}
            // A lock's artifact: the spec beside the lock says which.
            None => fetch.push_str(" --spec SPEC"),
        }
        if self.air_gapped {
            format!("{fetch}  (on a machine that can reach {}, then copy the directory here)", a.locator())
        } else {
            fetch
        }
    }

    /// What the phases up to `until` need and this directory does not verifiably hold. `kthw up` calls this
    /// before booting any VM. A file that is there but was never verified (copied in by hand, or a directory
    /// made without `kthw artifacts fetch`) is hashed now: with the pinned sum it is marked verified and
    /// needed no more; with another it is missing, and [`Missing::found`] says what its sum is. It is left in
    /// place: an air-gapped directory is the user's, and `kthw artifacts fetch` replaces it.
    pub fn missing<'a>(&self, manifest: &'a Manifest, spec: &ClusterSpec, until: Phase) -> Vec<Missing<'a>> {
        manifest
            .needed_until(spec, until)
            .into_iter()
            .filter_map(|a| {
                let found = match self.state_of(a) {
                    State::Cached => return None,
                    State::Unverified if a.kind == Kind::File => self.check_unverified(a)?,
                    _ => None,
                };
                Some(Missing { artifact: a, path: self.path_of(a), command: self.command_for(a), found })
            })
            .collect()
    }

    /// Hashes the unverified file `a`: `None` once it is verified here (its marker written), else what is
    /// wrong with it.
    fn check_unverified(&self, a: &Artifact) -> Option<Option<String>> {
        let path = self.path_of(a);
        let Ok(expected) = a.sum() else { return Some(None) };
        tracing::info!("verifying {} ({}), which was never verified here", a.name, path.display());
        match Checksum::of_file(expected.algorithm, &path) {
            Ok(actual) if actual == expected => match write_marker(&path, &expected) {
                Ok(()) => None,
                Err(e) => Some(Some(format!("its sum is the pinned one, but {}", crate::chain(&e)))),
            },
            Ok(actual) => Some(Some(format!(
                "checksum mismatch: {actual}, not the pinned {expected} (a stand-in, a partial copy or another \
                 release; left in place)"
            ))),
            Err(e) => Some(Some(format!("unreadable: {e}"))),
        }
    }

    /// Makes `a` present and verified: verifies what is there, else downloads it. Returns its path.
    pub fn fetch(&self, a: &Artifact) -> Result<PathBuf, ArtifactError> {
        let sum = a.sum()?;
        let path = self.path_of(a);
        match self.state_of(a) {
            State::Cached => return Ok(path),
            State::Unverified if a.kind == Kind::File => {
                self.verify(a, &path, &sum)?;
                return Ok(path);
            }
            _ => {}
        }
        let dir = path.parent().expect("artifact paths have a parent");
        std::fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
        // A file's `.part` is kept between runs: the download resumes it.
        let tmp = part(&path);
        match a.kind {
            Kind::File => self.download(a, &tmp)?,
            Kind::Image => {
                let _ = std::fs::remove_file(&tmp);
                self.pull(a, &sum, &tmp)?
            }
        }
        std::fs::rename(&tmp, &path).map_err(io_err("move into place", &path))?;
        match a.kind {
            Kind::File => self.verify(a, &path, &sum)?,
            // write_archive checked the top-level manifest against the pinned digest; record that.
            Kind::Image => write_marker(&path, &sum)?,
        }
        Ok(path)
    }

    /// The URL a file artifact is downloaded from: upstream's, or the mirror's copy of it.
    pub fn url_of(&self, a: &Artifact) -> String {
        match &self.mirror {
            Some(m) => m.file_url(a.locator()),
            None => a.locator().to_string(),
        }
    }

    fn download(&self, a: &Artifact, to: &Path) -> Result<(), ArtifactError> {
        let url = self.url_of(a);
        tracing::info!("downloading {} from {url}", a.name);
        let size = self.download.fetch(&url, to, &a.name).map_err(|source| ArtifactError::Download {
            name: a.name.clone(),
            url: url.clone(),
            source,
        })?;
        tracing::info!("downloaded {} ({size} bytes)", a.name);
        Ok(())
    }

    /// Pulls image `a` by its pinned digest into the OCI archive `to`, named with the upstream reference:
    /// skopeo copies it with every manifest as served ([`oci::skopeo_copy_args`]), and kthw writes the archive,
    /// checking the top-level manifest against the pinned digest ([`oci::write_archive`]). The chart references
    /// images by the index digest, so a single platform's manifest would not match it and containerd would pull
    /// cold (cilium/cilium-cli#1106); registry.k8s.io/pause is a Docker v2 manifest list (kubernetes/kubernetes
    /// build/pause/Makefile pushes it with `docker manifest create`), which skopeo's own `oci-archive:` cannot
    /// keep under `--preserve-digests`.
    fn pull(&self, a: &Artifact, digest: &Checksum, to: &Path) -> Result<(), ArtifactError> {
        let dir = to.with_extension("dir.part");
        let _ = std::fs::remove_dir_all(&dir);
        let args = self.skopeo_args(a, digest, &dir);
        let reference = format!("{}@{digest}", a.locator());
        tracing::info!("pulling {} with skopeo {}", a.name, args.join(" "));
        let status = Command::new("skopeo").args(&args).stdin(Stdio::null()).status();
        let result = match status {
            Err(source) => Err(ArtifactError::Skopeo { reference: reference.clone(), source }),
            Ok(status) if !status.success() => Err(ArtifactError::Pull { reference: reference.clone(), status }),
            Ok(_) => oci::Reference::parse(&reference)
                .and_then(|name| oci::write_archive(&dir, &name, to))
                .map(drop)
                .map_err(|source| ArtifactError::Image { name: a.name.clone(), source: Box::new(source) }),
        };
        let _ = std::fs::remove_dir_all(&dir);
        if result.is_err() {
            let _ = std::fs::remove_file(to);
        }
        result
    }

    /// The `skopeo copy` of image `a` by its pinned digest, from upstream or the mirror, into the `dir:` at
    /// `dir`.
    pub(super) fn skopeo_args(&self, a: &Artifact, digest: &Checksum, dir: &Path) -> Vec<String> {
        let reference = a.locator();
        let repo = reference.rsplit_once(':').map_or(reference, |(r, _)| r);
        let (source, plain_http) = match &self.mirror {
            Some(m) => (m.repository(repo), m.plain_http()),
            None => (repo.to_string(), false),
        };
        oci::skopeo_copy_args(&format!("{source}@{digest}"), plain_http, self.download.attempts.saturating_sub(1), dir)
    }

    /// Hashes the file at `path`; on a mismatch deletes it and fails showing both sums.
    pub fn verify(&self, a: &Artifact, path: &Path, expected: &Checksum) -> Result<(), ArtifactError> {
        tracing::info!("verifying {} ({})", a.name, path.display());
        let actual = Checksum::of_file(expected.algorithm, path).map_err(io_err("hash", path))?;
        if &actual != expected {
            let _ = std::fs::remove_file(marker(path));
            std::fs::remove_file(path).map_err(io_err("delete the mismatching file", path))?;
            return Err(ArtifactError::Mismatch {
                name: a.name.clone(),
                path: path.to_path_buf(),
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
        write_marker(path, expected)
    }
}

fn write_marker(path: &Path, sum: &Checksum) -> Result<(), ArtifactError> {
    let m = marker(path);
    std::fs::write(&m, format!("{sum}\n")).map_err(io_err("write", &m))
}
